"""Dispute jobs: ONE interval sweep over the cases' due-date columns (deadline reminders,
overdue and escalation, session and rating reminders) that also runs at start-up, and the
08:30 early-warning digest on ``HEHE_TIMEZONE``. Each due case is handled in its own savepoint
(``service.sweep_due``): one bad case never stops the others."""
from __future__ import annotations

import logging
from functools import partial
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from backend.core.clock import now
from backend.core.db import session_scope
from scheduler import runtime
from scheduler.sweep import claim, register_sweep

log = logging.getLogger("hehe.jobs.disputes")
SWEEP_SECONDS = 60


async def sweep_session(session) -> int:
    """Everything that has come due, in one transaction, rows claimed (SKIP LOCKED on PostgreSQL)."""
    from backend.disputes import service

    return await service.sweep_due(session, now(), lock=partial(claim, session))


async def sweep() -> int:
    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as session:
        acted = await sweep_session(session)
    if acted and getattr(ctx, "deliverer", None) is not None:
        ctx.deliverer.wake.set()
    return acted


async def daily_digest() -> int:
    from backend.disputes import service, stats

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as session:
        sent = await stats.send_digest(session)
        sent += await service.calendar_notice(session)
    if getattr(ctx, "deliverer", None) is not None:
        ctx.deliverer.wake.set()
    return sent


# One-off jobs written by the versions before the sweep may still sit in a job store: they
# run the sweep, which does whatever is due (once).
async def deadline_reminder(*_args) -> int:
    return await sweep()


deadline_due = session_reminder = rating_reminder = deadline_reminder


def register(scheduler) -> None:
    tz = scheduler.timezone if isinstance(scheduler.timezone, ZoneInfo) else ZoneInfo(str(scheduler.timezone))
    # The digest on the configured zone (a trigger without one follows the host's clock), and
    # at most an hour late after downtime: a stale digest is not sent at noon.
    scheduler.add_job("scheduler.jobs.disputes:daily_digest", CronTrigger(hour=8, minute=30, timezone=tz),
                      id="disputes-digest", replace_existing=True, misfire_grace_time=3600, coalesce=True)
    register_sweep(scheduler, "scheduler.jobs.disputes:sweep", job_id="disputes-sweep", seconds=SWEEP_SECONDS)
