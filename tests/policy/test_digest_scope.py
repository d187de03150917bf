"""A deputy without a jurisdiction gets their own items in the monthly digest, never city-wide
figures (city-wide only by an explicit city jurisdiction)."""
from __future__ import annotations

import time_machine
from sqlalchemy import select

from backend.supervision import digest
from backend.users.models import User
from tests.supervision.helpers import DEPUTY, LIAISON, local, people, propose

NOWHERE = 3007


async def test_the_monthly_digest_has_no_city_wide_figures_for_a_deputy_without_jurisdiction(chat, ctx):
    with time_machine.travel(local(2026, 11, 20, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.as_role(NOWHERE, "deputy", None)
        await chat.send(LIAISON, f"/follow {number}")  # the city-level liaison: figures of 台州市
        async with ctx.sm() as s:
            u = await s.scalar(select(User).where(User.telegram_id == DEPUTY))
            u.jurisdiction_id = None  # the proposer loses their jurisdiction
            await s.commit()
        async with ctx.sm() as s:
            await digest.monthly(s, local(2026, 12, 1, 9, 30))
            await s.commit()
        await ctx.flush()
    mine = next(m.text for m in chat.inbox(DEPUTY) if "督办月报" in m.text)
    assert number in mine and "整体情况" not in mine and "联合督办率" not in mine
    city = next(m.text for m in chat.inbox(LIAISON) if "督办月报" in m.text)
    assert "台州市整体情况" in city
