"""Monday 09:00 weekly digest and the monthly digest, fired by the scheduler's cron jobs."""
from __future__ import annotations

import time_machine

from scheduler.jobs.supervision import register
from tests.supervision.helpers import CITIZEN, COSIGNER, DEPUTY, OTHER_PROC, PROC, local, people, propose, settle


def count(chat, uid, needle):
    return sum(1 for m in chat.inbox(uid) if needle in m.text)


async def test_weekly_digest_monday_nine_to_deputies_and_procurators_with_open_items(chat, ctx):
    # Wednesday 2026-11-04; the next Monday is 11-09
    with time_machine.travel(local(2026, 11, 4, 10, 0), tick=True) as tm:
        register(ctx.scheduler)  # the fixture started the app at the real date: recompute from the moved clock
        await people(chat)
        number = await propose(chat)
        assert ctx.scheduler.get_job("sup-weekly-digest").next_run_time == local(2026, 11, 9, 9, 0)
        tm.move_to(local(2026, 11, 9, 8, 59))
        await settle(ctx)
        assert count(chat, DEPUTY, "本周督办提醒") == 0
        tm.move_to(local(2026, 11, 9, 9, 0, 5))
        await settle(ctx)
        assert count(chat, DEPUTY, "本周督办提醒") == 1 and number in chat.last(DEPUTY).text
        assert count(chat, PROC, "本周督办提醒") == 1
        assert count(chat, OTHER_PROC, "本周督办提醒") == 0
        assert count(chat, COSIGNER, "本周督办提醒") == 0  # nothing open for them
        assert count(chat, CITIZEN, "本周督办提醒") == 0


async def test_monthly_digest_with_figures(chat, ctx):
    with time_machine.travel(local(2026, 11, 20, 10, 0), tick=True) as tm:
        register(ctx.scheduler)
        await people(chat)
        await propose(chat)
        tm.move_to(local(2026, 12, 1, 9, 30, 5))
        await settle(ctx)
        assert count(chat, DEPUTY, "2026-11 督办月报") == 1  # sent on 12-01, it covers November
        text = next(m.text for m in chat.inbox(DEPUTY) if "督办月报" in m.text)
        assert "联合督办率" in text and "椒江区整体情况" in text
