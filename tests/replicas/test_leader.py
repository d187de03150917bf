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


@pytest.mark.postgres
async def test_telegram_messages_go_out_from_the_leader_alone_within_telegrams_limits_and_the_next_leader_sends_on(
        tmp_path, pg_url):
    """Telegram allows a bot about 30 messages a second in all and one a second per chat, however
    many replicas send: with two replicas delivering, the Bot API sees no more than that, each
    message once; when the leader goes, the other replica sends what is still queued."""
    from backend.core.db import session_scope
    from backend.notify.delivery import PER_CHAT_INTERVAL
    from backend.notify.models import Outbox
    from backend.users import service as users
    from tests.reliability.fake_telegram import FakeTelegram

    tg = await FakeTelegram().start()
    extra = dict(telegram_token="123456:TEST-fake-telegram-token", telegram_api_url=tg.url,
                 telegram_request_timeout=1.0, outbox_send_timeout=2.0, leader_retry_seconds=0.2)
    a = await start_context(make_settings(tmp_path / "a", database_url=pg_url, **extra),
                            models=False, workers=True, scheduler=False, telegram=True)
    b = await start_context(make_settings(tmp_path / "b", database_url=pg_url, **extra),
                            models=False, workers=True, scheduler=False, telegram=True)
    try:
        await until(lambda: "telegram" in a.deliverer.bots and "telegram" in b.deliverer.bots)
        assert a.leader.is_leader and not b.leader.is_leader
        async with session_scope(a.sm) as s:
            people = [(await users.get_or_create_user(s, 8800 + i, name=f"TG{i}", channel="telegram"))[0].id
                      for i in range(41)]
        busy, others = people[0], people[1:]

        async def queue(rows: list[tuple[int, str]]) -> None:
            async with session_scope(b.sm) as s:
                s.add_all([Outbox(user_id=u, text=t, urgent=True) for u, t in rows])
            for r in (a, b):  # as a request committing on either replica does
                r.deliverer.wake.set()

        expected: set[str] = set()
        for wave in range(4):  # queued while the earlier waves are being sent
            rows = [(busy, f"忙-{wave}"), *[(u, f"通知-{wave}-{u}") for u in others[wave * 10:(wave + 1) * 10]]]
            expected |= {t for _, t in rows}
            await queue(rows)
            await asyncio.sleep(0.3)
        await until(lambda: len(tg.sent) >= len(expected), timeout=30)
        await asyncio.sleep(1.0)  # nothing more comes
        sent = [(t, c) for m, c, t in tg.calls if m == "sendMessage"]
        assert sorted(c["text"] for _, c in sent) == sorted(expected)  # each once
        times = sorted(t for t, _ in sent)
        busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        assert busiest <= 32, f"{busiest} messages in one second"
        to_busy = sorted(t for t, c in sent if int(c["chat_id"]) == 8800)
        assert min(y - x for x, y in zip(to_busy, to_busy[1:])) >= PER_CHAT_INTERVAL - 0.1

        await hand_over(a, b)
        await queue([(u, f"接班-{u}") for u in others[:5]])
        await until(lambda: sum(m["text"].startswith("接班-") for m in tg.sent) == 5, timeout=15)
    finally:
        await a.stop()
        await b.stop()
        await tg.stop()
