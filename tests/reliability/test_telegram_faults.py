"""Drills against a fake Telegram Bot API server on loopback: Telegram hanging or failing must
never stop Hehe from starting, never hold up the web chat, and never lose or silently drop a
message."""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from aiogram.types import Chat, Message, Update, User as TgUser
from sqlalchemy import select

from backend.context import start_context
from backend.core.clock import now
from backend.core.db import session_scope
from backend.notify import service as outbox
from backend.notify.models import Outbox, Unreachable
from backend.users import service as users
from backend.users.models import Role, User
from tests.conftest import ChatDriver


async def _wait_for(cond, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def connected(tg_settings):
    """A Hehe (no workers, no scheduler) whose bot has reached the fake Telegram."""
    ctx = await start_context(tg_settings, models=False, workers=False, telegram=True, scheduler=False)
    try:
        await _wait_for(lambda: "telegram" in ctx.deliverer.bots)
        yield ctx
    finally:
        await ctx.stop()


async def _telegram_user(ctx, tid: int, role: Role = Role.citizen) -> int:
    async with session_scope(ctx.sm) as s:
        u, _ = await users.get_or_create_user(s, tid, name=f"TG{tid}", channel="telegram")
        if role != Role.citizen:
            await users.set_role(s, u, role, None, actor="test")
        return u.id


async def _queue(ctx, user_id: int, text: str, n: int = 1) -> list[int]:
    async with session_scope(ctx.sm) as s:
        rows = [Outbox(user_id=user_id, text=f"{text} {i}" if n > 1 else text, urgent=True) for i in range(n)]
        s.add_all(rows)
        await s.flush()
        return [r.id for r in rows]


async def test_hehe_starts_and_serves_the_web_chat_while_telegram_hangs(tg_settings, fake_tg):
    fake_tg.mode = "hang"
    t0 = time.monotonic()
    ctx = await start_context(tg_settings, models=False, workers=True, telegram=True, scheduler=False)
    try:
        assert time.monotonic() - t0 < 5, "start-up waited for Telegram"
        t1 = time.monotonic()
        msgs = await ChatDriver(ctx).send(7001, "/start")
        assert msgs and "和合" in msgs[0].text
        assert time.monotonic() - t1 < 3
        await _wait_for(lambda: ctx.telegram_error is not None)  # it tried, and says why
        assert "telegram" not in ctx.deliverer.bots  # nothing is sent to a Telegram not yet reached
        fake_tg.mode = "ok"  # Telegram recovers: Hehe connects and starts polling by itself
        await _wait_for(lambda: fake_tg.count("getUpdates") > 0, timeout=15)
        assert ctx.telegram_error is None and "telegram" in ctx.deliverer.bots
    finally:
        t2 = time.monotonic()
        await ctx.stop()
        assert time.monotonic() - t2 < 5, "shutdown waited for Telegram"


async def test_hehe_starts_when_telegram_answers_500_and_connects_once_it_recovers(tg_settings, fake_tg):
    fake_tg.mode = "500"
    ctx = await start_context(tg_settings, models=False, workers=True, telegram=True, scheduler=False)
    try:
        uid = await _telegram_user(ctx, 424242)
        await _queue(ctx, uid, "您的纠纷已受理")
        await _wait_for(lambda: fake_tg.count("deleteWebhook") >= 1)
        msgs = await ChatDriver(ctx).send(7002, "/start")  # the web chat works meanwhile
        assert msgs
        fake_tg.mode = "ok"
        await _wait_for(lambda: any(m["text"] == "您的纠纷已受理" for m in fake_tg.sent), timeout=15)
    finally:
        await ctx.stop()


async def test_a_hanging_telegram_never_holds_up_the_web_chat(tg_settings, fake_tg):
    ctx = await start_context(tg_settings, models=False, workers=True, telegram=True, scheduler=False)
    try:
        await _wait_for(lambda: "telegram" in ctx.deliverer.bots)
        fake_tg.mode = "hang"
        uid = await _telegram_user(ctx, 515151)
        await _queue(ctx, uid, "提醒", n=12)  # 12 Telegram messages due while Telegram hangs
        ctx.deliverer.wake.set()
        await _wait_for(lambda: fake_tg.count("sendMessage") > 0)
        chat = ChatDriver(ctx)
        t0 = time.monotonic()
        await chat.send(7003, "/start")
        msgs = await chat.send(7003, "/help")
        assert msgs and time.monotonic() - t0 < 3, "a web chat step waited for Telegram"
    finally:
        t1 = time.monotonic()
        await ctx.stop()
        assert time.monotonic() - t1 < 10


async def test_messages_for_a_channel_without_a_bot_never_head_the_queue(ctx):
    # 250 due messages for Telegram users, and no Telegram bot configured: the web chat's own
    # messages are still delivered.
    async with session_scope(ctx.sm) as s:
        for i in range(5):
            u, _ = await users.get_or_create_user(s, 880000 + i, channel="telegram")
            s.add_all([Outbox(user_id=u.id, text=f"tg {j}", not_before=now() - timedelta(hours=1)) for j in range(50)])
    chat = ChatDriver(ctx)
    await chat.send(7004, "/start")
    async with session_scope(ctx.sm) as s:
        me = await s.scalar(select(User).where(User.telegram_id == 7004))
        s.add(Outbox(user_id=me.id, text="给网页用户的通知", urgent=True))
    await ctx.flush()
    assert chat.last(7004).text == "给网页用户的通知"


async def test_telegram_429_retry_after_is_honoured_and_costs_no_attempt(connected, fake_tg):
    ctx = connected
    uid = await _telegram_user(ctx, 616161)
    [mid] = await _queue(ctx, uid, "调解会安排在明天上午")
    fake_tg.retry_after = 2
    assert await ctx.deliverer.deliver_due(["telegram"]) == 0
    async with ctx.sm() as s:
        m = await s.get(Outbox, mid)
        assert m.attempts == 0 and m.sent_at is None
        assert (m.not_before - now()).total_seconds() > 1
    assert await ctx.deliverer.deliver_due(["telegram"]) == 0  # still waiting: not asked again
    assert fake_tg.count("sendMessage") == 1
    await asyncio.sleep(2.1)
    assert await ctx.deliverer.deliver_due(["telegram"]) == 1
    assert fake_tg.sent[-1]["text"] == "调解会安排在明天上午"


async def test_a_person_who_blocked_the_bot_is_marked_unreachable_and_admins_are_told(connected, fake_tg):
    ctx = connected
    uid = await _telegram_user(ctx, 717171)
    await _telegram_user(ctx, 717100, Role.admin)
    await _queue(ctx, uid, "请对调解结果评价")
    fake_tg.blocked.add(717171)
    await ctx.deliverer.deliver_due(["telegram"])
    assert fake_tg.count("sendMessage") == 1  # asked once, not 8 times
    async with ctx.sm() as s:
        assert await s.get(Unreachable, (uid, "telegram")) is not None
        dead = await outbox.dead_letters(s)
        assert [(m.text, u.telegram_id) for m, u in dead] == [("请对调解结果评价", 717171)]
    await ctx.deliverer.deliver_due(["telegram"])
    admin_msgs = [m["text"] for m in fake_tg.sent if m["chat_id"] == 717100]
    assert any("TG717171" in t and "屏蔽" in t for t in admin_msgs), admin_msgs
    # the person unblocks the bot and writes again; an admin re-sends the dead letter
    fake_tg.blocked.clear()
    async with session_scope(ctx.sm) as s:
        assert await outbox.retry(s) >= 1
    await ctx.deliverer.deliver_due(["telegram"])
    assert any(m["chat_id"] == 717171 and m["text"] == "请对调解结果评价" for m in fake_tg.sent)


async def test_a_message_out_of_attempts_becomes_a_listed_dead_letter_not_silence(connected, fake_tg):
    ctx = connected
    uid = await _telegram_user(ctx, 818181)
    await _telegram_user(ctx, 818100, Role.admin)
    [mid] = await _queue(ctx, uid, "督办事项即将到期")
    fake_tg.mode = "502"
    for _ in range(8):
        async with session_scope(ctx.sm) as s:
            (await s.get(Outbox, mid)).not_before = now() - timedelta(seconds=1)
        await ctx.deliverer.deliver_due(["telegram"])
    async with ctx.sm() as s:
        m = await s.get(Outbox, mid)
        assert m.dead_at is not None and m.attempts == 8 and "502" in (m.last_error or "") + "502"
    fake_tg.mode = "ok"
    await ctx.deliverer.deliver_due(["telegram"])
    assert any(m["chat_id"] == 818100 and str(mid) in m["text"] for m in fake_tg.sent)
    assert not any(m["chat_id"] == 818181 for m in fake_tg.sent)  # not resent by itself


async def test_a_long_case_card_reaches_telegram_in_parts_within_its_limit(connected, fake_tg):
    ctx = connected
    uid = await _telegram_user(ctx, 919191)
    card = "案件 TZ-JJ-2026-0001\n" + "\n".join(f"备注{i}：" + "双方就围墙边界再次协商，" * 6 for i in range(80))
    assert len(card) > 5000
    async with session_scope(ctx.sm) as s:
        s.add(Outbox(user_id=uid, text=card, buttons=[[["受理", "dsp:accept:1"]]], urgent=True))
    assert await ctx.deliverer.deliver_due(["telegram"]) == 1
    parts = [m for m in fake_tg.sent if m["chat_id"] == 919191]
    assert len(parts) >= 2 and all(len(p["text"]) <= 4096 for p in parts)
    assert "\n".join(p["text"] for p in parts) == card  # nothing lost, cut at line breaks
    assert parts[-1]["markup"] and not any(p["markup"] for p in parts[:-1])  # buttons on the last part


async def test_a_reply_during_a_telegram_outage_is_queued_and_delivered_later(connected, fake_tg):
    ctx = connected
    fake_tg.mode = "502"
    tg_user = TgUser(id=929292, is_bot=False, first_name="王", language_code="zh-hans")
    update = Update(update_id=1, message=Message(message_id=1, date=int(time.time()),
                                                 chat=Chat(id=929292, type="private"),
                                                 from_user=tg_user, text="/help"))
    await ctx.dispatcher.feed_update(ctx.telegram_bot, update)
    async with ctx.sm() as s:
        queued = (await s.scalars(select(Outbox).join(User, User.id == Outbox.user_id)
                                  .where(User.telegram_id == 929292, Outbox.sent_at.is_(None)))).all()
    assert queued, "the reply was lost"
    fake_tg.mode = "ok"
    await ctx.deliverer.deliver_due(["telegram"])
    assert any(m["chat_id"] == 929292 and m["text"] == queued[0].text for m in fake_tg.sent)
