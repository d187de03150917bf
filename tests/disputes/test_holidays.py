"""From December on, a missing holiday arrangement for next year reaches the admins and
/readyz (issue 15, finding 5)."""
from __future__ import annotations

import time_machine

from backend.core import workdays
from backend.core.db import session_scope
from backend.disputes import service
from tests.disputes.conftest import DAY


async def test_admins_hear_once_that_next_years_holidays_are_missing(chat, ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("HEHE_HOLIDAYS_FILE", str(tmp_path / "holidays.toml"))
    workdays.reload()
    await chat.as_role(5901, "admin")
    for _ in range(2):
        async with session_scope(ctx.sm) as s:
            await service.calendar_notice(s)
        await ctx.flush()
    notes = [m.text for m in chat.inbox(5901) if "2027" in m.text]
    assert len(notes) == 1 and "hehe holidays import" in notes[0]
    workdays.reload()


async def test_readyz_warns_in_december_without_failing(api, tmp_path, monkeypatch):
    monkeypatch.setenv("HEHE_HOLIDAYS_FILE", str(tmp_path / "holidays.toml"))
    workdays.reload()
    body = (await api.client.get("/readyz")).json()
    assert any("2027" in w for w in body["warnings"])
    with time_machine.travel(DAY.replace(month=11), tick=False):
        assert (await api.client.get("/readyz")).json()["warnings"] == []
    workdays.reload()
