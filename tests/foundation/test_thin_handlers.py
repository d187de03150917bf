"""Thin handlers: a rule that says no (a DomainError) becomes a rollback and a polite reply in
one place, and RoleFilter lets only the named roles (and admins) reach a handler."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import CallbackQuery, Message
from sqlalchemy import select

from backend.core.errors import Conflict, Forbidden
from backend.users.models import AuditLog, Role
from bot.filters import RoleFilter
from bot.menu import inline
from bot.offline import BOT_ID
from tests.conftest import ChatDriver, texts
from tests.foundation.test_update_transaction import use_dispatcher


class Draft(StatesGroup):
    waiting = State()


class ProbeCb(CallbackData, prefix="tprobe"):
    n: int


def refusing_router() -> Router:
    r = Router(name="test-refusals")

    @r.message(Command("refuse"))
    async def refuse(message: Message, state: FSMContext, session, user) -> None:
        await state.set_state(Draft.waiting)
        session.add(AuditLog(actor=f"user:{user.id}", action="test.refused", note="x"))
        raise Conflict("common.too_long", max=7)

    @r.message(Command("card"))
    async def card(message: Message) -> None:
        await message.answer("卡片", reply_markup=inline([[("处理", ProbeCb(n=1).pack())]]))

    @r.callback_query(ProbeCb.filter())
    async def press(cq: CallbackQuery, session, user) -> None:
        session.add(AuditLog(actor=f"user:{user.id}", action="test.refused", note="button"))
        raise Forbidden("common.err_forbidden")

    return r


def mediator_router() -> Router:
    r = Router(name="test-mediators")
    r.message.filter(RoleFilter(Role.mediator))

    @r.message(F.text == "队列")
    async def queue(message: Message) -> None:
        await message.answer("调解队列")

    return r


async def test_a_refused_message_is_answered_politely_and_nothing_it_did_is_kept(ctx):
    use_dispatcher(ctx, refusing_router())
    chat = ChatDriver(ctx)
    out = await chat.send(6001, "/refuse")
    assert texts(out) == "消息太长了（最多 7 字），请精简后再发送。"
    async with ctx.sm() as s:
        assert await s.scalar(select(AuditLog).where(AuditLog.action == "test.refused")) is None
    key = StorageKey(bot_id=BOT_ID, chat_id=6001, user_id=6001)
    assert await ctx.dispatcher.storage.get_state(key) is None  # the step was rolled back too


async def test_a_refused_button_press_shows_the_reason_as_an_alert(ctx):
    use_dispatcher(ctx, refusing_router())
    chat = ChatDriver(ctx)
    await chat.send(6002, "/card")
    await chat.press(6002, "处理")
    notices = [m.text for m in ctx.channel.out[6002] if m.toast]
    assert notices == ["抱歉，您没有权限进行此操作。"]
    async with ctx.sm() as s:
        assert await s.scalar(select(AuditLog).where(AuditLog.action == "test.refused")) is None


async def test_role_filter_lets_the_named_role_and_admins_through_and_no_one_else(ctx):
    use_dispatcher(ctx, mediator_router())
    chat = ChatDriver(ctx)
    await chat.as_role(6003, "mediator", "椒江区")
    await chat.as_role(6004, "admin")
    assert texts(await chat.send(6003, "队列")) == "调解队列"
    assert texts(await chat.send(6004, "队列")) == "调解队列"
    await chat.as_role(6006, "deputy", "椒江区")
    for other in (6005, 6006):  # a citizen, a deputy: the catch-all answers instead
        assert "调解队列" not in texts(await chat.send(other, "队列"))
