"""Supervision deadlines and reminders: ONE interval job sweeps the due-date columns
(``remind_at`` on items and suggestions), at start-up and every minute; plus the digests.

Nothing is written to APScheduler's job store per reminder, so nothing can be lost between a job
leaving the store and running, and what fell due while Hehe was down is handled once, by the first
sweep after start. Rows are claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so replicas never
take the same one."""
from __future__ import annotations

import logging

from apscheduler.triggers.cron import CronTrigger

from backend.core.clock import now
from backend.core.db import session_scope
from scheduler import runtime
from scheduler.sweep import claim, register_sweep

log = logging.getLogger("hehe.supervision.jobs")
MOD = "scheduler.jobs.supervision"
BATCH = 500


async def sweep() -> int:
    """Send what is due now: acceptance deadlines, reply reminders (T−7, T−1, each overdue day,
    escalation from day 7) and 回头看, one current reminder per row."""
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    sent = 0
    t = now()
    async with session_scope(ctx.sm) as s:
        for item in (await s.scalars(claim(s, svc.due_items(t).limit(BATCH)))).all():
            sent += await svc.sweep_item(s, item, t)
        due = (await s.scalars(claim(s, svc.due_suggestions(t).limit(BATCH)))).all()
        sent += await svc.sweep_suggestions(s, due, t)
    if sent:
        log.info("supervision sweep: %s reminders", sent)
        ctx.deliverer.wake.set()
    return sent


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
    tz = scheduler.timezone  # HEHE_TIMEZONE (scheduler/factory.py)
    scheduler.add_job(f"{MOD}:weekly_digest", CronTrigger(day_of_week="mon", hour=9, minute=0, timezone=tz),
                      id="sup-weekly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:monthly_digest", CronTrigger(day=1, hour=9, minute=30, timezone=tz),
                      id="sup-monthly-digest", replace_existing=True)
    # A job store from before may still hold "sup-sweep-daily" (cron, 08:00): it runs this same
    # sweep, which is harmless; the old per-reminder jobs name functions that no longer exist and
    # APScheduler drops them on load (their reminders are due dates now, migration supervision_0002).
    register_sweep(scheduler, f"{MOD}:sweep", job_id="sup-sweep", seconds=60)
