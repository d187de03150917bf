"""Citizens sign in with a phone number and a 6-digit code: valid 5 minutes, at most 5 tries per
code, 60 s before a resend, at most 5 sends per phone an hour and 10 a day, and limits per client
address — all counted in the database."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import ratelimit
from backend.auth.accounts import account_by_phone, new_web_user
from backend.auth.models import OneTimeCode
from backend.auth.ratelimit import DAY, HOUR
from backend.core.clock import now
from backend.users.models import User

CODE_TTL = timedelta(minutes=5)
MAX_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)
SENDS_PER_PHONE = [(HOUR, 5), (DAY, 10)]
SENDS_PER_CLIENT = [(HOUR, 20), (DAY, 50)]
CHECKS_PER_CLIENT = [(HOUR, 30), (DAY, 100)]


@dataclass
class Refused:
    key: str  # i18n key
    status: int = 429
    retry_after: int | None = None


def code_hash(secret: str, phone: str, code: str) -> str:
    return hmac.new(secret.encode(), f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


async def issue_code(session: AsyncSession, secret: str, phone: str, client: str) -> tuple[str, OneTimeCode] | Refused:
    """A new code for ``phone`` (the caller sends it), or why not."""
    last = await session.scalar(select(OneTimeCode).where(OneTimeCode.phone == phone)
                                .order_by(OneTimeCode.id.desc()).limit(1))
    if last is not None and last.used_at is None and now() - last.created_at < RESEND_AFTER:
        wait = int((RESEND_AFTER - (now() - last.created_at)).total_seconds()) + 1
        return Refused("auth.err_resend_wait", retry_after=wait)
    # Per phone: the codes of the last hour and day themselves (a sliding window, exact across
    # the turn of the hour), and the atomic counters below (exact under concurrency).
    for seconds, limit in SENDS_PER_PHONE:
        sent = await session.scalar(select(func.count(OneTimeCode.id)).where(
            OneTimeCode.phone == phone, OneTimeCode.created_at > now() - timedelta(seconds=seconds)))
        if sent >= limit:
            return Refused("auth.err_too_many")
    if not await ratelimit.hits(session, [(f"sms:client:{client}", s, n) for s, n in SENDS_PER_CLIENT]):
        return Refused("auth.err_too_many")
    if not await ratelimit.hits(session, [(f"sms:phone:{phone}", s, n) for s, n in SENDS_PER_PHONE]):
        return Refused("auth.err_too_many")
    # An older code stops working when a new one is sent.
    await session.execute(update(OneTimeCode).where(OneTimeCode.phone == phone, OneTimeCode.used_at.is_(None))
                          .values(used_at=now()))
    code = f"{secrets.randbelow(10 ** 6):06d}"
    row = OneTimeCode(phone=phone, code_hash=code_hash(secret, phone, code), created_at=now(),
                      expires_at=now() + CODE_TTL, attempts=0)
    session.add(row)
    await session.flush()
    return code, row


async def check_code(session: AsyncSession, secret: str, phone: str, code: str, client: str) -> bool | Refused:
    """Count one try of ``code`` for ``phone``; True when it is the live code (then used up).
    The try is counted before the comparison, and the caller commits either way."""
    if not await ratelimit.hits(session, [(f"otp:client:{client}", s, n) for s, n in CHECKS_PER_CLIENT]):
        return Refused("auth.err_too_many")
    row = await session.scalar(select(OneTimeCode).where(
        OneTimeCode.phone == phone, OneTimeCode.used_at.is_(None), OneTimeCode.expires_at > now())
        .order_by(OneTimeCode.id.desc()).limit(1))
    if row is None:
        return Refused("auth.err_code_expired", status=400)
    # Conditional update: concurrent tries never exceed MAX_ATTEMPTS.
    res = await session.execute(update(OneTimeCode).where(
        OneTimeCode.id == row.id, OneTimeCode.attempts < MAX_ATTEMPTS).values(attempts=OneTimeCode.attempts + 1))
    if not res.rowcount:
        return Refused("auth.err_code_attempts", status=400)
    code = re.sub(r"\s", "", code or "")
    if not hmac.compare_digest(row.code_hash, code_hash(secret, phone, code)):
        return False
    done = await session.execute(update(OneTimeCode).where(OneTimeCode.id == row.id, OneTimeCode.used_at.is_(None))
                                 .values(used_at=now()))
    return bool(done.rowcount)


async def citizen_for_phone(session: AsyncSession, phone: str, *, name: str, language: str) -> User | None:
    """The web person of ``phone`` (created as a citizen on first sign-in); None if that
    person is deactivated."""
    account = await account_by_phone(session, phone)
    if account is None:
        return await new_web_user(session, name=name, language=language, phone=phone)
    user = await session.get(User, account.user_id)
    return user if user is not None and user.active else None
