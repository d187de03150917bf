"""/ask — officials (and deputies, staff) ask questions; answers cite records [1][2]
whose buttons open the cited case card. Plain questions from officials work too."""
from __future__ import annotations

import re
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from backend.core.i18n import Translator
from backend.core.masking import mask_text
from backend.users.audit import audit_read
from backend.users.models import Role, User
from bot.menu import MenuCb, inline, register_menu_item

PRIORITY = 40  # before the citizens' complaint detection; only officials' plain questions are taken
MAX_QUESTION = 500
ASK_ROLES = {Role.official, Role.deputy, Role.mediator, Role.procurator, Role.officer, Role.admin}
QUESTION_HINT = re.compile(r"[？?]|吗|多少|哪些|哪个|怎么|如何|是否|有没有|什么")

register_menu_item("ask", "ask.menu", roles=ASK_ROLES, order=60)


class AskStates(StatesGroup):
    question = State()


class CiteCb(CallbackData, prefix="kbc"):
    ref: str


async def _scope(session, user: User):
    """Who is asking, with the cases the access policy lets them open (backend/core/policy.py):
    an answer, a citation or a card never shows a case the same person could not open in the API."""
    from knowledge_base.visibility import PolicyScope

    ids = None
    if not (Role(user.role) == Role.admin and user.active):
        from backend.disputes.service import visible_numbers as disputes
        from backend.missing.service import visible_numbers as missing
        from backend.supervision.service import visible_numbers as supervision

        ids = frozenset().union(*[await fn(session, user) for fn in (disputes, supervision, missing)])
    return PolicyScope(role=user.role, user_id=user.id, jurisdiction_id=user.jurisdiction_id,
                       may_see_all=Role(user.role) == Role.admin, visible_ids=ids)


async def answer_question(message: Message, question: str, user: User, t: Translator, ctx: Any,
                          session) -> None:
    question = question.strip()
    if not question:
        await message.answer(t("ask.usage"))
        return
    kb = getattr(ctx, "kb", None)
    if kb is None or not getattr(kb, "ready", False):
        await message.answer(t("kb.not_ready"))
        return
    ans = await kb.aanswer(question[:MAX_QUESTION * 10], await _scope(session, user), session=session, lang=t.lang)
    await audit_read(session, user, "kb", None, channel="ask", action="question",
                     detail={"question": mask_text(question[:200]), "citations": list(ans.citations)})
    rows = []
    for i, ref in enumerate(ans.citations, start=1):
        data = CiteCb(ref=ref).pack() if len(ref) <= 50 else None
        if data and len(data.encode()) <= 64:
            rows.append([(f"[{i}] {ref}", data)])
    await message.answer(ans.answer[:4000], reply_markup=inline(rows) if rows else None)


async def is_official(message: Message, user: User) -> bool:
    """Only officials' plain questions are taken; everyone else's text goes on to other routers."""
    return Role(user.role) in (Role.official, Role.admin)


def make_router() -> Router:
    r = Router(name="ask")

    @r.message(Command("ask"))
    async def ask(message: Message, command: CommandObject, state: FSMContext, user: User, t: Translator,
                  ctx: Any, session) -> None:
        if not command.args:
            await state.set_state(AskStates.question)
            await message.answer(t("ask.prompt"))
            return
        await answer_question(message, command.args, user, t, ctx, session)

    @r.callback_query(MenuCb.filter(F.action == "ask"))
    async def menu_ask(cq: CallbackQuery, state: FSMContext, t: Translator) -> None:
        await cq.answer()
        await state.set_state(AskStates.question)
        await cq.message.answer(t("ask.prompt"))

    @r.message(AskStates.question, F.text, ~F.text.startswith("/"))
    async def asked(message: Message, state: FSMContext, user: User, t: Translator, ctx: Any, session) -> None:
        await state.clear()
        await answer_question(message, message.text, user, t, ctx, session)

    @r.message(StateFilter(None), F.text, ~F.text.startswith("/"),
               F.text.func(lambda s: len(s) <= MAX_QUESTION and bool(QUESTION_HINT.search(s))), is_official)
    async def plain_question(message: Message, user: User, t: Translator, ctx: Any, session) -> None:
        await answer_question(message, message.text, user, t, ctx, session)

    @r.callback_query(CiteCb.filter())
    async def open_card(cq: CallbackQuery, callback_data: CiteCb, user: User, t: Translator, ctx: Any,
                        session) -> None:
        kb = getattr(ctx, "kb", None)
        # the policy is asked again at the press: a forged or stale button shows nothing
        card = (await kb.acard(callback_data.ref, await _scope(session, user))
                if kb is not None and kb.ready else None)
        if card is None:
            await cq.answer(t("ask.card_unavailable"), show_alert=True)
            return
        await audit_read(session, user, card.get("kind") or "kb", card["id"], channel="card")
        await cq.answer()
        await cq.message.answer(t("ask.card", id=card["id"], title=card.get("title") or "-",
                                  kind=t(f"ask.kind_{card.get('kind')}"), category=card.get("category") or "-",
                                  location=card.get("location") or "-", date=card.get("date") or "-",
                                  snippet=card.get("snippet") or ""))

    return r
