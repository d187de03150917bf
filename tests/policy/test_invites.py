"""A single-use invite is single-use under concurrency, on SQLite and PostgreSQL; /join attempts
are rate-limited per person and for everyone."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from backend.core.db import session_scope
from backend.core.errors import DomainError
from backend.users import service as users
from backend.users.models import InviteCode, Role, User


async def test_eight_simultaneous_redemptions_of_one_admin_code_make_exactly_one_admin(db_settings):
    from backend.context import start_context

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        async with session_scope(ctx.sm) as s:
            people = [(await users.get_or_create_user(s, 8800 + i, name=f"p{i}", channel="local"))[0].id
                      for i in range(8)]
            code = (await users.create_invite(s, Role.admin, None, timedelta(days=1), actor="test")).code

        async def redeem(uid: int) -> str:
            try:
                async with session_scope(ctx.sm) as s:
                    u = await s.get(User, uid)
                    await users.redeem_invite(s, u, code, per_hour=100, global_per_minute=100)
                return "ok"
            except DomainError as e:
                return e.key

        results = await asyncio.gather(*(redeem(uid) for uid in people))
        assert results.count("ok") == 1, results
        assert set(results) - {"ok"} == {"users.err_code_used"}
        async with ctx.sm() as s:
            admins = await s.scalar(select(func.count(User.id)).where(User.id.in_(people), User.role == "admin"))
            inv = await s.scalar(select(InviteCode).where(InviteCode.code == code))
            winner = results.index("ok")
            assert admins == 1 and inv.used_by == people[winner]
    finally:
        await ctx.stop()


async def test_join_attempts_are_limited_per_person_and_for_everyone(chat):
    ctx = chat.ctx
    ctx.settings.join_per_hour, ctx.settings.join_global_per_minute = 3, 5
    for _ in range(3):
        assert "无效" in (await chat.send(8901, "/join AAAA-BBBB-CCCC"))[-1].text
    assert "次数过多" in (await chat.send(8901, "/join AAAA-BBBB-CCCC"))[-1].text
    # a real code does not help once the person is throttled
    async with session_scope(ctx.sm) as s:
        code = (await users.create_invite(s, Role.official, await users.find_jurisdiction(s, "椒江区"),
                                          timedelta(days=1), actor="test")).code
    assert "次数过多" in (await chat.send(8901, f"/join {code}"))[-1].text
    # two others try: the global limit (5 a minute) is reached after 2 more attempts
    assert "无效" in (await chat.send(8902, "/join ZZZZ-ZZZZ-ZZZZ"))[-1].text
    assert "无效" in (await chat.send(8903, "/join ZZZZ-ZZZZ-ZZZZ"))[-1].text
    assert "次数过多" in (await chat.send(8904, f"/join {code}"))[-1].text
    async with ctx.sm() as s:
        u = await s.scalar(select(User).where(User.telegram_id == 8904))
        assert u.role == "citizen"
