"""The catch-all: whatever no capability claimed gets a polite answer or a deliberate silence."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from backend.core.i18n import Translator

PRIORITY = 1000
MAX_TEXT = 4000


def make_router() -> Router:
    r = Router(name="fallback")

    @r.edited_message()
    async def edited(message: Message) -> None:
        """Edits are not re-processed: the original already was. Deliberately silent."""
        return None

    @r.message(F.text.startswith("/"))
    async def unknown_command(message: Message, t: Translator) -> None:
        await message.answer(t("common.unknown_command"))

    @r.message(F.text.func(lambda s: len(s) > MAX_TEXT))
    async def too_long(message: Message, t: Translator) -> None:
        await message.answer(t("common.too_long", max=MAX_TEXT))

    @r.message(F.text, StateFilter(None))
    async def free_text(message: Message, t: Translator) -> None:
        await message.answer(t("common.not_understood"))

    @r.message(F.text)
    async def text_in_state(message: Message, state: FSMContext, t: Translator) -> None:
        await message.answer(t("common.unexpected_input"))

    @r.message(F.sticker | F.voice | F.video | F.video_note | F.audio | F.animation | F.contact | F.poll
               | F.dice)
    async def unsupported(message: Message, t: Translator) -> None:
        await message.answer(t("common.unsupported_media"))

    @r.message(F.photo | F.document | F.location)
    async def unexpected_attachment(message: Message, t: Translator) -> None:
        await message.answer(t("common.unexpected_attachment"))

    @r.message()
    async def anything_else(message: Message, t: Translator) -> None:
        await message.answer(t("common.unsupported_media"))

    @r.callback_query()
    async def stale_button(cq: CallbackQuery, t: Translator) -> None:
        await cq.answer(t("common.stale_button"), show_alert=True)

    return r
