"""Deadlines and reminders: due-date columns swept by the real APScheduler's interval job under a
moved clock."""
from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.context import start_context
from backend.core.clock import now
from backend.notify.models import Outbox
from backend.supervision import service as svc
from backend.supervision.models import Suggestion, SupervisionItem
from tests.conftest import ChatDriver, texts
from tests.supervision.helpers import (
    CHIEF, COSIGNER, DEPUTY, PROC, item_text, local, people, propose, settle, suggest,
)


def count(chat, uid, needle):
    return sum(1 for m in chat.inbox(uid) if needle in m.text)


async def next_reminder(ctx, sid: int = 1):
    """When the sweep will next remind about suggestion ``sid`` (its due-date column)."""
    async with ctx.sm() as s:
        at = await s.scalar(select(Suggestion.remind_at).where(Suggestion.id == sid))
    return svc.to_local(at) if at else None


async def test_reply_deadline_reminders_daily_overdue_then_escalation(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        await people(chat)
        number = await propose(chat, cosign="钱代表")
        await chat.press(COSIGNER, "同意联名")
        await suggest(chat, number, "2026-12-15")
        assert await next_reminder(ctx) == local(2026, 12, 8, 17, 30)  # T−7

        tm.move_to(local(2026, 12, 8, 17, 0))
        await settle(ctx)
        assert count(chat, PROC, "还有 7 天") == 0  # not yet: due at 17:30
        tm.move_to(local(2026, 12, 8, 17, 31))
        await settle(ctx)
        assert count(chat, PROC, "还有 7 天") == 1
        tm.move_to(local(2026, 12, 14, 17, 31))
        await settle(ctx)
        assert count(chat, PROC, "还有 1 天") == 1
        assert count(chat, CHIEF, "超期") == 0

        for day in range(1, 9):
            tm.move_to(local(2026, 12, 15, 17, 31) + timedelta(days=day))
            await settle(ctx)
            assert count(chat, PROC, f"已超期 {day} 天") == 1, day
        # escalation to the chief procurator on day 7, once; the deputies are told
        assert count(chat, CHIEF, "提请检察长督办") == 1
        assert "已超期 7 天" in item_text(chat, CHIEF)
        for uid in (DEPUTY, COSIGNER):
            assert count(chat, uid, "未在期限") == 1 and count(chat, uid, "已提请检察长督办") == 1

        # the reply arrives: the daily reminders stop
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "录入整改回复")
        await chat.send(PROC, "2026-12-23")
        await chat.send(PROC, "已整改。")
        await chat.press(PROC, "部分整改")
        n = count(chat, PROC, "已超期")
        tm.move_to(local(2026, 12, 25, 17, 31))
        await settle(ctx)
        tm.move_to(local(2026, 12, 26, 17, 31))
        await settle(ctx)
        assert count(chat, PROC, "已超期") == n

        # 回头看 three months after rectification
        tm.move_to(local(2027, 3, 24, 10, 0))
        await settle(ctx)
        assert count(chat, PROC, "请开展回头看") == 1 and count(chat, DEPUTY, "已到回头看时间") == 1


async def test_acceptance_deadline_across_national_day(chat, ctx):
    """Proposed on Monday 2026-09-28: 7 working days skip the 10-01..10-07 holiday and count
    Saturday 10-10 (a make-up working day) → due Tuesday 2026-10-13 17:30."""
    with time_machine.travel(local(2026, 9, 28, 10, 0), tick=True) as tm:
        await people(chat)
        number = await propose(chat)
        assert "2026-10-13 17:30" in item_text(chat, PROC)
        async with ctx.sm() as s:
            item = await s.scalar(select(SupervisionItem).where(SupervisionItem.number == number))
        assert svc.to_local(item.acceptance_due) == local(2026, 10, 13, 17, 30)
        tm.move_to(local(2026, 10, 13, 17, 0))
        await settle(ctx)
        assert count(chat, PROC, "受理期限") == 0
        tm.move_to(local(2026, 10, 13, 17, 31))
        await settle(ctx)
        assert count(chat, PROC, "受理期限（2026-10-13 17:30）已到") == 1
        assert count(chat, CHIEF, "请督促办理") == 1


