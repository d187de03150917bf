"""What the web chat, the terminal chat and ``--script`` replay do to the offline channel."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.core.db import session_scope
from backend.core.errors import DomainError, Forbidden, NotFound
from backend.users import service as users
from backend.users.models import Role, User

LOCAL_ID_START = 1001


async def local_users(ctx: Any) -> list[User]:
    async with ctx.sm() as s:
        return list(await s.scalars(select(User).where(User.channel == "local").order_by(User.telegram_id)))


async def create_local_user(ctx: Any, name: str, language: str = "zh") -> User:
    async with session_scope(ctx.sm) as s:
        top = await s.scalar(select(func.max(User.telegram_id)).where(User.channel == "local"))
        uid = max(LOCAL_ID_START, (top or 0) + 1)
        user, _ = await users.get_or_create_user(s, uid, name=name.strip()[:64] or f"用户{uid}",
                                                 language_code=language, channel="local")
    ctx.channel.set_profile(uid, name=user.name, language_code=language)
    return user


async def ensure_local_user(ctx: Any, uid: int) -> User:
    async with session_scope(ctx.sm) as s:
        user, _ = await users.get_or_create_user(s, uid, name=ctx.channel.profiles.get(uid, {}).get("name", ""),
                                                 channel="local")
    return user


async def set_role_direct(ctx: Any, uid: int, role: str, jurisdiction: str | None,
                          title: str | None = None) -> User:
    """Demo and test data only: give a local user a role without an invite code."""
    if not ctx.settings.demo:
        raise Forbidden("common.err_forbidden")
    try:
        r = Role(role)
    except ValueError as e:
        raise DomainError("common.err_validation") from e
    async with session_scope(ctx.sm) as s:
        user, _ = await users.get_or_create_user(s, uid, channel="local")
        j = None
        if jurisdiction:
            j = await users.find_jurisdiction(s, jurisdiction)
            if j is None:
                raise NotFound("common.err_not_found")
        await users.set_role(s, user, r, j, actor="demo", title=title, note="set directly (demo)")
    return user
