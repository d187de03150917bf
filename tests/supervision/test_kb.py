"""The knowledge-base seam: every change enqueues the item in the same transaction."""
from __future__ import annotations

import pytest
import time_machine
from sqlalchemy import select

from tests.supervision.helpers import PROC, local, people, propose

kbm = pytest.importorskip("knowledge_base.models")


async def test_changes_are_enqueued_and_the_record_builds(chat, ctx):
    import backend.supervision.kb_source  # noqa: F401 - registers the source

    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
    async with ctx.sm() as s:
        rows = list(await s.scalars(select(kbm.KbQueue).where(kbm.KbQueue.kind == "supervision")))
        assert len(rows) >= 2 and {r.ref_id for r in rows} == {"1"}
        rec = await kbm.sources()["supervision"].builder(s, "1")
    assert rec.id == number and rec.kind == "supervision" and not rec.public
    rec.validate()
    assert "偷排" in rec.text and rec.jurisdiction_ids and rec.owner_user_ids
