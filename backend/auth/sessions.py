"""Server-side web sessions: a random token in an HttpOnly, SameSite=Lax cookie (Secure behind
https); the database keeps only its SHA-256, the expiry (absolute) and the last request (idle).
A revoked or expired session stops working at its next request."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import WebSession
from backend.core.clock import now
from backend.core.deps import SessionDep, Unauthorized
from backend.core.security import STAFF
from backend.users.models import Role, User
from backend.users.service import audit

COOKIE = "hehe_session"
CSRF_COOKIE = "hehe_csrf"
CSRF_HEADER = "x-csrf-token"
TOUCH_EVERY = timedelta(seconds=30)  # last_seen_at is written at most this often per session


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(secret: str, token: str) -> str:
    """The CSRF token bound to a session token (double submit: cookie + header)."""
    return hmac.new(secret.encode(), b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, token: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_for(secret, token).encode(), (sent or "").encode())


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.ctx.settings.cookie_secure


def client_address(request: Request) -> str:
    return (request.client.host if request.client else "")[:64]


async def start_session(session: AsyncSession, request: Request, response: Response, user: User, *,
                        method: str, second_factor: bool) -> WebSession:
    """Sign ``user`` in: a new session row and its cookies. A session cookie the browser already
    had is revoked (no session fixation). Flushed, not committed: commit before the response
    goes out (a ``yield`` dependency's commit runs after it, and the browser's next request
    would not find the session)."""
    settings = request.app.state.ctx.settings
    old = request.cookies.get(COOKIE)
    if old:
        await session.execute(update(WebSession).where(
            WebSession.token_hash == token_hash(old), WebSession.revoked_at.is_(None)).values(revoked_at=now()))
    token = secrets.token_urlsafe(32)
    at = now()
    ws = WebSession(token_hash=token_hash(token), user_id=user.id, method=method, second_factor=second_factor,
                    second_factor_at=at if second_factor else None, created_at=at, last_seen_at=at,
                    expires_at=at + timedelta(hours=settings.session_absolute_hours),
                    client=client_address(request), user_agent=request.headers.get("user-agent", "")[:200])
    session.add(ws)
    await session.flush()
    await audit(session, f"user:{user.id}", "web.signed_in", f"user:{user.id}", method=method,
                second_factor=second_factor, session_id=ws.id, client=ws.client)
    secure = _secure(request)
    max_age = settings.session_absolute_hours * 3600
    response.set_cookie(COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, csrf_for(request.app.state.ctx.secret, token), max_age=max_age,
                        httponly=False, samesite="strict", secure=secure, path="/")
    request.state.web_session = ws
    return ws


def end_cookies(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def expired(ws: WebSession, settings, at=None) -> bool:
    at = at or now()
    return (ws.revoked_at is not None or ws.expires_at <= at
            or ws.last_seen_at + timedelta(minutes=settings.session_idle_minutes) <= at)


class SecondFactorRequired(Unauthorized):
    code = "second_factor_required"


def needs_second_factor(user: User) -> bool:
    """Every role that sees personal data (all staff) needs a second factor on the web."""
    return Role(user.role) in STAFF


async def session_from_cookie(request: Request, session: AsyncSession) -> tuple[WebSession, User] | None:
    """The live session and its active user behind the request's cookie, or None. Touches
    ``last_seen_at`` (the idle timer). A staff person's session without a second factor is
    returned too: callers check :func:`needs_second_factor` (only the set-up steps accept it)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    ws = await session.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))
    settings = request.app.state.ctx.settings
    at = now()
    if ws is None or expired(ws, settings, at):
        return None
    user = await session.get(User, ws.user_id)
    if user is None or not user.active:
        return None
    if at - ws.last_seen_at >= TOUCH_EVERY:
        ws.last_seen_at = at
    request.state.web_session = ws
    return ws, user


def _complete(found: tuple[WebSession, User] | None) -> bool:
    return found is not None and (found[0].second_factor or not needs_second_factor(found[1]))


async def cookie_user(request: Request, session: AsyncSession) -> User | None:
    """For ``backend.core.deps.current_user``: the signed-in web user, if any."""
    found = await session_from_cookie(request, session)
    return found[1] if _complete(found) else None


async def current_web_user(request: Request, session: SessionDep) -> User:
    found = await session_from_cookie(request, session)
    if found is None:
        raise Unauthorized("common.err_unauthorized")
    if not _complete(found):
        raise SecondFactorRequired("auth.err_second_factor_setup")
    return found[1]


WebUser = Annotated[User, Depends(current_web_user)]


async def current_web_user_in_setup(request: Request, session: SessionDep) -> User:
    """Signed in, second factor possibly still to be set up (the set-up steps, /me, logout)."""
    found = await session_from_cookie(request, session)
    if found is None:
        raise Unauthorized("common.err_unauthorized")
    return found[1]


SetupUser = Annotated[User, Depends(current_web_user_in_setup)]


async def current_web_session(request: Request, user: SetupUser) -> WebSession:
    return request.state.web_session


CurrentWebSession = Annotated[WebSession, Depends(current_web_session)]


async def my_sessions(session: AsyncSession, user: User, settings) -> list[WebSession]:
    rows = await session.scalars(select(WebSession).where(
        WebSession.user_id == user.id, WebSession.revoked_at.is_(None)).order_by(WebSession.id.desc()))
    return [ws for ws in rows if not expired(ws, settings)]


async def end_session(session: AsyncSession, user: User, session_id: int) -> bool:
    """End one of the user's own sessions (another person's id does nothing)."""
    res = await session.execute(update(WebSession).where(
        WebSession.id == session_id, WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now()))
    if res.rowcount:
        await audit(session, f"user:{user.id}", "web.session_ended", f"user:{user.id}", session_id=session_id)
    return bool(res.rowcount)


async def end_all_sessions(session: AsyncSession, user: User) -> None:
    await session.execute(update(WebSession).where(
        WebSession.user_id == user.id, WebSession.revoked_at.is_(None)).values(revoked_at=now()))
