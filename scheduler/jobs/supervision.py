"""Supervision reminders. Module-level functions taking ids; each re-reads the item and
does nothing if the state moved on (dedupe keys make a second run a no-op)."""
from __future__ import annotations

import logging

from backend.core.clock import now
from backend.core.db import session_scope
from scheduler import runtime

log = logging.getLogger("hehe.supervision.jobs")
MOD = "scheduler.jobs.supervision"


async def acceptance_due(item_id: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.remind_acceptance(s, item_id)
    ctx.deliverer.wake.set()


async def reply_reminder(suggestion_id: int, days_before: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.remind_reply(s, suggestion_id, days_before)
    ctx.deliverer.wake.set()


async def reply_overdue(suggestion_id: int, day: int) -> None:
    """Daily while overdue; the next day's run is its own job (own id) so a restart never doubles it."""
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        _sent, next_at = await svc.reply_overdue(s, suggestion_id, day)
    if next_at is not None:
        runtime.schedule_once(f"{MOD}:reply_overdue", max(next_at, now()), [suggestion_id, day + 1],
                              f"sup-reply-{suggestion_id}-over{day + 1}")
    ctx.deliverer.wake.set()


async def followup(suggestion_id: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.followup_due(s, suggestion_id)
    ctx.deliverer.wake.set()


async def weekly_digest() -> None:
    from backend.supervision import digest

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        n = await digest.weekly(s, now())
    log.info("supervision weekly digest: %s people", n)
    ctx.deliverer.wake.set()


async def monthly_digest() -> None:
    from backend.supervision import digest

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        n = await digest.monthly(s, now())
    log.info("supervision monthly digest: %s people", n)
    ctx.deliverer.wake.set()


async def sweep() -> None:
    """At start-up and every morning: schedule the reminders open items lack."""
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    sched = ctx.scheduler
    if sched is None:
        return
    async with ctx.sm() as s:
        missing = await svc.missing_reminders(s, lambda jid: sched.get_job(jid) is not None, now())
    if missing:
        log.info("supervision sweep: %s reminders re-scheduled", len(missing))
        runtime.schedule_many([(f"{MOD}:{func}", at, args, jid) for func, at, args, jid in missing])


def register(scheduler) -> None:
    scheduler.add_job(f"{MOD}:weekly_digest", "cron", day_of_week="mon", hour=9, minute=0,
                      id="sup-weekly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:monthly_digest", "cron", day=1, hour=9, minute=30,
                      id="sup-monthly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:sweep", "cron", hour=8, minute=0, id="sup-sweep-daily", replace_existing=True)
    scheduler.add_job(f"{MOD}:sweep", "date", id="sup-sweep-start", replace_existing=True)  # once, at start
