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
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

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
    """Add or replace the jobs ``specs`` and remove the jobs ``cancel`` through APScheduler's
    public ``add_job``/``remove_job`` (one job-store write each; ``add_job`` wakes the scheduler
    when a job is due sooner). Without a running scheduler (some CLI commands) nothing is
    scheduled: the due-date sweeps pick up what is due.

    Transitional: reminders move to due-date columns swept by one interval job per slice
    (scheduler/sweep.py); this goes when the last caller has moved."""
    from apscheduler.jobstores.base import JobLookupError

    sched = _scheduler()
    if sched is None:
        log.debug("no scheduler: %s not scheduled", [s[3] for s in specs] + list(cancel))
        return 0
    for job_id in cancel:
        try:
            sched.remove_job(job_id)
        except JobLookupError:
            pass
    for func, run_at, args, job_id in specs:
        sched.add_job(func, "date", run_date=run_at, args=list(args), id=job_id, replace_existing=True)
    return len(specs)