def test_default_reply_deadline_lands_on_working_day():
    # 2 months after 2026-08-03 is Saturday 2026-10-03, inside the National Day holiday → Thursday 10-08
    due = svc.months_deadline(local(2026, 8, 3, 10, 0), 2)
    assert due == local(2026, 10, 8, 17, 30)
    # an ordinary working day stays put
    assert svc.months_deadline(local(2026, 9, 10, 10, 0), 2) == local(2026, 11, 10, 17, 30)


async def test_reminder_in_quiet_hours_is_held_until_seven(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        await people(chat)
        number = await propose(chat)
        await suggest(chat, number, "2026-12-15")
        async with ctx.sm() as s:
            sid = await s.scalar(select(Suggestion.id))
        # a reminder that falls due at 23:00 (35 days before the deadline)
        async with ctx.sm() as s:
            (await s.get(Suggestion, sid)).remind_at = local(2026, 11, 10, 23, 0)
            await s.commit()
        tm.move_to(local(2026, 11, 10, 23, 0, 30))
        await settle(ctx)
        assert count(chat, PROC, "还有 35 天") == 0
        async with ctx.sm() as s:
            held = await s.scalar(select(Outbox).where(Outbox.text.contains("还有 35 天")))
        assert held is not None and held.sent_at is None
        assert svc.to_local(held.not_before) == local(2026, 11, 11, 7, 0)
        tm.move_to(local(2026, 11, 11, 6, 59))
        await ctx.flush()
        assert count(chat, PROC, "还有 35 天") == 0
        tm.move_to(local(2026, 11, 11, 7, 0, 5))
        await ctx.flush()
        assert count(chat, PROC, "还有 35 天") == 1


async def test_restart_with_a_reminder_due_delivers_it_exactly_once(settings):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        c1 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            chat = ChatDriver(c1)
            await people(chat)
            number = await propose(chat)
            await suggest(chat, number, "2026-12-15")
            assert await next_reminder(c1) == local(2026, 12, 8, 17, 30)
        finally:
            await c1.stop()  # the app is down when the T−7 reminder falls due

        tm.move_to(local(2026, 12, 8, 18, 0))
        c2 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            await settle(c2)
            got = [m for m in c2.channel.out.get(PROC, []) if "还有 7 天" in m.text]
            assert len(got) == 1
            assert await next_reminder(c2) == local(2026, 12, 14, 17, 30)  # on to T−1
        finally:
            await c2.stop()

        tm.move_to(local(2026, 12, 8, 18, 5))
        c3 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            await settle(c3)
            assert not [m for m in c3.channel.out.get(PROC, []) if "还有 7 天" in m.text]
            async with c3.sm() as s:
                n = await s.scalar(select(func.count(Outbox.id)).where(Outbox.text.contains("还有 7 天")))
            assert n == 1
        finally:
            await c3.stop()


async def test_items_created_without_a_scheduler_get_their_reminders_at_start(settings):
    """Demo data and CLI runs have no scheduler: the start-up sweep sends what fell due meanwhile."""
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        c1 = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
        try:
            chat = ChatDriver(c1)
            await people(chat)
            number = await propose(chat)
            await suggest(chat, number, "2026-12-15")
            await propose(chat, title="无人受理的事项")
        finally:
            await c1.stop()
        tm.move_to(local(2026, 11, 20, 10, 0))
        c2 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            await settle(c2)
            assert await next_reminder(c2) == local(2026, 12, 8, 17, 30)
            # the second item's acceptance deadline (11-12) passed while nobody watched: reminded once now
            assert sum("受理期限" in m.text for m in c2.channel.out.get(PROC, [])) == 1
            await settle(c2)
            from scheduler.jobs.supervision import sweep
            await sweep()  # a second sweep finds nothing missing
            await settle(c2)
            assert sum("受理期限" in m.text for m in c2.channel.out.get(PROC, [])) == 1
            tm.move_to(local(2026, 12, 8, 17, 31))
            await settle(c2)
            assert sum("还有 7 天" in m.text for m in c2.channel.out.get(PROC, [])) == 1
        finally:
            await c2.stop()
