"""The service layer, stats and masking on SQLite and PostgreSQL (db_settings)."""
from __future__ import annotations

from backend.core.db import session_scope
from backend.disputes import service, stats
from backend.users import service as users
from backend.users.models import Role


async def test_workflow_and_stats_on_both_databases(db_settings, daytime):
    from backend.context import start_context

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        async with session_scope(ctx.sm) as s:
            c, _ = await users.get_or_create_user(s, 9101, name="群众", channel="local")
            m, _ = await users.get_or_create_user(s, 9102, name="调解员", channel="local")
            o, _ = await users.get_or_create_user(s, 9103, name="领导", channel="local")
            t = await users.find_jurisdiction(s, "温岭市/城东街道") or await users.find_jurisdiction(s, "温岭市")
            await users.set_role(s, m, Role.mediator, t, actor="test")
            await users.set_role(s, o, Role.official, await users.find_jurisdiction(s, "温岭市"), actor="test")
        numbers = []
        for i in range(3):
            async with session_scope(ctx.sm) as s:
                c = await users.get_user(s, c.id)
                place = await s.get(type(t), t.id)
                d = await service.create_case(s, citizen=c, category="consumer", place=place, store=ctx.files,
                                              description=f"商家卖假货不给退款，电话13512345678，第{i}次", phone="13512345678")
                numbers.append(d.number)
        assert numbers[0].startswith("TZ-WL-") and numbers[2].endswith("-0003")
        async with session_scope(ctx.sm) as s:
            m = await users.get_user(s, m.id)
            d = await service.get_by_number(s, numbers[0])
            await service.accept(s, d, m)
            await service.record_outcome(s, d, m, True, agreement="商家退款")
            await service.close(s, d, m)
            c = await users.get_user(s, c.id)
            await service.rate(s, d, c, "satisfied")
        async with ctx.sm() as s:
            o = await users.get_user(s, o.id)
            rows = await stats.compute(s, o.jurisdiction)
            summ = stats.summary(rows)
            assert summ["total"] == 3 and summ["resolved"] == 1 and summ["satisfaction_rate"] == 1.0
            d = await service.get_by_number(s, numbers[1])
            assert "135****5678" in service.text_for(o, d, d.description)
            assert d.risk in ("blue", "green", "yellow") and any(r["code"] == "repeat" for r in d.risk_reasons)
            assert len(await service.list_cases(s, o)) == 3
            # the rollup agrees with grouping the cases themselves, before and after a rebuild
            raw = [r.as_dict() for r in await stats.compute_raw(s, o.jurisdiction)]
            assert [r.as_dict() for r in rows] == raw
            assert await stats.rebuild(s) >= 1
            assert [r.as_dict() for r in await stats.compute(s, o.jurisdiction)] == raw
            assert stats.summary(await stats.compute(s, None)) == stats.summary(await stats.compute_raw(s, None))
    finally:
        await ctx.stop()
