"""Shared limits: counters of windows that have ended, and Telegram updates handled more than a
day ago (bot.middlewares), are deleted by a sweep every ten minutes (any replica may run it)."""
from __future__ import annotations

from backend.core.db import session_scope
from scheduler import runtime
from scheduler.sweep import register_sweep


async def sweep() -> None:
    from backend.auth import ratelimit

    async with session_scope(runtime.get_context().sm) as session:
        await ratelimit.prune(session)


def register(scheduler) -> None:
    register_sweep(scheduler, "scheduler.jobs.limits:sweep", job_id="limits-prune", seconds=600)
