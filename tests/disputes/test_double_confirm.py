"""A double tap on 确认提交 creates one case (issue 14, item 4), on SQLite and PostgreSQL:
the confirm acts once per draft, whatever arrives twice."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from backend.disputes.models import Dispute
from tests.conftest import ChatDriver


async def _draft_until_confirm(chat: ChatDriver, uid: int) -> None:
    await chat.send(uid, "/report")
    await chat.press(uid, "邻里纠纷")
    await chat.send(uid, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
    await chat.press(uid, "椒江区")
    await chat.press(uid, "海门街道")
    await chat.press(uid, "跳过")
    await chat.press(uid, "完成")
    await chat.press(uid, "跳过")


async def test_a_double_tap_on_confirm_creates_one_case(db_settings, daytime):
    from backend.context import start_context

    ctx = await start_context(db_settings, models=False, workers=False, telegram=False)
    try:
        chat = ChatDriver(ctx)
        users = list(range(3801, 3811))
        for uid in users:
            await _draft_until_confirm(chat, uid)
        taps = []
        for uid in users:  # every citizen taps twice, all at once
            summary = next(m for m in reversed(chat.ch.out[uid]) if m.inline)
            data = next(d for row in summary.inline for label, d in row if "确认提交" in label)
            taps += [chat.ch.press_callback(uid, summary, data) for _ in range(2)]
        await asyncio.gather(*taps)
        await ctx.flush()
        async with ctx.sm() as s:
            counts = dict((await s.execute(select(Dispute.citizen_id, func.count(Dispute.id))
                                           .group_by(Dispute.citizen_id))).all())
        assert len(counts) == len(users) and set(counts.values()) == {1}
        for uid in users:  # each was told its number (once or twice), and never an error
            told = [m.text for m in chat.inbox(uid) if "案件编号" in m.text]
            assert told and len({t.split("案件编号：")[1].split()[0] for t in told}) == 1
            assert not any("出错" in m.text for m in chat.inbox(uid))
    finally:
        await ctx.stop()
