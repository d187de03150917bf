"""API bearer tokens: ``hh_<id>_<secret>``. One row per token (``api_tokens``), so every token
has an id people can name, an expiry (``HEHE_TOKEN_DAYS``, 90 days by default) and can be revoked
on its own; two tokens for the same person are different. Only a SHA-256 of the secret is
stored; the check compares bytes in constant time.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now
from backend.core.errors import NotFound
from backend.core.security import same_bytes
from backend.users.models import ApiToken, User
from backend.users.service import audit

DEFAULT_DAYS = 90
_FORMAT = re.compile(r"^hh_(\d{1,12})_([A-Za-z0-9_-]{20,128})$")
# last use is written at most this often per token (a busy client must not write on every call)
LAST_USED_EVERY = timedelta(minutes=5)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


async def issue(session: AsyncSession, user: User, *, days: int = DEFAULT_DAYS, actor: str = "cli",
                label: str | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token text (shown once, never stored)."""
    secret = secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, secret_hash=_digest(secret), label=label, created_by=actor,
                   expires_at=now() + timedelta(days=days))
    session.add(row)
    await session.flush()
    await audit(session, actor, "token.created", f"token:{row.id}", user=f"user:{user.id}",
                expires_at=row.expires_at.isoformat())
    return row, f"hh_{row.id}_{secret}"


async def authenticate(session: AsyncSession, raw: str) -> User | None:
    """The active person behind a token that exists, matches, has not expired and is not revoked."""
    m = _FORMAT.match((raw or "").strip())
    if m is None:
        return None
    row = await session.get(ApiToken, int(m.group(1)))
    if row is None or not same_bytes(_digest(m.group(2)), row.secret_hash):
        return None
    t = now()
    if row.revoked_at is not None or row.expires_at <= t:
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    if row.last_used_at is None or t - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = t
    return user


async def list_tokens(session: AsyncSession, user: User | None = None) -> list[ApiToken]:
    q = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        q = q.where(ApiToken.user_id == user.id)
    return list(await session.scalars(q))


async def revoke(session: AsyncSession, token_id: int, *, actor: str) -> ApiToken:
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("users.err_no_token", id=token_id)
    if row.revoked_at is None:
        row.revoked_at = now()
        await audit(session, actor, "token.revoked", f"token:{row.id}", user=f"user:{row.user_id}")
    return row
