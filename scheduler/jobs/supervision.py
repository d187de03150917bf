"""Supervision reminders. Module-level functions taking ids; each re-reads the item and
does nothing if the state moved on (dedupe keys make a second run a no-op)."""
from __future__ import annotations

import logging
import pickle
from datetime import datetime

from backend.core.clock import now
from backend.core.db import session_scope
from scheduler import runtime

log = logging.getLogger("hehe.supervision.jobs")
MOD = "scheduler.jobs.supervision"


async def acceptance_due(item_id: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.remind_acceptance(s, item_id)
    ctx.deliverer.wake.set()


async def reply_reminder(suggestion_id: int, days_before: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.remind_reply(s, suggestion_id, days_before)
    ctx.deliverer.wake.set()


async def reply_overdue(suggestion_id: int, day: int) -> None:
    """Daily while overdue; the next day's run is its own job (own id) so a restart never doubles it."""
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        _sent, next_at = await svc.reply_overdue(s, suggestion_id, day)
    if next_at is not None:
        runtime.schedule_once(f"{MOD}:reply_overdue", max(next_at, now()), [suggestion_id, day + 1],
                              f"sup-reply-{suggestion_id}-over{day + 1}")
    ctx.deliverer.wake.set()


async def followup(suggestion_id: int) -> None:
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    async with session_scope(ctx.sm) as s:
        await svc.followup_due(s, suggestion_id)
    ctx.deliverer.wake.set()


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


def schedule_batch(specs: list[tuple[str, datetime, list, str]]) -> int:
    """Persist several one-off jobs ``(func ref, run_at, args, job id)`` in ONE job-store
    transaction (replace_existing semantics), then wake the scheduler once.

    ``schedule_once`` commits once per job, and each SQLite commit is an fsync (~3 ms here):
    10,000 reminders took ~37 s that way. APScheduler 3 has no batch API, so this builds the
    same ``Job`` objects it would and writes their rows the way ``SQLAlchemyJobStore.add_job``
    does. Any other job store (or no running scheduler) falls back to ``schedule_once``.
    """
    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.util import datetime_to_utc_timestamp

    ctx = runtime._CTX
    sched = getattr(ctx, "scheduler", None)
    store = sched._jobstores.get("default") if sched is not None and sched.running else None
    if not isinstance(store, SQLAlchemyJobStore):
        for func, run_at, args, job_id in specs:
            runtime.schedule_once(func, run_at, args, job_id)
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
    ids = list(rows)
    with store.engine.begin() as conn:
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            conn.execute(store.jobs_t.delete().where(store.jobs_t.c.id.in_(ids[i:i + 500])))
        conn.execute(store.jobs_t.insert(), list(rows.values()))
    sched.wakeup()
    return len(rows)


async def sweep() -> None:
    """At start-up and every morning: schedule the reminders open items lack."""
    from backend.supervision import service as svc

    ctx = runtime.get_context()
    sched = ctx.scheduler
    if sched is None:
        return
    async with ctx.sm() as s:
        missing = await svc.missing_reminders(s, lambda jid: sched.get_job(jid) is not None, now())
    if missing:
        log.info("supervision sweep: %s reminders re-scheduled", len(missing))
        schedule_batch([(f"{MOD}:{func}", at, args, jid) for func, at, args, jid in missing])


def register(scheduler) -> None:
    scheduler.add_job(f"{MOD}:weekly_digest", "cron", day_of_week="mon", hour=9, minute=0,
                      id="sup-weekly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:monthly_digest", "cron", day=1, hour=9, minute=30,
                      id="sup-monthly-digest", replace_existing=True)
    scheduler.add_job(f"{MOD}:sweep", "cron", hour=8, minute=0, id="sup-sweep-daily", replace_existing=True)
    scheduler.add_job(f"{MOD}:sweep", "date", id="sup-sweep-start", replace_existing=True)  # once, at start
