"""Dispute jobs: deadline reminders and escalation, session and rating reminders, the
08:30 early-warning digest, and a sweep that catches deadlines missed while Hehe was down.
Each job takes ids, re-reads the case and does nothing if the moment has passed."""
from __future__ import annotations

import logging

from apscheduler.triggers.cron import CronTrigger

from backend.core.db import session_scope
from scheduler import runtime

log = logging.getLogger("hehe.jobs.disputes")


async def _run(fn, *args) -> bool:
    from backend.disputes import service  # noqa: F401 - imported lazily, jobs load at start-up

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as session:
        result = await fn(session, *args)
    ctx.deliverer.wake.set()
    return result


async def deadline_reminder(case_id: int, stage: str, due_iso: str) -> bool:
    from backend.disputes import service

    return await _run(service.deadline_reminder, case_id, stage, due_iso)


async def deadline_due(case_id: int, stage: str, due_iso: str) -> bool:
    from backend.disputes import service

    return await _run(service.deadline_due, case_id, stage, due_iso)


async def session_reminder(case_id: int, kind: str, session_iso: str) -> bool:
    from backend.disputes import service

    return await _run(service.session_reminder, case_id, kind, session_iso)


async def rating_reminder(case_id: int) -> bool:
    from backend.disputes import service

    return await _run(service.rating_reminder, case_id)


async def sweep() -> int:
    from backend.disputes import service

    return await _run(service.sweep_overdue)


async def daily_digest() -> int:
    from backend.disputes import stats

    return await _run(stats.send_digest)


def register(scheduler) -> None:
    scheduler.add_job("scheduler.jobs.disputes:daily_digest", CronTrigger(hour=8, minute=30),
                      id="disputes-digest", replace_existing=True)
    scheduler.add_job("scheduler.jobs.disputes:sweep", "interval", minutes=15,
                      id="disputes-sweep", replace_existing=True)
