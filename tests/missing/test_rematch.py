"""A family's report and an officer's registration of the same person saved at the same moment
(two requests, or two replicas before their galleries are in step) each search before the other
is saved, so neither proposes the pair. The next matching sweep does, once, and tells the
officers. PostgreSQL (the database replicas share), the real face model on real photos."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.context import start_context
from backend.core.clock import now
from backend.missing import service
from backend.missing.models import MatchCandidate
from backend.notify.models import Outbox
from backend.users import service as users
from backend.users.models import Role
from tests.missing.conftest import load_faces, photo, run_due_jobs

pytestmark = pytest.mark.postgres


async def test_a_report_and_a_registration_saved_at_the_same_moment_are_proposed_by_the_next_sweep_once(
        pg_settings, face_engine):
    ctx = await start_context(pg_settings, models=False, workers=False, telegram=False)
    try:
        load_faces(ctx, pg_settings, face_engine)
        async with ctx.sm() as s:
            family, _ = await users.get_or_create_user(s, 6101, name="家属", channel="local")
            officer, _ = await users.get_or_create_user(s, 6102, name="民警", channel="local")
            county = await users.find_jurisdiction(s, "椒江区")
            await users.set_role(s, officer, Role.officer, county, actor="test")
            await s.commit()

        # The officer's registration is saved but not yet committed when the family's report
        # searches: the report finds the face but no case to propose; the registration had
        # searched before the report existed.
        async with ctx.sm() as registering, ctx.sm() as reporting:
            found = await service.register_found(
                registering, await registering.merge(officer), faces=ctx.faces, store=ctx.files,
                photos=[service.Photo(photo("identities/obama/2.jpg").read_bytes())],
                jurisdiction=await registering.merge(county), place="海门街道救助站", age=80, sex="M")
            missing = await service.create_missing(
                reporting, await reporting.merge(family), faces=ctx.faces, store=ctx.files,
                photos=[service.Photo(photo("identities/obama/1.jpg").read_bytes())], name="王阿公",
                sex="M", age=78, height_cm=None, jurisdiction=await reporting.merge(county), place=None,
                seen_at=None, clothing=None, health=None, phone="13812345678")
            await reporting.commit()
            await registering.commit()
            assert found.candidates == [] and missing.candidates == []
            found_id, missing_id = found.case.id, missing.case.id

        async def candidates() -> list[MatchCandidate]:
            async with ctx.sm() as s:
                return list(await s.scalars(select(MatchCandidate)))

        async def proposed() -> bool:
            return bool(await candidates())

        await run_due_jobs(ctx, now() + timedelta(minutes=2), until=proposed, timeout=20)
        [c] = await candidates()
        assert (c.missing_id, c.found_id, c.status) == (missing_id, found_id, "pending")
        assert c.score >= ctx.faces.threshold
        async with ctx.sm() as s:  # the officer is asked to review it, once
            asked = await s.scalar(select(func.count(Outbox.id)).where(
                Outbox.dedupe_key.like(f"missing:missing.review_new:{c.id}:%")))
        assert asked == 1

        # Later sweeps leave the pair alone.
        await run_due_jobs(ctx, now() + timedelta(minutes=4), timeout=5)
        assert len(await candidates()) == 1
    finally:
        await ctx.stop()
