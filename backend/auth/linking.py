"""Telegram <-> web: one person only after an explicit step. ``/link`` in Telegram shows a short
code (10 minutes, single use); the signed-in web person enters it on the page. From then on the
web account opens the Telegram person (role, cases, notifications stay on Telegram); the
web-only person it replaces is deactivated, what it filed stays on record under it."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import ratelimit
from backend.auth.accounts import account_of
from backend.auth.models import LinkCode, WebAccount
from backend.auth.sessions import end_all_sessions
from backend.core.clock import now
from backend.core.errors import DomainError
from backend.users.models import User
from backend.users.service import audit, normalize_code

LINK_TTL = timedelta(minutes=10)
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TRIES_PER_HOUR = 5


def _hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


async def new_link_code(session: AsyncSession, tg_user: User) -> str:
    """A code for the Telegram person ``tg_user`` (earlier unused codes stop working)."""
    if tg_user.channel != "telegram":
        raise DomainError("auth.err_link_telegram_only")
    await session.execute(update(LinkCode).where(LinkCode.user_id == tg_user.id, LinkCode.used_at.is_(None))
                          .values(used_at=now()))
    code = "".join(secrets.choice(ALPHABET) for _ in range(8))
    session.add(LinkCode(code_hash=_hash(code), user_id=tg_user.id, expires_at=now() + LINK_TTL, attempts=0))
    await audit(session, f"user:{tg_user.id}", "web.link_code_created", f"user:{tg_user.id}")
    return normalize_code(code)


async def link(session: AsyncSession, web_user: User, code: str) -> User | str:
    """Make ``web_user``'s web account open the Telegram person of ``code``. Returns that
    person, or the i18n key of why not (tries are counted: the caller commits either way)."""
    if not await ratelimit.hit(session, f"link:user:{web_user.id}", ratelimit.HOUR, TRIES_PER_HOUR):
        return "auth.err_too_many"
    account = await account_of(session, web_user)
    if account is None or web_user.channel != "web":
        return "auth.err_link_web_only"
    row = await session.scalar(select(LinkCode).where(LinkCode.code_hash == _hash(code or "")))
    if row is None or row.used_at is not None or row.expires_at <= now():
        return "auth.err_link_code"
    if await session.scalar(select(WebAccount.id).where(WebAccount.user_id == row.user_id)):
        return "auth.err_link_taken"
    tg_user = await session.get(User, row.user_id)
    if tg_user is None or not tg_user.active:
        return "auth.err_link_code"
    used = await session.execute(update(LinkCode).where(LinkCode.id == row.id, LinkCode.used_at.is_(None))
                                 .values(used_at=now()))
    if not used.rowcount:
        return "auth.err_link_code"
    account.user_id = tg_user.id
    web_user.active = False
    if not tg_user.phone and account.phone:
        tg_user.phone = account.phone
    await end_all_sessions(session, web_user)
    await audit(session, f"user:{web_user.id}", "web.linked", f"user:{tg_user.id}", web_user=web_user.id)
    return tg_user
