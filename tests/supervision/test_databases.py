"""The same journey on SQLite and PostgreSQL (db_settings): numbering under a row lock,
transitions, the outbox, and a reminder fired by the scheduler from the database job store."""
from __future__ import annotations

import time_machine
from sqlalchemy import select

from backend.context import start_context
from backend.supervision.models import ItemEvent, SupervisionItem
from tests.conftest import ChatDriver, texts
from tests.supervision.helpers import DEPUTY, PROC, local, people, propose, settle


async def test_journey_and_reminder_on_both_databases(db_settings):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
        try:
            chat = ChatDriver(ctx)
            await people(chat)
            first = await propose(chat)
            second = await propose(chat, title="第二件")
            assert (first, second) == ("DB-JJ-2026-0001", "DB-JJ-2026-0002")
            await chat.press(PROC, "受理")  # the latest notification: the second item
            await chat.send(PROC, f"/item {second}")
            await chat.press(PROC, "发出检察建议")
            await chat.send(PROC, "分局")
            await chat.send(PROC, "建议内容")
            assert "检察建议已发出" in texts(await chat.send(PROC, "2026-12-15"))
            tm.move_to(local(2026, 12, 8, 17, 31))
            await settle(ctx)
            assert sum("还有 7 天" in m.text for m in chat.inbox(PROC)) == 1
            assert "发出检察建议" in texts(chat.inbox(DEPUTY))
            async with ctx.sm() as s:
                item = await s.scalar(select(SupervisionItem).where(SupervisionItem.number == second))
                assert item.status == "suggested"
                actions = [e.action for e in await s.scalars(
                    select(ItemEvent).where(ItemEvent.item_id == item.id).order_by(ItemEvent.id))]
            assert actions == ["propose", "accept", "suggest"]
        finally:
            await ctx.stop()
