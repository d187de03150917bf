"""The foundation's conversations through the offline channel and the real Dispatcher."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Chat, Message, Update, User as TgUser
from sqlalchemy import select

from backend.core.clock import now
from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import AuditLog, Role, User
from tests.conftest import texts


async def test_start_creates_citizen_and_shows_menu(chat, ctx):
    msgs = await chat.send(2001, "/start")
    assert "和合" in msgs[0].text and "群众" in msgs[0].text
    assert "❓ 帮助" in chat.buttons(2001)
    async with ctx.sm() as s:
        u = await s.scalar(select(User).where(User.telegram_id == 2001))
    assert u.role == Role.citizen.value and u.channel == "local"


async def test_menu_is_role_aware(chat):
    await chat.send(2002, "/start")
    citizen_buttons = set(chat.buttons(2002))
    await chat.as_role(2002, "admin")
    await chat.send(2002, "/start")
    assert "管理员" in chat.last(2002).text
    assert citizen_buttons <= set(chat.buttons(2002))


async def test_lang_switch_by_button_and_command(chat):
    await chat.send(2003, "/lang")
    msgs = await chat.press(2003, "English")
    assert msgs[-1].text == "Language set to English."
    msgs = await chat.send(2003, "/help")
    assert "Commands" in msgs[0].text
    msgs = await chat.send(2003, "/lang zh")
    assert msgs[0].text == "语言已设置为中文。"


async def test_language_from_telegram_language_code(chat):
    chat.ch.set_profile(2004, language_code="en-US")
    msgs = await chat.send(2004, "/start")
    assert msgs[0].text.startswith("Hello")


async def _invite(ctx, role=Role.deputy, place="椒江区", expires=timedelta(days=7)):
    async with session_scope(ctx.sm) as s:
        j = await users.find_jurisdiction(s, place) if place else None
        return (await users.create_invite(s, role, j, expires, actor="test")).code


async def test_join_valid_code_grants_role_once_and_audits(chat, ctx):
    code = await _invite(ctx)
    msgs = await chat.send(2005, f"/join {code.lower()}")
    assert "人大代表" in msgs[0].text and "椒江区" in msgs[0].text
    msgs = await chat.send(2006, f"/join {code}")
    assert "已被使用" in msgs[0].text
    async with ctx.sm() as s:
        u = await s.scalar(select(User).where(User.telegram_id == 2006))
        assert u.role == "citizen"
        actions = [a.action for a in await s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert "invite.redeemed" in actions and "user.role_changed" in actions
    assert actions.count("invite.rejected") == 1


async def test_join_expired_and_garbage_codes(chat, ctx):
    code = await _invite(ctx, expires=timedelta(hours=1))
    with time_machine.travel(now() + timedelta(hours=2)):
        msgs = await chat.send(2007, f"/join {code}")
    assert "过期" in msgs[0].text
    msgs = await chat.send(2007, "/join 💥💥' OR 1=1 --")
    assert "无效" in msgs[0].text
    msgs = await chat.send(2007, "/join")
    assert "/join" in msgs[0].text
    msgs = await chat.send(2007, "/me")
    assert "群众" in msgs[0].text


class Probe(StatesGroup):
    one = State()
    two = State()


@pytest.mark.parametrize("state", [Probe.one, Probe.two])
async def test_cancel_works_from_any_state(chat, ctx, state):
    from aiogram.fsm.storage.base import StorageKey

    await chat.send(2008, "/start")
    key = StorageKey(bot_id=ctx.channel.bot.id, chat_id=2008, user_id=2008)
    await ctx.dispatcher.storage.set_state(key, state)
    await ctx.dispatcher.storage.set_data(key, {"draft": "x"})
    msgs = await chat.send(2008, "/cancel")
    assert "已取消" in msgs[0].text
    assert await ctx.dispatcher.storage.get_state(key) is None
    assert await ctx.dispatcher.storage.get_data(key) == {}
    msgs = await chat.send(2008, "取消")
    assert "没有进行中" in msgs[0].text


async def test_fsm_state_survives_restart(settings):
    """Conversation state lives in the database, not in memory."""
    from aiogram.fsm.storage.base import StorageKey

    from backend.context import start_context

    c1 = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
    key = StorageKey(bot_id=c1.channel.bot.id, chat_id=2009, user_id=2009)
    await c1.dispatcher.storage.set_state(key, Probe.two)
    await c1.dispatcher.storage.set_data(key, {"description": "邻居装修噪音"})
    await c1.stop()
    c2 = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
    try:
        assert await c2.dispatcher.storage.get_state(key) == Probe.two.state
        assert (await c2.dispatcher.storage.get_data(key))["description"] == "邻居装修噪音"
    finally:
        await c2.stop()


async def test_bad_input_gets_polite_replies(chat):
    await chat.send(2010, "/start")
    assert "没有这个命令" in texts(await chat.send(2010, "/definitely_not_a_command"))
    before = chat.ch.last_seq()
    await chat.ch.send_sticker(2010)
    await chat.ch.send_voice(2010)
    replies = [m for m in chat.ch.out[2010] if m.seq > before]
    assert len(replies) == 2 and all("暂不支持" in m.text for m in replies)
    assert "太长" in texts(await chat.send(2010, "字" * 5000))
    emoji = await chat.send(2010, "😀😀😀")
    assert emoji and emoji[0].text  # a polite answer, no crash


async def test_stale_and_malformed_callbacks(chat):
    await chat.send(2011, "/start")
    m = chat.ch.out[2011][-1]
    await chat.ch.press_callback(2011, m, "garbage:::data")
    await chat.ch.press_callback(2011, m, "m:" + "x" * 60)
    toasts = [x for x in chat.ch.out[2011] if x.toast]
    assert len(toasts) == 2 and all("失效" in t.text for t in toasts)


async def test_updates_from_bots_and_channels_are_ignored(chat, ctx):
    from datetime import datetime, timezone

    bot_user = TgUser(id=777, is_bot=True, first_name="spam")
    upd = Update(update_id=chat.ch.next_update_id(), message=Message(
        message_id=1, date=datetime.now(timezone.utc), chat=Chat(id=777, type="private"), from_user=bot_user,
        text="/start"))
    await chat.ch.send_raw(upd)
    post = Update(update_id=chat.ch.next_update_id(), channel_post=Message(
        message_id=2, date=datetime.now(timezone.utc), chat=Chat(id=-100123, type="channel"), text="/start"))
    await chat.ch.send_raw(post)
    assert not chat.ch.out.get(777) and not chat.ch.out.get(-100123)
    async with ctx.sm() as s:
        assert await s.scalar(select(User).where(User.telegram_id == 777)) is None


async def test_duplicate_update_is_ignored(chat):
    from datetime import datetime, timezone

    from aiogram import Bot

    from bot.offline import OfflineSession

    msg = Message(message_id=5, date=datetime.now(timezone.utc), chat=Chat(id=2012, type="private"),
                  from_user=TgUser(id=2012, is_bot=False, first_name="甲"), text="/start")
    upd = Update(update_id=chat.ch.next_update_id(), message=msg)
    # from Telegram (another bot than the offline channels'), which re-delivers after a timeout
    telegram = Bot("7000002:TEST-telegram-token", session=OfflineSession(chat.ch))
    await chat.ch.dispatcher.feed_update(telegram, upd)
    await chat.ch.dispatcher.feed_update(telegram, upd)
    assert len(chat.inbox(2012)) == 1


async def test_edited_message_is_silently_ignored(chat):
    await chat.send(2013, "/start")
    n = len(chat.inbox(2013))
    await chat.ch.edit_text(2013, 1, "改过的文字")
    assert len(chat.inbox(2013)) == n


async def test_throttling(tmp_path):
    from backend.context import start_context
    from tests.conftest import make_settings

    c = await start_context(make_settings(tmp_path, throttle_per_minute=3), models=False, workers=False,
                            telegram=False, scheduler=False)
    try:
        for _ in range(6):
            await c.channel.send_text(2014, "/me")
        out = [m.text for m in c.channel.out[2014]]
        assert len(out) == 4 and "太快" in out[-1]
    finally:
        await c.stop()


async def test_handler_error_is_reported_politely_and_logged(chat, ctx, caplog, monkeypatch):
    import handlers.start as start_mod

    async def boom(user, t):
        raise RuntimeError("db exploded for 13812345678")

    monkeypatch.setattr(start_mod, "describe_me", boom)
    msgs = await chat.send(2015, "/me")
    assert "没有丢失" in msgs[0].text and "错误编号" in msgs[0].text
    assert "13812345678" not in caplog.text and "138****5678" in caplog.text


async def test_photo_download_through_getfile(chat, ctx):
    """A handler can download what a person uploaded (getFile + file download)."""
    data = b"\xff\xd8\xff" + b"x" * 1000
    await chat.ch.send_photo(2016, data)
    fid = chat.ch.inbound[2016][-1]["photo"]
    got = await ctx.channel.bot.download(fid)
    assert got.read() == data
