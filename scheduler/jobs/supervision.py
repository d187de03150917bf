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


def register(scheduler) -> None:
    scheduler.add_job(f"{MOD}:weekly_digest", "cron", day_of_week="mon", hour=9, minute=0,
                      id="sup-weekly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:monthly_digest", "cron", day=1, hour=9, minute=30,
                      id="sup-monthly-digest", replace_existing=True)
