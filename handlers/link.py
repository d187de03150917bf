"""/link in Telegram: a short code to enter on the web page, making the web account and this
Telegram account one person (backend.auth.linking)."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import linking
from backend.core.errors import DomainError
from backend.core.i18n import Translator
from backend.users.models import User

PRIORITY = 5


def make_router() -> Router:
    r = Router(name="link")

    @r.message(Command("link"))
    async def link(message: Message, session: AsyncSession, user: User, t: Translator) -> None:
        try:
            code = await linking.new_link_code(session, user)
        except DomainError as e:
            await message.answer(t(e.key, **e.params))
            return
        await message.answer(t("auth.link_code", code=code, minutes=int(linking.LINK_TTL.total_seconds() // 60)))

    return r
