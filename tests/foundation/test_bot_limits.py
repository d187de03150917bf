"""The bot's flood throttle and Telegram's duplicate-update filter hold across replicas (issue #19).

On PostgreSQL two application contexts on one database play two replicas (each with its own real
Dispatcher): the throttle's counters and the handled updates are in the database, shared. SQLite
is served by one process (backend.core.instance), so there the "two replicas" are that one
context (the throttle counts in its memory; handled updates are still in the database). The
offline channels' updates (web chat, terminal chat), whose ids each process counts itself, are
never filtered."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from aiogram import Bot
from aiogram.types import Chat, Message, Update
from aiogram.types import User as TgUser
from sqlalchemy import func, select

from backend.auth import ratelimit
from backend.auth.models import RateCounter, SeenUpdate
from backend.core.db import session_scope
from bot.offline import OfflineSession
from scheduler.jobs import limits as limits_job

LIMIT = 5
TG_TOKEN = "7000001:TEST-real-telegram-bot-token"  # another bot id than the offline channels'
# Second 5 of a minute: the test's updates all fall in one fixed window (it has 55 s).
START = datetime(2026, 11, 3, 2, 0, 5, tzinfo=timezone.utc)


@pytest.fixture
async def replicas(db_settings, template_db):
    import shutil

    from backend.context import start_context

    db_settings.throttle_per_minute = LIMIT
    sqlite = db_settings.database_url is None
    if sqlite:  # the migrated template, as the other tests
        db_settings.ensure_dirs()
        shutil.copyfile(template_db, db_settings.data_dir / "hehe.db")
    started = []
    try:
        for _ in range(1 if sqlite else 2):
            started.append(await start_context(db_settings, models=False, workers=False, telegram=False,
                                               scheduler=False))
        yield started * 2 if sqlite else started
    finally:
        for c in reversed(started):
            await c.stop()


def telegram_update(update_id: int, uid: int, text: str) -> Update:
    return Update(update_id=update_id, message=Message(
        message_id=update_id, date=datetime.now(timezone.utc), chat=Chat(id=uid, type="private"),
        from_user=TgUser(id=uid, is_bot=False, first_name="甲", language_code="zh-hans"), text=text))


def telegram(ctx) -> Bot:
    """The replica's Telegram bot; its Bot API calls stay on this machine (recorded in ctx.channel)."""
    return Bot(TG_TOKEN, session=OfflineSession(ctx.channel))


def distinct(ctxs) -> list:
    return list({id(c): c for c in ctxs}.values())


def replies(ctxs, uid: int) -> list[str]:
    return [m.text for c in distinct(ctxs) for m in c.channel.out.get(uid, [])]


async def test_a_person_over_the_limit_on_two_replicas_gets_the_limit_through_and_one_polite_note(replicas):
    a, b = replicas
    with time_machine.travel(START, tick=True):
        for i in range(3 * LIMIT):  # the load balancer alternates
            await (a if i % 2 else b).channel.send_text(3101, "/me")
    texts = replies(replicas, 3101)
    notes = [t for t in texts if "太快" in t]
    assert len(notes) == 1
    assert len(texts) - len(notes) == LIMIT
    # Another person is not held back by the first one's flood.
    with time_machine.travel(START, tick=True):
        await a.channel.send_text(3102, "/me")
    assert len(replies(replicas, 3102)) == 1 and "太快" not in replies(replicas, 3102)[0]


async def test_the_next_minute_lets_the_person_through_again_with_a_new_note_when_needed(replicas):
    a, b = replicas
    with time_machine.travel(START, tick=True):
        for _ in range(LIMIT + 2):
            await a.channel.send_text(3103, "/me")
    with time_machine.travel(START + timedelta(minutes=1), tick=True):
        for _ in range(LIMIT + 2):
            await b.channel.send_text(3103, "/me")
    texts = replies(replicas, 3103)
    assert sum("太快" in t for t in texts) == 2
    assert sum("太快" not in t for t in texts) == 2 * LIMIT


async def test_the_same_telegram_update_delivered_to_both_replicas_is_handled_once(replicas):
    a, b = replicas
    upd = telegram_update(900001, 3104, "/start")
    await a.dispatcher.feed_update(telegram(a), upd)
    await b.dispatcher.feed_update(telegram(b), upd)  # Telegram re-delivers it to the other replica
    await a.dispatcher.feed_update(telegram(a), upd)
    assert len(replies(replicas, 3104)) == 1
    # The next update of the person is handled as usual.
    await b.dispatcher.feed_update(telegram(b), telegram_update(900002, 3104, "/me"))
    assert len(replies(replicas, 3104)) == 2


