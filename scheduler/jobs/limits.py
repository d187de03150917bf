"""Shared limits: counters of windows that have ended, and Telegram updates handled more than a
day ago (bot.middlewares), are deleted every ten minutes (any replica may run it). Nothing is
due at start-up, so the first run is ten minutes after it."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from backend.core.db import session_scope
from scheduler import runtime

EVERY_SECONDS = 600


async def sweep() -> None:
    from backend.auth import ratelimit

    async with session_scope(runtime.get_context().sm) as session:
        await ratelimit.prune(session)


def register(scheduler) -> None:
    scheduler.add_job("scheduler.jobs.limits:sweep", IntervalTrigger(seconds=EVERY_SECONDS, timezone=scheduler.timezone),
                      id="limits-prune", replace_existing=True)
