"""灯塔工程 jobs: delete face vectors when their time has come.

``delete_faces`` is scheduled per case (``missing-faces-<id>``) when a match is confirmed;
the daily sweep catches any case whose deletion date passed while no job existed
(e.g. scheduled while the app ran without a scheduler).
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from backend.core.clock import now
from backend.core.db import session_scope
from scheduler.runtime import get_context

log = logging.getLogger("hehe.missing")


async def delete_faces(case_id: int) -> None:
    from backend.missing import service
    from backend.missing.models import PersonCase

    ctx = get_context()
    async with session_scope(ctx.sm) as s:
        case = await s.get(PersonCase, case_id)
        # re-check: already deleted (closed meanwhile), or the deletion was rescheduled later
        if case is None or case.face_state != "scheduled":
            return
        if case.face_delete_at and case.face_delete_at > now():
            return
        n = await service.delete_faces_now(s, case, ctx.faces if ctx.faces is not None else ctx.settings,
                                           actor="system")
    log.info("face data of missing case %s deleted (%d vectors)", case_id, n)


async def sweep_face_deletions() -> None:
    from backend.missing.models import PersonCase

    ctx = get_context()
    async with ctx.sm() as s:
        due = list(await s.scalars(select(PersonCase.id).where(
            PersonCase.face_state == "scheduled", PersonCase.face_delete_at <= now())))
    for case_id in due:
        try:
            await delete_faces(case_id)
        except Exception:  # noqa: BLE001 - one bad case must not stop the rest
            log.exception("deleting face data of case %s failed", case_id)


async def enrol_pending() -> None:
    """Cases saved while the face model was unavailable are matched once it is back."""
    from backend.missing import service
    from backend.missing.models import PersonCase

    ctx = get_context()
    if not service.faces_ready(ctx.faces):
        return
    async with ctx.sm() as s:
        ids = list(await s.scalars(select(PersonCase.id).where(
            PersonCase.face_state == "pending", PersonCase.status == service.OPEN)))
    for case_id in ids:
        try:
            async with session_scope(ctx.sm) as s:
                case = await s.get(PersonCase, case_id)
                found = await service.enrol_pending(s, ctx.faces, ctx.settings.files_dir, case)
                await service.queue_for_review(s, ctx.settings.files_dir, found)
        except Exception:  # noqa: BLE001 - one bad case must not stop the rest
            log.exception("matching pending case %s failed", case_id)
    ctx.deliverer.wake.set()


def register(scheduler) -> None:
    scheduler.add_job("scheduler.jobs.missing:enrol_pending", "interval", minutes=10,
                      id="missing-enrol-pending", replace_existing=True)
    scheduler.add_job("scheduler.jobs.missing:sweep_face_deletions", "cron", hour=3, minute=30,
                      id="missing-face-sweep", replace_existing=True)
