"""The 灯塔工程 journey on SQLite and PostgreSQL (db_settings): report → found → review →
confirm (two steps) → family told after the undo window → the retention sweep deletes the face
data and photos. Also on both databases: concurrent reports get distinct case numbers, and a
double tap on 确认提交 creates one case."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.context import start_context
from backend.missing.models import MatchCandidate, PersonCase
from tests.conftest import FACES_DATA, ChatDriver, texts
from tests.missing.conftest import load_faces, DAYTIME, run_due_jobs
from tests.missing.test_missing_journey import confirm_match, register_found, report_missing

CITIZEN, OFFICER, OFFICER2 = 5701, 5702, 5703


async def test_journey_on_both_databases(db_settings, face_engine):
    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        # on PostgreSQL the galleries are in the database too (face_store=auto)
        faces = load_faces(ctx, db_settings, face_engine)
        chat = ChatDriver(ctx)
        await chat.as_role(OFFICER, "officer", "椒江区")
        await chat.as_role(OFFICER2, "officer", "椒江区")
        assert "XR-JJ-20261128-0001" in texts(await report_missing(chat, CITIZEN))
        assert "1 位可能相符" in texts(await register_found(chat, OFFICER))
        assert "已确认" in texts(await confirm_match(chat, OFFICER, OFFICER2))
        with time_machine.travel(DAYTIME + timedelta(minutes=11), tick=True):
            await ctx.flush()
        assert "已经找到" in chat.last(CITIZEN).text
        async with ctx.sm() as s:
            assert [c.status for c in await s.scalars(select(PersonCase).order_by(PersonCase.id))] == ["found"] * 2
            assert (await s.scalar(select(MatchCandidate))).status == "confirmed"

        async def deleted():
            async with ctx.sm() as s:
                return all(c.face_state == "deleted" for c in await s.scalars(select(PersonCase)))

        await run_due_jobs(ctx, DAYTIME + timedelta(days=8), until=deleted)
        assert await deleted()
        assert len(faces.gallery("missing")) == 0 and len(faces.gallery("found")) == 0
        if db_settings.database_url:
            assert faces.store is not None and faces.store.count("missing") == faces.store.count("found") == 0
    finally:
        await ctx.stop()


async def test_concurrent_reports_get_distinct_case_numbers(db_settings):
    from backend.missing import service
    from backend.users import service as users

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        async with ctx.sm() as s:
            reporters = [(await users.get_or_create_user(s, 5800 + i, name=f"家属{i}", channel="local"))[0]
                         for i in range(10)]
            await s.commit()
            j = await users.find_jurisdiction(s, "椒江区")
            jid = j.id
        jpeg = (FACES_DATA / "identities" / "obama" / "1.jpg").read_bytes()

        async def one(user):
            async with ctx.sm() as s:
                out = await service.create_missing(
                    s, await s.merge(user), faces=None, store=ctx.files,
                    photos=[service.Photo(jpeg)], name="王阿公", sex="M", age=78, height_cm=None,
                    jurisdiction=await s.get(service.Jurisdiction, jid), place=None, seen_at=None,
                    clothing=None, health=None, phone="13812345678")
                await s.commit()
                return out.case.case_no

        numbers = await asyncio.gather(*(one(u) for u in reporters))
        assert len(set(numbers)) == 10
        assert sorted(numbers) == [f"XR-JJ-20261128-{i:04d}" for i in range(1, 11)]
    finally:
        await ctx.stop()


async def test_double_tap_on_submit_creates_one_case(db_settings):
    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        ctx.faces = None
        chat = ChatDriver(ctx)
        first = texts(await report_missing(chat, CITIZEN))
        summary = next(m for m in reversed(chat.inbox(CITIZEN)) if "请核对" in m.text)
        data = next(d for row in summary.inline for label, d in row if "确认提交" in label)
        # the same button again, once after the first went through and twice at the same moment
        await chat.ch.press_callback(CITIZEN, summary, data)
        await asyncio.gather(chat.ch.press_callback(CITIZEN, summary, data),
                             chat.ch.press_callback(CITIZEN, summary, data))
        async with ctx.sm() as s:
            assert await s.scalar(select(func.count(PersonCase.id))) == 1
        assert "XR-JJ-20261128-0001" in first
        assert "已经提交过" in texts(chat.inbox(CITIZEN)[-1:])
    finally:
        await ctx.stop()
