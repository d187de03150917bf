"""Leader election: the cron digests and Telegram long polling run on one replica only, and
another takes over when the leader goes (issue #19). In-process replicas: several started
applications on one PostgreSQL database, each with its own data dir."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.triggers.cron import CronTrigger

from backend.context import start_context
from scheduler.factory import LEADER_STORE
from tests.conftest import make_settings

CRON_IDS = {"disputes-digest", "sup-weekly-digest", "sup-monthly-digest"}


def cron_ids(ctx) -> set[str]:
    return {j.id for j in ctx.scheduler.get_jobs() if isinstance(j.trigger, CronTrigger)}


def sweep_ids(ctx) -> set[str]:
    return {j.id for j in ctx.scheduler.get_jobs() if not isinstance(j.trigger, CronTrigger)}


async def until(cond, timeout: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def replica(tmp_path, url, name: str, **kw):
    s = make_settings(tmp_path / name, database_url=url, leader_retry_seconds=0.2, **kw)
    return await start_context(s, models=False, workers=False, telegram=bool(kw.get("telegram_token")))


async def hand_over(a, b) -> None:
    """The leader ``a`` stops; ``b`` leads within 5 s."""
    await a.stop()
    await until(lambda: b.leader.is_leader, timeout=5)


def count_runs(ctx, runs: list[str]) -> None:
    ctx.scheduler.add_listener(lambda ev: runs.append(ev.job_id), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)


@pytest.mark.postgres
async def test_one_replica_leads_and_only_it_holds_the_cron_digests_while_every_replica_sweeps(tmp_path, pg_url):
    a = await replica(tmp_path, pg_url, "a")
    b = await replica(tmp_path, pg_url, "b")
    try:
        assert a.leader.is_leader and not b.leader.is_leader
        assert cron_ids(a) == CRON_IDS
        assert cron_ids(b) == set()
        assert sweep_ids(a) == sweep_ids(b) and "disputes-sweep" in sweep_ids(b)
        await asyncio.sleep(0.6)  # the follower keeps trying and keeps failing
        assert not b.leader.is_leader
    finally:
        await b.stop()
        await a.stop()


@pytest.mark.postgres
async def test_when_the_leader_stops_a_follower_takes_over_and_a_digest_is_not_run_twice(tmp_path, pg_url):
    from backend.core.clock import now

    a = await replica(tmp_path, pg_url, "a")
    b = await replica(tmp_path, pg_url, "b")
    runs_a: list[str] = []
    runs_b: list[str] = []
    count_runs(a, runs_a)
    count_runs(b, runs_b)
    try:
        # The weekly digest falls due on the leader: it runs there, once.
        a.scheduler.modify_job("sup-weekly-digest", LEADER_STORE, next_run_time=now() - timedelta(seconds=1))
        await until(lambda: "sup-weekly-digest" in runs_a)
        await hand_over(a, b)
        assert cron_ids(b) == CRON_IDS
        await asyncio.sleep(1.0)
        assert runs_a.count("sup-weekly-digest") == 1
        assert "sup-weekly-digest" not in runs_b
        assert b.scheduler.get_job("sup-weekly-digest").next_run_time > now()
    finally:
        await b.stop()


@pytest.mark.postgres
async def test_a_digest_that_fell_due_while_no_replica_led_runs_once_on_the_next_leader(tmp_path, pg_url):
    from backend.core.clock import now

    a = await replica(tmp_path, pg_url, "a")
    b = await replica(tmp_path, pg_url, "b")
    runs_b: list[str] = []
    count_runs(b, runs_b)
    try:
        a.scheduler.pause()  # the leader hangs before its digest time comes
        a.scheduler.modify_job("disputes-digest", LEADER_STORE, next_run_time=now() - timedelta(minutes=5))
        await hand_over(a, b)
        await until(lambda: "disputes-digest" in runs_b)
        await asyncio.sleep(0.5)
        assert runs_b.count("disputes-digest") == 1
        assert b.scheduler.get_job("disputes-digest").next_run_time > now()
    finally:
        await b.stop()


@pytest.mark.postgres
async def test_a_leader_whose_database_session_dies_steps_down_and_one_replica_leads_again(tmp_path, pg_url):
    import asyncpg

    from backend.core.leader import LOCK_KEY, _asyncpg_dsn

    a = await replica(tmp_path, pg_url, "a")
    b = await replica(tmp_path, pg_url, "b")
    try:
        assert a.leader.is_leader
        conn = await asyncpg.connect(_asyncpg_dsn(pg_url))
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = ($1::bigint & 4294967295)::oid "  # this test's database: other runs may share the server
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", LOCK_KEY)
        await conn.close()
        assert killed == 1
        await until(lambda: a.leader.is_leader != b.leader.is_leader, timeout=5)
        await asyncio.sleep(1.0)  # and it stays so: the one leader keeps its new session's lock
        assert a.leader.is_leader != b.leader.is_leader
        leader, follower = (a, b) if a.leader.is_leader else (b, a)
        assert cron_ids(leader) == CRON_IDS and cron_ids(follower) == set()
    finally:
        await b.stop()
        await a.stop()


def gaps(tg) -> list[float]:
    at = [t for m, _, t in tg.calls if m == "getUpdates"]
    return [b - a for a, b in zip(at, at[1:])]


@pytest.mark.postgres
async def test_only_the_leader_polls_telegram_and_the_follower_starts_polling_when_it_leads(tmp_path, pg_url):
    from tests.reliability.fake_telegram import FakeTelegram

    tg = await FakeTelegram().start()
    extra = dict(telegram_token="123456:TEST-fake-telegram-token", telegram_api_url=tg.url,
                 telegram_request_timeout=1.0, outbox_send_timeout=1.0)
    a = await replica(tmp_path, pg_url, "a", **extra)
    b = await replica(tmp_path, pg_url, "b", **extra)
    try:
        await until(lambda: tg.count("getUpdates") >= 6)
        assert a.leader.is_leader and not b.leader.is_leader
        # One poller: each getUpdates (held 0.2 s by the fake) comes after the previous answer;
        # a second poller would overlap it.
        assert min(gaps(tg)) >= 0.15
        await hand_over(a, b)
        before = tg.count("getUpdates")
        await until(lambda: tg.count("getUpdates") > before + 3)
        assert min(gaps(tg)[before:]) >= 0.15
    finally:
        await b.stop()
        await tg.stop()
