"""Reminders and escalation fired by the real scheduler on a moved clock."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from backend.core.clock import TZ
from backend.disputes.models import DisputeEvent
from tests.conftest import texts
from tests.disputes.conftest import DAY, case, report, report_with_session, run_scheduler_at


async def _due(ctx, number):
    """The case's pending deadline and the reminder before it (due dates the sweep reads)."""
    d = await case(ctx, number)
    return d.due_at, d.remind_at


async def test_accept_deadline_reminder_then_escalation(chat, ctx, staff):
    number = await report(chat, 3101)
    d = await case(ctx, number)
    # Tue 10:00 → accept within 1 working day → Wed 17:30 local
    assert d.accept_due.astimezone(TZ).strftime("%Y-%m-%d %H:%M") == "2026-12-02 17:30"
    assert await _due(ctx, number) == (d.accept_due, d.accept_due - timedelta(hours=4))
    n_med = len(chat.inbox(staff["med"]))

    await run_scheduler_at(ctx, d.accept_due - timedelta(hours=3, minutes=59))
    box = chat.inbox(staff["med"])
    assert len(box) == n_med + 1 and "受理期限" in box[-1].text and number in box[-1].text

    n_sup = len(chat.inbox(staff["sup"]))
    due = d.accept_due  # (the escalation gives the case a new acceptance deadline one level up)
    await run_scheduler_at(ctx, due + timedelta(minutes=1))
    sup = chat.inbox(staff["sup"])
    assert len(sup) == n_sup + 1 and "督办" in sup[-1].text and number in sup[-1].text
    d = await case(ctx, number)
    assert d.overdue == 1 and any(r["code"] == "overdue" for r in d.risk_reasons)

    # the job fired once; firing the sweep again changes nothing
    await run_scheduler_at(ctx, due + timedelta(minutes=20))
    assert len(chat.inbox(staff["sup"])) == n_sup + 1
    async with ctx.sm() as s:
        n = len(list(await s.scalars(select(DisputeEvent).where(DisputeEvent.dispute_id == d.id,
                                                                 DisputeEvent.action == "overdue"))))
    assert n == 1

    out = texts(await chat.send(staff["off_c"], "/overdue"))
    assert number in out
    assert "没有超期" in texts(await chat.send(staff["off_t"], "/overdue")) or number in out


async def test_accepting_in_time_cancels_escalation(chat, ctx, staff):
    number = await report(chat, 3102)
    d = await case(ctx, number)
    await chat.press(staff["med"], "受理")
    assert await _due(ctx, number) == ((await case(ctx, number)).resolve_due,
                                       (await case(ctx, number)).resolve_due - timedelta(hours=4))
    n_sup = len(chat.inbox(staff["sup"]))
    await run_scheduler_at(ctx, d.accept_due + timedelta(minutes=1))
    assert len(chat.inbox(staff["sup"])) == n_sup
    d = await case(ctx, number)
    assert d.overdue == 0 and d.resolve_due is not None


async def test_session_reminders_day_before_and_two_hours_before(chat, ctx, staff):
    c = 3103
    d = await case(ctx, await report_with_session(chat, staff, c))
    n = len(chat.inbox(c))
    await run_scheduler_at(ctx, d.session_at - timedelta(days=1) + timedelta(minutes=1))
    assert len(chat.inbox(c)) == n + 1 and "明天" in chat.last(c).text
    assert "明天" in chat.last(staff["med"]).text
    await run_scheduler_at(ctx, d.session_at - timedelta(hours=2) + timedelta(minutes=1))
    assert len(chat.inbox(c)) == n + 2 and "2 小时后" in chat.last(c).text


async def test_rating_reminder_once_after_three_days(chat, ctx, staff):
    c = 3104
    number = await report(chat, c)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "调解不成")
    await chat.press(staff["med"], "仲裁")
    await chat.press(staff["med"], "结案回访")
    d = await case(ctx, number)
    assert d.outcome == "failed" and d.referral == "arbitration"
    n = len(chat.inbox(c))
    await run_scheduler_at(ctx, d.closed_at + timedelta(days=3, minutes=1))
    assert len(chat.inbox(c)) == n + 1 and "还没有评价" in chat.last(c).text
    await run_scheduler_at(ctx, d.closed_at + timedelta(days=4))
    assert len(chat.inbox(c)) == n + 1


async def test_unsatisfied_reopens_one_level_up(chat, ctx, staff):
    c = 3105
    number = await report(chat, c)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "调解成功")
    await chat.send(staff["med"], "双方同意晚上十点后停止施工")
    await chat.press(staff["med"], "结案回访")
    msgs = await chat.press(c, "不满意")
    assert "上一级复查" in texts(msgs)
    d = await case(ctx, number)
    assert d.status == "escalated" and d.unit.name == "椒江区" and d.rating == "unsatisfied"
    from backend.disputes import stats

    async with ctx.sm() as s:  # the rollup followed every change (outcome, rating, reopen)
        assert [r.as_dict() for r in await stats.compute(s, None)] == \
            [r.as_dict() for r in await stats.compute_raw(s, None)]
    assert "复查" in chat.last(staff["sup"]).text
    await chat.press(staff["sup"], "受理")
    assert (await case(ctx, number)).status == "accepted"


async def test_digest_at_0830_lists_red_cases_and_hot_spots(chat, ctx, staff):
    red = await report(chat, 3106, description="欠了三个月工资，再不给我就去堵路上访，二十多个工友一起",
                       category="劳动争议/欠薪")
    d = await case(ctx, red)
    assert d.risk == "red" and {r["code"] for r in d.risk_reasons} >= {"words", "group"}
    # the red case alerted township and county officials at once
    assert red in chat.last(staff["off_t"]).text and "红色预警" in chat.last(staff["off_t"]).text
    assert red in chat.last(staff["off_c"]).text
    for uid in (3107, 3108):
        await report(chat, uid)
    n = len(chat.inbox(staff["off_c"]))
    next_morning = DAY.replace(hour=0, minute=31) + timedelta(days=1)  # 08:31 local
    await run_scheduler_at(ctx, next_morning)
    box = chat.inbox(staff["off_c"])
    assert len(box) == n + 1
    assert "预警日报" in box[-1].text and red in box[-1].text and "海门街道 · 邻里纠纷" in box[-1].text
