"""Staff on the web: invite code redeemed in the browser → account with a password (argon2) and
a TOTP second factor, required for every role that sees personal data; sign-in needs both;
step-up (a fresh TOTP) before revealing a face match or exporting personal data."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pyotp
from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.accounts import account_of, new_web_user
from backend.auth.models import WebAccount
from backend.core.clock import now
from backend.core.errors import DomainError
from backend.users import service as users
from backend.users.models import InviteCode, User

PASSWORDS = PasswordHash.recommended()  # argon2id
MIN_PASSWORD = 10
MAX_FAILED = 5
LOCK_FOR = timedelta(minutes=15)
ISSUER = "Hehe 和合"
LOGIN_RE = re.compile(r"^[A-Za-z0-9._-]{3,32}$")
# Verified against when the login does not exist, so both answers take as long.
_DUMMY_HASH = PASSWORDS.hash(secrets.token_hex(16))


def check_password(password: str, login: str) -> None:
    if len(password) < MIN_PASSWORD or len(password) > 256:
        raise DomainError("auth.err_password_short", min=MIN_PASSWORD)
    if password.isdigit() or login.lower() in password.lower():
        raise DomainError("auth.err_password_weak")


def verify_totp(account: WebAccount, code: str) -> bool:
    """A code of the current 30-second step or one either side, never one used before."""
    code = re.sub(r"\s", "", code or "")
    if not account.totp_secret or not re.fullmatch(r"\d{6}", code):
        return False
    totp = pyotp.TOTP(account.totp_secret)
    at = now()
    current = totp.timecode(at)
    for step in (current - 1, current, current + 1):
        if step > (account.totp_last_step or 0) and secrets.compare_digest(totp.generate_otp(step), code):
            account.totp_last_step = step
            return True
    return False


def totp_uri(account: WebAccount) -> str:
    return pyotp.TOTP(account.totp_secret).provisioning_uri(name=account.login or str(account.id), issuer_name=ISSUER)


def totp_setup(account: WebAccount) -> dict:
    """What the page shows to add the key to an authenticator app: the key, its otpauth URI and
    that URI as a QR code (an SVG data URI, made here: no external service sees the key)."""
    import segno

    uri = totp_uri(account)
    return {"totp_secret": account.totp_secret, "totp_uri": uri,
            "totp_qr": segno.make(uri, error="m").svg_data_uri(scale=5)}


async def redeem_invite_in_browser(session: AsyncSession, *, code: str, login: str, name: str, password: str,
                                   language: str = "zh") -> tuple[User, WebAccount]:
    """A new web person with a password, given the role of the invite (redeemed once). The
    TOTP secret is created here and confirmed by :func:`confirm_totp`."""
    login = (login or "").strip()
    if not LOGIN_RE.match(login):
        raise DomainError("auth.err_login_invalid")
    check_password(password, login)
    inv = await session.scalar(select(InviteCode).where(InviteCode.code == users.normalize_code(code)))
    if inv is None or inv.used_by is not None or inv.expires_at <= now():
        raise DomainError("users.err_code_invalid")
    if await session.scalar(select(WebAccount.id).where(WebAccount.login == login)):
        raise DomainError("auth.err_login_taken")
    user = await new_web_user(session, name=name, language=language)
    account = await account_of(session, user)
    account.login = login
    account.password_hash = PASSWORDS.hash(password)
    account.totp_secret = pyotp.random_base32()
    await users.redeem_invite(session, user, code)
    return user, account


async def confirm_totp(session: AsyncSession, user: User, code: str) -> bool:
    account = await account_of(session, user)
    if account is None or account.totp_secret is None or not verify_totp(account, code):
        return False
    account.totp_confirmed = True
    await users.audit(session, f"user:{user.id}", "web.totp_enabled", f"user:{user.id}")
    return True


async def start_totp_setup(session: AsyncSession, user: User) -> WebAccount:
    """A (new) TOTP secret for a person who has none confirmed yet."""
    account = await account_of(session, user)
    if account is None:
        raise DomainError("auth.err_no_web_account")
    if account.totp_confirmed:
        raise DomainError("auth.err_totp_exists")
    if account.totp_secret is None:
        account.totp_secret = pyotp.random_base32()
    return account


async def password_sign_in(session: AsyncSession, login: str, password: str, totp: str) -> User | str:
    """The person, or the i18n key of why not (failures are counted, so the caller commits
    before it answers). Five wrong answers lock the account for 15 minutes."""
    account = await session.scalar(select(WebAccount).where(WebAccount.login == (login or "").strip()))
    if account is None or account.password_hash is None:
        PASSWORDS.verify(password or "", _DUMMY_HASH)
        return "auth.err_sign_in"
    if account.locked_until is not None and account.locked_until > now():
        return "auth.err_locked"
    user = await session.get(User, account.user_id) if account.user_id else None
    ok = PASSWORDS.verify(password or "", account.password_hash) and user is not None and user.active
    if ok and account.totp_confirmed:
        ok = verify_totp(account, totp)
    if not ok:
        account.failed_logins = (account.failed_logins or 0) + 1
        if account.failed_logins >= MAX_FAILED:
            account.locked_until, account.failed_logins = now() + LOCK_FOR, 0
            await users.audit(session, "system", "web.account_locked", f"user:{account.user_id}")
        return "auth.err_sign_in"
    account.failed_logins = 0
    return user
