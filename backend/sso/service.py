"""Sign-in through a government provider, as rules: a login attempt is started and later
claimed exactly once by the browser that started it; a verified identity is found again by
the provider's stable id, or becomes a new web user (role citizen: roles come only from
Hehe's invites), or — when a signed-in person started the flow — is linked to that person.

ID-card numbers are stored only as a keyed HMAC. Never imports aiogram or FastAPI.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.accounts import new_web_user
from backend.core.clock import now
from backend.core.config import Settings
from backend.core.errors import Conflict, DomainError, Forbidden
from backend.core.i18n import gettext
from backend.sso.models import ExternalAccount, SsoLoginState
from backend.sso.providers import (
    ExternalIdentity,
    LoginAttempt,
    Provider,
    ProviderRejected,
    ProviderUnavailable,
    log,
)
from backend.users.models import User
from backend.users.service import audit

STATE_TTL = timedelta(minutes=10)


class SsoFailed(DomainError):
    status = 400
    code = "sso_failed"


class SsoUnavailable(DomainError):
    status = 502
    code = "sso_unavailable"


# ---------------------------------------------------------------- ID-card numbers
def id_hash_key(settings: Settings, app_secret: str) -> str:
    """The HMAC key for ID-card numbers: configured, or derived from the app secret (so a
    copied database alone cannot be searched for a known number)."""
    if settings.sso_id_hash_key:
        return settings.sso_id_hash_key
    return hmac.new(app_secret.encode(), b"hehe:sso:id-card", hashlib.sha256).hexdigest()


def normalize_id_card(number: str) -> str:
    """Full-width digits and the letter X, spaces and dashes do not make another person."""
    text = unicodedata.normalize("NFKC", number)
    return "".join(ch for ch in text if ch.isalnum()).upper()


def hash_id_card(key: str, number: str) -> str:
    return hmac.new(key.encode(), normalize_id_card(number).encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- the login attempt
def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def safe_next(path: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //evil.example)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 255:
        return "/chat"
    return path


async def begin(session: AsyncSession, provider: Provider, redirect_uri: str, *,
                link_user: User | None = None, next_path: str | None = None) -> tuple[str, str]:
    """Start a sign-in: returns ``(state, provider login URL)``. The caller gives the state
    to the browser (cookie); only its hash is stored."""
    attempt = LoginAttempt(state=secrets.token_urlsafe(32), redirect_uri=redirect_uri,
                           nonce=secrets.token_urlsafe(24), code_verifier=secrets.token_urlsafe(48))
    try:
        url = await provider.login_url(attempt)
    except ProviderUnavailable as e:
        log.warning("%s: cannot start sign-in: %s", provider.name, e.reason)
        raise SsoUnavailable("sso.err_unavailable", provider=provider_label(provider.name)) from e
    at = now()
    await session.execute(delete(SsoLoginState).where(SsoLoginState.expires_at < at - timedelta(days=1)))
    session.add(SsoLoginState(state_hash=_state_hash(attempt.state), provider=provider.name, nonce=attempt.nonce,
                              code_verifier=attempt.code_verifier, redirect_uri=redirect_uri,
                              next_path=safe_next(next_path), link_user_id=link_user.id if link_user else None,
                              created_at=at, expires_at=at + STATE_TTL))
    return attempt.state, url


async def claim(session: AsyncSession, provider: str, state: str | None, browser_state: str | None) -> SsoLoginState:
    """The attempt behind a callback, spent: the state must be the one this browser holds,
    for this provider, unexpired and not used before (a conditional UPDATE, so two
    concurrent callbacks cannot both win)."""
    if not state or not browser_state or not hmac.compare_digest(state.encode(), browser_state.encode()):
        raise SsoFailed("sso.err_state")
    row = await session.scalar(select(SsoLoginState).where(SsoLoginState.state_hash == _state_hash(state)))
    if row is None or row.provider != provider:
        raise SsoFailed("sso.err_state")
    at = now()
    if row.expires_at <= at:
        raise SsoFailed("sso.err_expired")
    spent = await session.execute(update(SsoLoginState).where(
        SsoLoginState.id == row.id, SsoLoginState.used_at.is_(None)).values(used_at=at))
    if spent.rowcount != 1:
        raise SsoFailed("sso.err_state")
    return row


def provider_label(name: str) -> str:
    return gettext("zh", f"sso.name_{name}")


async def identify(provider: Provider, params: dict[str, str], row: SsoLoginState) -> ExternalIdentity:
    """Ask the provider who came back; its refusals and failures become polite errors."""
    attempt = LoginAttempt(state="", redirect_uri=row.redirect_uri, nonce=row.nonce, code_verifier=row.code_verifier)
    return await ask(provider, provider.complete(params, attempt))


async def ask(provider: Provider, call) -> ExternalIdentity:
    try:
        return await call
    except ProviderRejected as e:
        log.warning("%s sign-in refused: %s", provider.name, e.reason)
        raise SsoFailed("sso.err_rejected", provider=provider_label(provider.name)) from e
    except ProviderUnavailable as e:
        log.warning("%s sign-in failed: %s", provider.name, e.reason)
        raise SsoUnavailable("sso.err_unavailable", provider=provider_label(provider.name)) from e


def counts_as_second_factor(settings: Settings, identity: ExternalIdentity) -> bool:
    """Only a 浙政钉 sign-in, and only where the operator says their tenant enforces device
    binding (docs/sso.md, "Second factor")."""
    return identity.provider == "zzd" and settings.zzd_second_factor


async def sign_in(session: AsyncSession, settings: Settings, identity: ExternalIdentity, *, id_key: str,
                  link_user: User | None = None) -> User:
    """The Hehe user of ``identity``: the linked one, or ``link_user`` (now linked), or a new
    web citizen. Records the sign-in in the audit log."""
    acct = await session.scalar(select(ExternalAccount).where(
        ExternalAccount.provider == identity.provider, ExternalAccount.subject == identity.subject))
    if acct is None:
        try:
            async with session.begin_nested():
                user = link_user or await new_web_user(session, name=identity.name)
                acct = ExternalAccount(provider=identity.provider, subject=identity.subject, user_id=user.id)
                session.add(acct)
                await session.flush()
        except IntegrityError:  # the same person's other tab linked it a moment ago
            acct = await session.scalar(select(ExternalAccount).where(
                ExternalAccount.provider == identity.provider, ExternalAccount.subject == identity.subject))
            if acct is None:
                raise
        else:
            await audit(session, f"user:{user.id}", "sso.linked" if link_user else "sso.account_created",
                        f"user:{user.id}", provider=identity.provider, tenant=identity.tenant)
    if link_user is not None and acct.user_id != link_user.id:
        raise Conflict("sso.err_linked_elsewhere", provider=provider_label(identity.provider))
    user = await session.get(User, acct.user_id)
    if user is None or not user.active:
        raise Forbidden("sso.err_inactive")
    acct.last_login_at = now()
    acct.tenant = identity.tenant
    if identity.id_card:
        acct.id_card_hash = hash_id_card(id_key, identity.id_card)
    await audit(session, f"user:{user.id}", "sso.signed_in", f"user:{user.id}", provider=identity.provider,
                tenant=identity.tenant)
    return user


class TooManyAttempts(DomainError):
    status = 429
    code = "too_many_requests"


async def redeem_invite(session: AsyncSession, user: User, code: str) -> str:
    """A person signed in through a provider takes the role of an invite (the only way a role
    is given); at most 10 tries an hour per person. Returns the new role."""
    from backend.auth import ratelimit
    from backend.users import service as users

    if not await ratelimit.hit(session, f"sso-invite:user:{user.id}", ratelimit.HOUR, 10):
        raise TooManyAttempts("sso.err_too_many")
    await users.redeem_invite(session, user, code)
    return user.role


async def accounts_of(session: AsyncSession, user: User) -> list[ExternalAccount]:
    return list(await session.scalars(select(ExternalAccount).where(ExternalAccount.user_id == user.id)
                                      .order_by(ExternalAccount.id)))
