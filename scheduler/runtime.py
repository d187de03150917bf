"""What scheduled jobs reach at run time, and how services schedule them.

Jobs are module-level functions that take ids; they find the running application's context
here (never a pickled live object).

Services schedule with :func:`schedule_after_commit` / :func:`cancel_after_commit`: the change
is written to the job store once the service's transaction commits (never if it rolls back), all
changes of one transaction in one job-store transaction. On SQLite the job store is its own
file (``Settings.scheduler_db_url``), so writing it never waits for the application's write lock.
"""
from __future__ import annotations

import logging
import pickle
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.core.clock import now

log = logging.getLogger("hehe.scheduler")
_CTX: Any = None
_PENDING = "hehe_scheduler_ops"  # Session.info key: [(job_id, (func, run_at, args) | None)]

JobSpec = tuple[str, datetime, list, str]  # (func ref, run_at, args, job id)


def set_context(ctx: Any) -> None:
    global _CTX
    _CTX = ctx


def get_context() -> Any:
    if _CTX is None:
        raise RuntimeError("no application context: jobs run only inside a started Hehe")
    return _CTX


def _scheduler():
    sched = getattr(_CTX, "scheduler", None)
    return sched if sched is not None and sched.running else None


# ---------------------------------------------------------------- from services: after commit
def schedule_after_commit(session, func: str, run_at: datetime, args: list, job_id: str) -> None:
    """Run ``func`` (e.g. ``"scheduler.jobs.disputes:remind"``) at ``run_at`` — once ``session``'s
    transaction has committed. ``job_id`` makes it idempotent: scheduling again replaces it."""
    _ops(session).append((job_id, (func, run_at, list(args))))


def cancel_after_commit(session, job_id: str) -> None:
    """Remove the job ``job_id`` (if any) once ``session``'s transaction has committed."""
    _ops(session).append((job_id, None))


def _ops(session) -> list:
    return getattr(session, "sync_session", session).info.setdefault(_PENDING, [])


@event.listens_for(Session, "after_commit")
def _apply_after_commit(sync_session: Session) -> None:
    ops = sync_session.info.pop(_PENDING, None)
    if not ops:
        return
    final = dict(ops)  # the last change of each job wins
    try:
        schedule_many([(*spec[:2], spec[2], jid) for jid, spec in final.items() if spec is not None],
                      cancel=[jid for jid, spec in final.items() if spec is None])
    except Exception:  # noqa: BLE001 - the change is committed; the sweeps re-create lost reminders
        log.exception("could not schedule %s", list(final))


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(sync_session: Session) -> None:
    sync_session.info.pop(_PENDING, None)


# ---------------------------------------------------------------- direct (jobs, sweeps, CLI)
def schedule_once(func: str, run_at: datetime, args: list, job_id: str) -> None:
    """Persist one job now (from a job or a sweep; services use :func:`schedule_after_commit`)."""
    schedule_many([(func, run_at, list(args), job_id)])


def cancel(job_id: str) -> None:
    schedule_many([], cancel=[job_id])


def schedule_many(specs: list[JobSpec], cancel: list[str] = ()) -> int:
    """Add or replace the jobs ``specs`` and remove the jobs ``cancel`` in ONE job-store
    transaction, then wake the scheduler if a new job is due before its next planned run.

    APScheduler 3 has no batch API and ``add_job`` commits once per job (10,000 reminders took
    ~37 s that way, docs/supervision.md), so this builds the same ``Job`` objects it would and
    writes their rows the way ``SQLAlchemyJobStore.add_job`` does. Without a running scheduler
    (some CLI commands) nothing is scheduled: the periodic sweeps pick up what is due."""
    from apscheduler.job import Job
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.util import datetime_to_utc_timestamp

    sched = _scheduler()
    if sched is None:
        log.debug("no scheduler: %s not scheduled", [s[3] for s in specs] + list(cancel))
        return 0
    store = sched._jobstores.get("default")
    if not isinstance(store, SQLAlchemyJobStore):
        for job_id in cancel:
            try:
                sched.remove_job(job_id)
            except JobLookupError:
                pass
        for func, run_at, args, job_id in specs:
            sched.add_job(func, "date", run_date=run_at, args=args, id=job_id, replace_existing=True)
        return len(specs)
    d = sched._job_defaults
    rows, t = {}, now()
    for func, run_at, args, job_id in specs:
        trigger = DateTrigger(run_date=run_at, timezone=sched.timezone)
        job = Job(sched, id=job_id, func=func, trigger=trigger, executor="default", args=list(args), kwargs={},
                  name=func.rsplit(":", 1)[-1], misfire_grace_time=d["misfire_grace_time"], coalesce=d["coalesce"],
                  max_instances=d["max_instances"], next_run_time=trigger.get_next_fire_time(None, t))
        rows[job_id] = {"id": job_id, "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                        "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol)}
    ids = list(dict.fromkeys([*rows, *cancel]))
    with store.engine.begin() as conn:
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            conn.execute(store.jobs_t.delete().where(store.jobs_t.c.id.in_(ids[i:i + 500])))
        if rows:
            conn.execute(store.jobs_t.insert(), list(rows.values()))
    if specs:
        _wake_if_sooner(sched, min(s[1] for s in specs))
    return len(rows)


def _wake_if_sooner(sched, run_at: datetime) -> None:
    """The scheduler sleeps until its next job; recompute only if ``run_at`` comes first."""
    loop = sched._eventloop
    timer = getattr(sched, "_timeout", None)
    if loop is not None and timer is not None and not timer.cancelled():
        planned_in = timer.when() - loop.time()
        if (run_at - now()).total_seconds() > planned_in + 1:
            return
    sched.wakeup()
