"""APScheduler 3.x AsyncIOScheduler with a persistent SQLAlchemy job store.

Several replicas on PostgreSQL (``elected=True``, docs/deploy.md): each replica keeps its
interval jobs (the due-date sweeps, safe everywhere: they claim rows) in a job store in memory,
and the cron jobs (digests: true singletons) live in the persistent store, which only the leader
attaches (:func:`lead`, backend.core.leader) and detaches when it stops leading (:func:`follow`).
On SQLite everything stays in the one persistent store of the one process."""
from __future__ import annotations

import asyncio
import importlib
import pkgutil
import weakref
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobEvent,
)
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
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


LEADER_STORE = "leader"  # the cron jobs' persistent store while this replica leads (elected mode)
TABLE = "apscheduler_jobs"


def make_scheduler(sync_url: str, timezone: str = "Asia/Shanghai", *, elected: bool = False) -> AsyncIOScheduler:
    sched = _new_scheduler(sync_url, timezone, elected)
    running = _RUNNING[sched] = _RunningJobs()
    sched.add_listener(running.on_event, running.EVENTS)
    return sched


def _new_scheduler(sync_url: str, timezone: str, elected: bool = False) -> AsyncIOScheduler:
    store = MemoryJobStore() if elected else SQLAlchemyJobStore(engine=_sync_engine(sync_url), tablename=TABLE)
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


def register_recurring(sched: AsyncIOScheduler, *, cron: bool | None = None) -> None:
    """Every ``scheduler/jobs/<slice>.py`` with ``register(scheduler)`` adds its recurring jobs:
    all of them (``cron=None``), only the cron jobs, into the leader's store (``True``), or all
    but the cron jobs (``False``)."""
    target = sched if cron is None else _Split(sched, cron)
    for info in pkgutil.iter_modules(jobs_pkg.__path__):
        mod = importlib.import_module(f"scheduler.jobs.{info.name}")
        if hasattr(mod, "register"):
            mod.register(target)


class _Split:
    """The scheduler as a slice's ``register`` sees it when the recurring jobs are split between
    every replica (interval jobs) and the leader (cron jobs)."""

    def __init__(self, sched: AsyncIOScheduler, cron: bool) -> None:
        self._sched, self._cron = sched, cron

    def __getattr__(self, name: str):
        return getattr(self._sched, name)

    def add_job(self, func, trigger=None, **kw):
        if isinstance(trigger, CronTrigger) != self._cron:
            return None
        if not self._cron:
            return self._sched.add_job(func, trigger, **kw)
        kw["jobstore"] = LEADER_STORE
        if kw.get("id") is None or self._sched.get_job(kw["id"], LEADER_STORE) is None:
            return self._sched.add_job(func, trigger, **kw)
        # Keep the stored next run: a digest due while no replica led still runs once (coalesced).
        changes = {k: v for k, v in kw.items() if k in ("args", "kwargs", "name", "misfire_grace_time",
                                                        "coalesce", "max_instances")}
        return self._sched.modify_job(kw["id"], LEADER_STORE, func=func, trigger=trigger, **changes)


def lead(sched: AsyncIOScheduler, sync_url: str) -> None:
    """This replica now leads: attach the persistent store and (re-)register the cron jobs."""
    sched.add_jobstore(SQLAlchemyJobStore(engine=_sync_engine(sync_url), tablename=TABLE), LEADER_STORE)
    for job in sched.get_jobs(jobstore=LEADER_STORE):
        if not isinstance(job.trigger, CronTrigger):
            job.remove()  # from a single-process era: every replica runs its own (memory store)
    register_recurring(sched, cron=True)


def follow(sched: AsyncIOScheduler) -> None:
    """This replica no longer leads: detach the persistent store (its rows stay for the next leader)."""
    try:
        sched.remove_jobstore(LEADER_STORE)
    except KeyError:
        pass
