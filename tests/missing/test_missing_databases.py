"""The 灯塔工程 journey on SQLite and PostgreSQL (db_settings): report → found → review →
confirm → family told → the scheduler deletes the face data from the database job store."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from backend.context import start_context
from backend.faces.service import FaceService
from backend.missing.models import MatchCandidate, PersonCase
from tests.conftest import ChatDriver, make_settings, texts
from tests.missing.conftest import DAYTIME, run_due_jobs
from tests.missing.test_missing_journey import register_found, report_missing

CITIZEN, OFFICER = 5701, 5702


async def test_journey_on_both_databases(db_settings, face_engine):
    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        faces = FaceService(make_settings(db_settings.data_dir.parent, face_enabled=True))
        faces.engine = face_engine
        ctx.faces = faces.load()
        chat = ChatDriver(ctx)
        await chat.as_role(OFFICER, "officer", "椒江区")
        assert "XR-JJ-20261128-0001" in texts(await report_missing(chat, CITIZEN))
        assert "1 个候选" in texts(await register_found(chat, OFFICER))
        assert "已确认" in texts(await chat.press(OFFICER, "确认是同一人"))
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
    finally:
        await ctx.stop()
