"""The overdue list, real escalation, catch-up after downtime and the digest's clock
(issue 15, findings 3 and 4)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import time_machine

from backend.core.db import session_scope
from backend.disputes import service, stats
from backend.users import service as users
from tests.conftest import texts
from tests.disputes.conftest import case, report, report_with_session, run_scheduler_at


async def test_a_case_accepted_on_time_is_not_on_the_overdue_list(chat, ctx, staff):
    number = await report(chat, 3501)
    await chat.press(staff["med"], "受理")
    d = await case(ctx, number)
    await run_scheduler_at(ctx, d.accept_due + timedelta(days=1))  # accepted in time, resolution not due yet
    assert number not in texts(await chat.send(staff["off_c"], "/overdue"))
    with time_machine.travel(d.accept_due + timedelta(days=1), tick=False):
        async with ctx.sm() as s:
            off = await s.scalar(users.select(users.User).where(users.User.telegram_id == staff["off_c"]))
            assert number not in [c.number for c in await service.overdue_cases(s, off)]


async def test_a_missed_acceptance_moves_the_case_up_a_level(chat, ctx, staff):
    number = await report(chat, 3502)
    d = await case(ctx, number)
    assert d.unit.name == "海门街道"
    await run_scheduler_at(ctx, d.accept_due + timedelta(minutes=1))
    d = await case(ctx, number)
    assert d.status == "escalated" and d.unit.name == "椒江区" and d.accept_due > d.created_at + timedelta(days=1)
    note = chat.last(staff["sup"])
    assert number in note.text and "椒江区" in note.text and "受理" in chat.buttons(staff["sup"])
    assert "椒江区" in chat.last(3502).text  # the citizen is told where the case went
    await chat.press(staff["sup"], "受理")
    assert (await case(ctx, number)).status == "accepted"
    assert number in texts(await chat.send(staff["off_c"], "/overdue"))  # it did miss a deadline


async def test_after_downtime_one_current_session_reminder_not_the_stale_series(chat, ctx, staff):
    c = 3503
    d = await case(ctx, await report_with_session(chat, staff, c))
    n = len(chat.inbox(c))
    # Hehe was down from before the day-before reminder until one hour before the session
    await run_scheduler_at(ctx, d.session_at - timedelta(hours=1))
    new = chat.inbox(c)[n:]
    assert len(new) == 1 and "明天" not in new[0].text and "14:30" in new[0].text
    await run_scheduler_at(ctx, d.session_at - timedelta(minutes=30))
    assert len(chat.inbox(c)) == n + 1


async def test_after_downtime_no_deadline_reminder_arrives_after_the_deadline(chat, ctx, staff):
    number = await report(chat, 3504)
    d = await case(ctx, number)
    n = len(chat.inbox(staff["med"]))
    await run_scheduler_at(ctx, d.accept_due + timedelta(hours=2))  # down over the reminder and the deadline
    assert not any("受理期限是" in m.text for m in chat.inbox(staff["med"])[n:])
    assert (await case(ctx, number)).overdue == 1


def test_the_digest_is_declared_on_hehe_timezone(settings):
    from scheduler.factory import make_scheduler
    from scheduler.jobs import disputes as jobs

    sched = make_scheduler(settings.scheduler_db_url, "Asia/Shanghai")
    jobs.register(sched)
    trigger = sched.get_job("disputes-digest").trigger
    assert trigger.timezone == ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)  # 09:00 in Taizhou
    nxt = trigger.get_next_fire_time(None, start)
    assert nxt.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M") == "2026-12-02 08:30"


async def test_the_digest_title_names_the_period_it_covers(chat, ctx, staff):
    new_year = datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc)  # 2027-01-01 08:30 local
    with time_machine.travel(datetime(2026, 12, 31, 12, 0, tzinfo=timezone.utc), tick=False):
        await report(chat, 3506, category="劳动争议/欠薪", description="公司欠了三十多个工人的工资，大家准备去拉横幅堵路")
    with time_machine.travel(new_year, tick=False):
        async with session_scope(ctx.sm) as s:
            assert await stats.send_digest(s) >= 1
        await ctx.flush()
    digest = next(m.text for m in reversed(chat.inbox(staff["off_c"])) if "预警日报" in m.text)
    assert "2026-12-31 08:30" in digest and "2027-01-01 08:30" in digest


async def test_what_fell_due_while_hehe_was_down_is_acted_on_once_after_the_restart(settings):
    from backend.context import start_context
    from tests.conftest import ChatDriver, Clock

    first = await start_context(settings, models=False, workers=False, telegram=False)
    try:
        chat = ChatDriver(first)
        await chat.as_role(5001, "mediator", "椒江区/海门街道")
        await chat.as_role(5002, "mediator", "椒江区", title="supervisor")
        number = await report(chat, 3507)
        due = (await case(first, number)).accept_due
    finally:
        await first.stop()  # down from before the reminder until after the deadline
    with time_machine.travel(due + timedelta(hours=3), tick=True):
        second = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            assert second.scheduler.get_job("disputes-sweep").next_run_time <= due + timedelta(hours=3, minutes=1)
            await Clock(second).run_due()  # the sweep registered to run at start-up
            await Clock(second).run_due(due + timedelta(hours=3, minutes=5))  # and once more later
            chat = ChatDriver(second)
            notes = [m.text for m in chat.inbox(5002) if number in m.text and "督办" in m.text]
            d = await case(second, number)
        finally:
            await second.stop()
    assert len(notes) == 1 and d.unit.name == "椒江区" and d.overdue == 1
    assert not any("受理期限是" in m.text for m in chat.inbox(5001))
