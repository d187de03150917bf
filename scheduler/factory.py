"""APScheduler 3.x AsyncIOScheduler with a persistent SQLAlchemy job store."""
from __future__ import annotations

import asyncio
import importlib
import pkgutil
import weakref
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import create_engine, event

import scheduler.jobs as jobs_pkg


def _sync_engine(url: str):
    # A server connection can die between uses (pinged); a file cannot (a ping per job-store write).
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _rec):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no fsync per job-store commit (10k reminders 14 s → 3 s, see
            # docs/supervision.md); the database stays consistent, a power cut may lose the last commits.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


class _RunningJobs:
    """The jobs with a run under way, from APScheduler's public job events (a job runs one
    instance at a time: ``max_instances=1``)."""

    EVENTS = EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    def on_event(self, ev: JobEvent) -> None:
        if ev.code == EVENT_JOB_SUBMITTED:
            self.jobs.add(ev.job_id)
            self.idle.clear()
        else:
            self.jobs.discard(ev.job_id)
            if not self.jobs:
                self.idle.set()


_RUNNING: "weakref.WeakKeyDictionary[AsyncIOScheduler, _RunningJobs]" = weakref.WeakKeyDictionary()


async def wait_idle(sched: AsyncIOScheduler, timeout: float) -> bool:
    """Wait until no job run is under way (False: still busy after ``timeout`` seconds)."""
    running = _RUNNING.get(sched)
    if running is None:
        return True
    try:
        await asyncio.wait_for(running.idle.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


async def stop_scheduler(sched: AsyncIOScheduler, timeout: float = 10) -> None:
    """Stop taking new runs, let the runs under way finish (up to ``timeout``), then shut down.
    (APScheduler's asyncio executor cancels running jobs at shutdown: a job cancelled mid-query
    left a task that hung the loop's close.)"""
    if not sched.running:
        return
    sched.pause()
    await wait_idle(sched, timeout)
    sched.shutdown(wait=False)
    await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop iteration


def make_scheduler(sync_url: str, timezone: str = "Asia/Shanghai") -> AsyncIOScheduler:
    sched = _new_scheduler(sync_url, timezone)
    running = _RUNNING[sched] = _RunningJobs()
    sched.add_listener(running.on_event, running.EVENTS)
    return sched


def _new_scheduler(sync_url: str, timezone: str) -> AsyncIOScheduler:
    store = SQLAlchemyJobStore(engine=_sync_engine(sync_url), tablename="apscheduler_jobs")
    return AsyncIOScheduler(
        jobstores={"default": store},
        timezone=ZoneInfo(timezone),
        job_defaults={
            # A reminder that fell due while Hehe was down still fires once on restart.
            "misfire_grace_time": 7 * 24 * 3600,
            "coalesce": True,
            "max_instances": 1,
        },
    )


def register_recurring(sched: AsyncIOScheduler) -> None:
    """Every ``scheduler/jobs/<slice>.py`` with ``register(scheduler)`` adds its cron jobs."""
    for info in pkgutil.iter_modules(jobs_pkg.__path__):
        mod = importlib.import_module(f"scheduler.jobs.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sched)
