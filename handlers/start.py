"""/start, /help, /lang, /join, /me, /cancel — what every person can do."""
from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.errors import DomainError
from backend.core.i18n import Translator
from backend.core.masking import mask_phone
from backend.notify.service import mark_reachable
from backend.users import service as users
from backend.users.models import Role, User
from bot.menu import MenuCb, menu_keyboard, register_menu_item

PRIORITY = 0  # /cancel must win over every conversation state

register_menu_item("me", "common.menu_me", order=900)
register_menu_item("lang", "common.menu_lang", order=910)
register_menu_item("help", "common.menu_help", order=920)


CANCEL_WORDS = frozenset({"取消", "cancel", "退出"})


async def is_cancel_word(message: Message) -> bool:
    """取消 / cancel / 退出 typed as a message. Every text message passes this filter first (this
    router comes first); as a coroutine aiogram checks it on the event loop, where a synchronous
    filter (``F.text…``) would cost each message a trip to a worker thread."""
    return (message.text or "").lower() in CANCEL_WORDS


class LangCb(CallbackData, prefix="lang"):
    code: str


class DraftCb(CallbackData, prefix="draft"):
    keep: bool


def draft_keyboard(t: Translator):
    from bot.menu import inline
    return inline([[(t("notify.resume"), DraftCb(keep=True).pack()), (t("notify.discard"), DraftCb(keep=False).pack())]])


def role_name(t: Translator, role: str) -> str:
    return t(f"common.role_{role}")


async def show_menu(target: Message, user: User, t: Translator) -> None:
    await target.answer(t("common.welcome", name=user.name or "", role=role_name(t, user.role)),
                        reply_markup=menu_keyboard(Role(user.role), t))


async def describe_me(user: User, t: Translator) -> str:
    place = user.jurisdiction.name if user.jurisdiction else t("common.none")
    return t("common.me", id=user.telegram_id, name=user.name or "-", role=role_name(t, user.role),
             place=place, lang=t(f"common.lang_{user.language}"), phone=mask_phone(user.phone))


def lang_keyboard():
    from bot.menu import inline
    return inline([[("中文", LangCb(code="zh").pack()), ("English", LangCb(code="en").pack())]])


def make_router() -> Router:
    r = Router(name="start")

    @r.message(Command("cancel"), StateFilter("*"))
    @r.message(is_cancel_word, StateFilter("*"))
    async def cancel(message: Message, state: FSMContext, t: Translator) -> None:
        current = await state.get_state()
        await state.clear()
        key = "common.cancelled" if current else "common.nothing_to_cancel"
        await message.answer(t(key), reply_markup=ReplyKeyboardRemove())

    @r.message(CommandStart(), StateFilter("*"))
    async def start(message: Message, state: FSMContext, session: AsyncSession, user: User,
                    t: Translator) -> None:
        await mark_reachable(session, user.id, user.channel)  # they write to us: deliver again
        if await state.get_state():  # a form in progress is never dropped without asking
            await message.answer(t("notify.resume_or_discard"), reply_markup=draft_keyboard(t))
            return
        await show_menu(message, user, t)

    @r.callback_query(DraftCb.filter())
    async def draft_choice(cq: CallbackQuery, callback_data: DraftCb, state: FSMContext, user: User,
                           t: Translator) -> None:
        await cq.answer()
        await cq.message.edit_reply_markup(reply_markup=None)
        if callback_data.keep and await state.get_state():
            await cq.message.answer(t("notify.resumed"))
            return
        await state.clear()
        await cq.message.answer(t("notify.discarded"), reply_markup=ReplyKeyboardRemove())
        await show_menu(cq.message, user, t)

    @r.message(Command("help"), StateFilter("*"))
    async def help_(message: Message, user: User, t: Translator) -> None:
        await message.answer(t("common.help") + "\n" + t(f"common.help_{user.role}"))

    @r.message(Command("me"))
    async def me(message: Message, user: User, t: Translator) -> None:
        await message.answer(await describe_me(user, t))

    @r.message(Command("lang"))
    async def lang(message: Message, command: CommandObject, session: AsyncSession, user: User,
                   t: Translator) -> None:
        arg = (command.args or "").strip().lower()
        if arg in ("zh", "en", "中文", "english"):
            await users.set_language(session, user, "en" if arg in ("en", "english") else "zh")
            await message.answer(Translator(user.language)("common.lang_set"))
            return
        await message.answer(t("common.lang_choose"), reply_markup=lang_keyboard())

    @r.callback_query(LangCb.filter())
    async def lang_pick(cq: CallbackQuery, callback_data: LangCb, session: AsyncSession, user: User) -> None:
        await users.set_language(session, user, callback_data.code)
        t2 = Translator(user.language)
        await cq.answer()
        await cq.message.answer(t2("common.lang_set"), reply_markup=menu_keyboard(Role(user.role), t2))

    @r.message(Command("join"))
    async def join(message: Message, command: CommandObject, session: AsyncSession, user: User,
                   t: Translator, ctx: Any) -> None:
        if not command.args:
            await message.answer(t("common.join_usage"))
            return
        try:
            inv = await users.redeem_invite(session, user, command.args, per_hour=ctx.settings.join_per_hour,
                                            global_per_minute=ctx.settings.join_global_per_minute)
        except DomainError as e:
            await session.commit()  # keep the audit record of the rejected attempt
            await message.answer(t(e.key, **e.params))
            return
        place = inv.jurisdiction.name if inv.jurisdiction else t("common.none")
        await message.answer(t("common.join_ok", role=role_name(t, inv.role), place=place),
                             reply_markup=menu_keyboard(Role(user.role), t))

    @r.callback_query(MenuCb.filter(F.action == "me"))
    async def menu_me(cq: CallbackQuery, user: User, t: Translator) -> None:
        await cq.answer()
        await cq.message.answer(await describe_me(user, t))

    @r.callback_query(MenuCb.filter(F.action == "help"))
    async def menu_help(cq: CallbackQuery, user: User, t: Translator) -> None:
        await cq.answer()
        await cq.message.answer(t("common.help") + "\n" + t(f"common.help_{user.role}"))

    @r.callback_query(MenuCb.filter(F.action == "lang"))
    async def menu_lang(cq: CallbackQuery, t: Translator) -> None:
        await cq.answer()
        await cq.message.answer(t("common.lang_choose"), reply_markup=lang_keyboard())

    return r
