"""Due-date sweeps: reminders and deadlines live as columns on the records themselves, and one
APScheduler interval job per slice reads what is due.

Nothing is written to APScheduler's job store per reminder, so nothing can be lost between a job
leaving the store and running (kill -9), and whatever fell due while Hehe was down is handled
once by the first sweep, which runs at start-up. A sweep marks each row it handles in the same
transaction as what it sends (e.g. ``reminded_at``), so it acts once per due moment. On
PostgreSQL :func:`claim` adds ``FOR UPDATE SKIP LOCKED``: any number of replicas may sweep the
same table at once without taking the same row.

Usage in ``scheduler/jobs/<slice>.py``::

    def register(scheduler) -> None:
        register_sweep(scheduler, "scheduler.jobs.disputes:sweep", job_id="disputes-sweep", seconds=60)

and in the service::

    rows = (await session.scalars(claim(session, select(Case).where(Case.remind_at <= now(), ...)
                                        .order_by(Case.remind_at).limit(500)))).all()
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_SECONDS = 60


def claim(session: AsyncSession, stmt: Select) -> Select:
    """``stmt`` locking the rows it returns and skipping rows another sweeper holds (PostgreSQL);
    SQLite has one writer at a time, so the statement is returned unchanged there."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def register_sweep(scheduler, func_ref: str, *, job_id: str, seconds: int = DEFAULT_SECONDS) -> None:
    """One interval job ``func_ref`` every ``seconds``, in the scheduler's own zone, whose first
    run is at start-up (catching up on what fell due while the process was down)."""
    tz = scheduler.timezone if isinstance(scheduler.timezone, ZoneInfo) else ZoneInfo(str(scheduler.timezone))
    scheduler.add_job(func_ref, IntervalTrigger(seconds=seconds, timezone=tz), id=job_id,
                      replace_existing=True, next_run_time=datetime.now(tz))
