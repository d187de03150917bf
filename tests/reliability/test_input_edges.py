"""Input edges in chat: control characters, and /start in the middle of a form."""
from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from tests.conftest import texts


class Form(StatesGroup):
    step = State()


async def _in_form(ctx, chat, uid: int, draft: dict) -> StorageKey:
    await chat.send(uid, "/start")
    key = StorageKey(bot_id=ctx.channel.bot.id, chat_id=uid, user_id=uid)
    await ctx.dispatcher.storage.set_state(key, Form.step)
    await ctx.dispatcher.storage.set_data(key, draft)
    return key


async def test_a_message_with_a_nul_byte_is_refused_politely_and_the_form_stays(ctx, chat):
    key = await _in_form(ctx, chat, 6101, {"description": "邻居噪音"})
    msgs = await chat.send(6101, "楼上\x00每晚敲打")
    assert "控制字符" in texts(msgs)
    assert await ctx.dispatcher.storage.get_state(key) == Form.step.state
    assert await ctx.dispatcher.storage.get_data(key) == {"description": "邻居噪音"}


async def test_start_in_the_middle_of_a_form_asks_before_dropping_the_draft(ctx, chat):
    key = await _in_form(ctx, chat, 6102, {"description": "欠薪三个月"})
    msgs = await chat.send(6102, "/start")
    assert "还没有提交" in texts(msgs)
    assert await ctx.dispatcher.storage.get_data(key) == {"description": "欠薪三个月"}  # nothing lost yet
    msgs = await chat.press(6102, "继续填写")
    assert "接着回答" in texts(msgs)
    assert await ctx.dispatcher.storage.get_state(key) == Form.step.state

    await chat.send(6102, "/start")
    msgs = await chat.press(6102, "放弃草稿")
    assert "草稿已放弃" in texts(msgs) and "请选择要办理的事项" in texts(msgs)
    assert await ctx.dispatcher.storage.get_state(key) is None
    assert await ctx.dispatcher.storage.get_data(key) == {}
