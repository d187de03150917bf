"""FastAPI dependencies: the app context, one DB session per request, the calling user."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.errors import DomainError, Forbidden
from backend.users.models import Role, User


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


def get_ctx(request: Request):
    return request.app.state.ctx


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    ctx = request.app.state.ctx
    async with ctx.sm() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    ctx.deliverer.wake.set()


# scope="function": the commit runs before the answer is sent, so a client that was told "done"
# finds the change on its next request (any replica), and a commit that fails is an error answer,
# never a success whose write was lost (the default scope commits after the response is out).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def web_session_user(request: Request, session: AsyncSession) -> User | None:
    resolve = getattr(request.app.state, "web_session_user", None)
    return await resolve(request, session) if resolve is not None else None


async def current_user(request: Request, session: SessionDep,
                       authorization: Annotated[str | None, Header()] = None) -> User:
    """``Authorization: Bearer <token>`` where the token comes from ``hehe token create`` (it must
    exist, match, be unexpired and unrevoked, and its person active — checked on every request),
    or (no Authorization header) the web session cookie, resolved by the function the app puts in
    ``app.state.web_session_user`` (backend.auth.sessions.cookie_user)."""
    from backend.users.tokens import authenticate

    if not authorization and (web_user := await web_session_user(request, session)) is not None:
        return web_user
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("common.err_unauthorized")
    user = await authenticate(session, authorization[7:].strip())
    if user is None:
        raise Unauthorized("common.err_unauthorized")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: Role):
    """Dependency: the caller must have one of ``roles`` (admins always pass)."""

    async def dep(user: CurrentUser) -> User:
        if Role(user.role) not in roles and Role(user.role) != Role.admin:
            raise Forbidden("common.err_forbidden")
        return user

    dep.allowed_roles = frozenset(roles) | {Role.admin}  # type: ignore[attr-defined]  # read by the route-table test
    return dep


AdminUser = Annotated[User, Depends(require_roles(Role.admin))]
