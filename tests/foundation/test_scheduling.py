"""Services schedule jobs after their transaction commits — never for a change that rolled
back — and the job store never waits for the application's write lock."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from backend.context import start_context
from backend.core.clock import now
from scheduler import runtime

JOB = "scheduler.jobs.disputes:deadline_reminder"


@pytest.fixture
async def sctx(settings):
    c = await start_context(settings, models=False, workers=False, telegram=False)
    try:
        yield c
    finally:
        await c.stop()


def job_ids(ctx) -> set[str]:
    return {j.id for j in ctx.scheduler.get_jobs() if j.id.startswith("t-")}


async def test_jobs_follow_the_commit_and_never_a_rollback(sctx):
    at = now() + timedelta(days=2)
    async with sctx.sm() as s:
        runtime.schedule_after_commit(s, JOB, at, [1, "accept", at.isoformat()], "t-rolled-back")
        await s.execute(text("SELECT 1"))
        await s.rollback()
    assert job_ids(sctx) == set()

    async with sctx.sm() as s:
        runtime.schedule_after_commit(s, JOB, at, [1, "accept", at.isoformat()], "t-a")
        runtime.schedule_after_commit(s, JOB, at, [2, "accept", at.isoformat()], "t-b")
        runtime.cancel_after_commit(s, "t-b")  # the last change of a job wins
        assert job_ids(sctx) == set()  # nothing before the commit
        await s.commit()
    assert job_ids(sctx) == {"t-a"}
    assert sctx.scheduler.get_job("t-a").args[0] == 1

    later = at + timedelta(hours=1)
    async with sctx.sm() as s:
        runtime.schedule_after_commit(s, JOB, later, [1, "accept", later.isoformat()], "t-a")  # replaces
        await s.commit()
    assert sctx.scheduler.get_job("t-a").next_run_time == later
    async with sctx.sm() as s:
        runtime.cancel_after_commit(s, "t-a")
        await s.commit()
    assert job_ids(sctx) == set()


async def test_the_job_store_does_not_wait_for_an_open_write_transaction(sctx):
    assert sctx.settings.scheduler_db_url != sctx.settings.sync_db_url  # SQLite: its own file
    writer = sctx.sm()
    await writer.execute(text("INSERT INTO audit_log (actor, action, at, detail) "
                              "VALUES ('test', 'test.hold', CURRENT_TIMESTAMP, '{}')"))
    try:  # the application's write lock is held; scheduling (synchronous) must not block on it
        at = now() + timedelta(days=1)
        await asyncio.wait_for(asyncio.to_thread(
            runtime.schedule_many, [(JOB, at, [1, "accept", at.isoformat()], "t-while-locked")]), 5)
        assert "t-while-locked" in job_ids(sctx)
    finally:
        await writer.rollback()
        await writer.close()


async def slow_job(tag: str) -> None:
    """A job that takes a while, records that it ran, and schedules a follow-up due at once.
    (Run by the scheduler from its reference: a module object of its own, so it records in the
    database, not in a variable of this module.)"""
    from backend.core.db import session_scope
    from backend.users.models import AuditLog

    await asyncio.sleep(0.3)
    async with session_scope(runtime.get_context().sm) as s:
        s.add(AuditLog(actor="test", action="test.job", note=tag))
    if tag == "first":
        runtime.schedule_once("tests.foundation.test_scheduling:slow_job", now(), ["follow-up"], "t-follow-up")


async def test_the_clock_fixture_runs_everything_due_and_returns_when_it_is_done(sctx):
    from sqlalchemy import select

    from backend.users.models import AuditLog
    from tests.conftest import Clock

    at = now() + timedelta(days=3)
    runtime.schedule_once("tests.foundation.test_scheduling:slow_job", at, ["first"], "t-first")
    runtime.schedule_once("tests.foundation.test_scheduling:slow_job", at + timedelta(days=1), ["later"], "t-later")
    await Clock(sctx).run_due(at + timedelta(minutes=1))
    async with sctx.sm() as s:  # both finished (no sleep here), the later one not yet due
        done = list(await s.scalars(select(AuditLog.note).where(AuditLog.action == "test.job").order_by(AuditLog.id)))
    assert done == ["first", "follow-up"]
    assert job_ids(sctx) == {"t-later"}