async def test_a_re_delivery_while_the_update_is_still_being_handled_is_dropped(replicas):
    a, b = replicas
    upd = telegram_update(900003, 3105, "/start")
    bot = telegram(a)
    await asyncio.gather(a.dispatcher.feed_update(bot, upd), a.dispatcher.feed_update(bot, upd))
    assert len(replies(replicas, 3105)) == 1
    if a.engine.dialect.name == "postgresql":  # at once on both replicas: the person lock orders them
        upd = telegram_update(900004, 3105, "/me")
        await asyncio.gather(a.dispatcher.feed_update(telegram(a), upd), b.dispatcher.feed_update(telegram(b), upd))
        assert len(replies(replicas, 3105)) == 2


async def test_web_and_terminal_chat_updates_of_two_replicas_are_all_handled(replicas):
    """Each replica's web channel counts its update ids from the same start, as does each
    terminal channel: the same ids, different people and lines — none may be dropped."""
    a, b = replicas
    for _ in range(2):  # under the limit of 5 a minute
        await a.web.send_text(3106, "/me")
        await b.web.send_text(3107, "/me")
        await b.web.send_text(3106, "帮助")
        await a.channel.send_text(3108, "/me")
        await b.channel.send_text(3108, "/me")
    for uid, n in ((3106, 4), (3107, 2), (3108, 4)):
        got = [m for c in distinct(replicas) for m in (c.web.out.get(uid, []) + c.channel.out.get(uid, []))]
        assert len(got) >= n, (uid, [m.text for m in got])  # every line answered
        assert not any("太快" in m.text for m in got)


async def test_old_counters_and_handled_updates_are_pruned_and_recent_ones_kept(replicas):
    a, _ = replicas
    with time_machine.travel(START, tick=True):
        await a.dispatcher.feed_update(telegram(a), telegram_update(900005, 3109, "/start"))
        async with session_scope(a.sm) as s:
            assert await ratelimit.hit(s, "test:minute", ratelimit.MINUTE, 5)
            assert await ratelimit.hit(s, "test:hour", ratelimit.HOUR, 5)
    with time_machine.travel(START + timedelta(minutes=10), tick=True):
        await a.dispatcher.feed_update(telegram(a), telegram_update(900006, 3109, "/me"))
        async with session_scope(a.sm) as s:
            assert await ratelimit.hit(s, "test:minute", ratelimit.MINUTE, 5)
        await limits_job.sweep()  # the scheduler's job (runs on the last context started: same database)
        async with a.sm() as s:  # the minute counter of ten minutes ago is gone, the current one stays
            windows = set(await s.scalars(select(RateCounter.window).where(RateCounter.key == "test:minute/60")))
            assert windows == {int((START + timedelta(minutes=10)).timestamp()) // 60 * 60}
            assert await s.scalar(select(func.count()).select_from(RateCounter)
                                  .where(RateCounter.key == "test:hour/3600")) == 1
            assert set(await s.scalars(select(SeenUpdate.update_id))) == {900005, 900006}
    with time_machine.travel(START + timedelta(days=1, minutes=5), tick=True):
        await limits_job.sweep()
        async with a.sm() as s:
            assert set(await s.scalars(select(SeenUpdate.update_id))) == {900006}
            left = set(await s.scalars(select(RateCounter.key).where(RateCounter.key.like("test:%"))))
            assert left == {"test:hour/3600"}  # longer windows are kept two days


async def test_the_throttle_counts_in_the_database_on_postgresql_and_in_memory_on_sqlite(replicas):
    a, _ = replicas
    with time_machine.travel(START, tick=True):
        await a.channel.send_text(3110, "/me")
    async with a.sm() as s:
        rows = await s.scalar(select(func.count()).select_from(RateCounter).where(RateCounter.key == "flood:3110/60"))
    assert rows == (1 if a.engine.dialect.name == "postgresql" else 0)


async def test_the_prune_sweep_runs_every_ten_minutes_in_the_real_scheduler(ctx):
    job = ctx.scheduler.get_job("limits-prune")
    assert job is not None and job.trigger.interval.total_seconds() == 600
