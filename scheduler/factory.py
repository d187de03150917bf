"""APScheduler 3.x AsyncIOScheduler with a persistent SQLAlchemy job store."""
from __future__ import annotations

import importlib
import pkgutil
from zoneinfo import ZoneInfo

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


def make_scheduler(sync_url: str, timezone: str = "Asia/Shanghai") -> AsyncIOScheduler:
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
