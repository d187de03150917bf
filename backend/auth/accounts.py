"""Web people: a web user gets a chat id of its own space (``WEB_ID_BASE + account id``),
never a Telegram id; a Telegram user and a web user are one person only after the explicit
link step (``backend.auth.linking``)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import WebAccount
from backend.core.i18n import normalize_language
from backend.users.models import Role, User
from backend.users.service import audit


def clean_name(name: str | None) -> str:
    """What a person typed as their name, without control characters (a NUL byte would fail the
    commit on PostgreSQL), at most 64 characters."""
    return "".join(c for c in (name or "") if c.isprintable()).strip()[:64]


async def new_web_user(session: AsyncSession, *, name: str, language: str = "zh",
                       phone: str | None = None) -> User:
    """A new citizen of channel ``web`` with its web account (flushed, not committed)."""
    account = WebAccount(phone=phone, totp_confirmed=False, totp_last_step=0, failed_logins=0)
    session.add(account)
    await session.flush()  # the account id gives the chat id
    user = User(telegram_id=account.chat_id, channel="web", name=clean_name(name) or f"网页用户{account.id}",
                language=normalize_language(language), role=Role.citizen.value)
    session.add(user)
    await session.flush()
    account.user_id = user.id
    await audit(session, "system", "user.created", f"user:{user.id}", channel="web")
    return user


async def account_of(session: AsyncSession, user: User) -> WebAccount | None:
    return await session.scalar(select(WebAccount).where(WebAccount.user_id == user.id))


async def account_by_phone(session: AsyncSession, phone: str) -> WebAccount | None:
    return await session.scalar(select(WebAccount).where(WebAccount.phone == phone))
