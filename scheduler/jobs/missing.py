"""灯塔工程 jobs, as due-date sweeps (``scheduler/sweep.py``): nothing is written to the job
store per case, so nothing is lost when the process dies, and whatever fell due while Hehe was
down is handled by the first sweep at start-up.

* ``sweep``: photos, crops, review cards and face vectors of released matches whose retention
  (``missing_match_retention_days``) has passed; photos of help requests past
  ``missing_assist_retention_days``. Rows are claimed (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL), each handled in its own transaction, errors caught per row.
* ``enrol_pending``: cases saved while the face model was unavailable are matched once it is back.
* ``rematch_recent``: cases saved in the last 15 minutes are searched again, so a report and a
  registration saved at the same moment (each searching before the other existed) still meet.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from backend.core.db import session_scope
from scheduler.runtime import get_context
from scheduler.sweep import claim, register_sweep

log = logging.getLogger("hehe.missing")


async def sweep() -> int:
    from backend.missing import service

    ctx = get_context()
    done = 0
    cases_due, requests_due = service.retention_due(ctx.settings)
    for stmt, act in ((cases_due, _erase), (requests_due, _expire)):
        entity = stmt.column_descriptions[0]["entity"]
        async with ctx.sm() as s:
            ids = [row.id for row in await s.scalars(stmt)]
        for item_id in ids:
            try:
                async with session_scope(ctx.sm) as s:
                    # claimed again inside the transaction: another replica may have taken it
                    row = await s.scalar(claim(s, stmt.where(entity.id == item_id)))
                    if row is not None:
                        await act(s, ctx, row)
                        done += 1
            except Exception:  # noqa: BLE001 - one bad row must not stop the rest
                log.exception("missing retention: %s %s failed", entity.__name__, item_id)
    return done


async def _erase(session, ctx, case) -> None:
    from backend.missing import service

    n = await service.erase_case_data(session, case, ctx.faces, ctx.settings, actor="system", store=ctx.files)
    log.info("face data and photos of missing case %s deleted (%d vectors)", case.id, n)


async def _expire(session, ctx, req) -> None:
    from backend.missing import service

    await service.expire_assist(session, req, ctx.files)


async def enrol_pending() -> None:
    from backend.missing import service
    from backend.missing.models import PersonCase

    ctx = get_context()
    due = select(PersonCase.id).where(PersonCase.face_state == "pending", PersonCase.status == service.OPEN)
    await _match_each(ctx, due, lambda s, case: service.enrol_pending(s, ctx.faces, ctx.files, case),
                      "matching pending case %s failed")
    ctx.deliverer.wake.set()


REMATCH_LOCK_KEY = 0x4865_6865_5265_6D61  # "HeheRema": replicas propose a pair once


async def rematch_recent() -> None:
    """Cases saved in the last minutes are searched again (service.rematch): a report and a
    registration saved at the same moment, on two replicas or in two requests, are proposed."""
    from backend.missing import service

    ctx = get_context()
    proposed = await _match_each(ctx, service.rematch_due(), lambda s, case: service.rematch(s, ctx.faces, case),
                                 "matching case %s again failed", lock=REMATCH_LOCK_KEY)
    if proposed:
        log.info("%d candidate(s) proposed by matching recent cases again", proposed)
        ctx.deliverer.wake.set()


async def _match_each(ctx, due, match, failed: str, lock: int | None = None) -> int:
    """``match(session, case)`` for each case ``due`` selects, each in its own transaction (with
    the advisory ``lock``: one replica at a time), the officers told of what it proposes; a case
    that fails is logged and the rest go on. Nothing without the face model. Returns how many
    candidates were proposed."""
    from backend.core.leader import one_at_a_time
    from backend.missing import service
    from backend.missing.models import PersonCase

    if not service.faces_ready(ctx.faces):
        return 0
    async with ctx.sm() as s:
        ids = list(await s.scalars(due))
    proposed = 0
    for case_id in ids:
        try:
            async with session_scope(ctx.sm) as s:
                if lock is not None:
                    await one_at_a_time(s, lock)
                case = await s.get(PersonCase, case_id)
                found = await match(s, case) if case is not None else []
                await service.queue_for_review(s, ctx.files, found)
                proposed += len(found)
        except Exception:  # noqa: BLE001 - one bad case must not stop the rest
            log.exception(failed, case_id)
    return proposed


def register(scheduler) -> None:
    register_sweep(scheduler, "scheduler.jobs.missing:sweep", job_id="missing-sweep", seconds=300)
    register_sweep(scheduler, "scheduler.jobs.missing:enrol_pending", job_id="missing-enrol-pending", seconds=600)
    register_sweep(scheduler, "scheduler.jobs.missing:rematch_recent", job_id="missing-rematch", seconds=60)
