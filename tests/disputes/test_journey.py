"""The whole journey through the offline channel: report with photo and location → mediator
accepts → schedules → records outcome → closes → citizen rates → metrics change."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from backend.core.clock import now
from backend.core.files import StoredFile
from backend.disputes import stats
from backend.disputes.models import Dispute, DisputeEvent
from tests.conftest import texts
from tests.disputes.conftest import JPEG, case, report


async def test_full_journey(chat, ctx, staff):
    c = 3001
    await chat.send(c, "/report")
    await chat.press(c, "邻里纠纷")
    await chat.send(c, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")
    # offshore east of 椒江, > 8 km from every township centroid: resolves to the county
    # (a location at a township resolves to the township: tests/disputes/test_places.py)
    msgs = await chat.location(c, 28.6000, 121.6000)
    assert "椒江区" in texts(msgs)
    await chat.send(c, "隔壁302住户")
    msgs = await chat.photo(c, JPEG)
    assert "第 1 份" in texts(msgs)
    await chat.press(c, "完成")
    await chat.send(c, "138 1234 5678")
    msgs = await chat.press(c, "确认提交") if False else None
    summary = chat.last(c).text
    assert "138****5678" in summary and "13812345678" not in summary
    msgs = await chat.press(c, "确认提交")
    out = texts(msgs)
    assert "TZ-JJ-" in out and "新建" in out
    number = out.split("案件编号：")[1].split()[0]
    d = await case(ctx, number)
    assert d.status == "new" and d.phone == "13812345678" and d.lat is not None
    async with ctx.sm() as s:
        files = list(await s.scalars(select(StoredFile).where(StoredFile.owner_kind == "dispute",
                                                               StoredFile.owner_id == d.id)))
    assert len(files) == 1 and len(files[0].sha256) == 64

    # the county unit's supervisor mediator gets it (place = county, no township picked)
    note = chat.last(staff["sup"])
    assert number in note.text and "受理" in chat.buttons(staff["sup"])
    msgs = await chat.press(staff["sup"], "受理")
    assert "已受理" in texts(msgs)
    assert "已由" in chat.last(c).text

    await chat.press(staff["sup"], "安排调解")
    when = (now() + timedelta(days=3)).astimezone().strftime("%Y-%m-%d") + " 14:30 椒江区人民调解委员会"
    msgs = await chat.send(staff["sup"], when)
    assert "已安排" in texts(msgs)
    assert "调解" in chat.last(c).text and "14:30" in chat.last(c).text

    await chat.press(staff["sup"], "调解成功")
    msgs = await chat.send(staff["sup"], "双方约定每天22点后停止施工，赔偿老人500元")
    assert "调解成功" in texts(msgs)
    msgs = await chat.press(staff["sup"], "结案回访")
    assert "已结案" in texts(msgs)
    assert "评价" in chat.last(c).text and "满意" in chat.buttons(c)

    async with ctx.sm() as s:
        before = stats.summary(await stats.compute(s, None))
    msgs = await chat.press(c, "基本满意")
    assert "感谢" in texts(msgs)
    msgs = await chat.send(c, "调解员很耐心")
    assert "已记录" in texts(msgs)
    d = await case(ctx, number)
    assert d.status == "archived" and d.rating == "basic" and d.rating_comment == "调解员很耐心"
    async with ctx.sm() as s:
        after = stats.summary(await stats.compute(s, None))
        actions = [e.action for e in await s.scalars(select(DisputeEvent).where(
            DisputeEvent.dispute_id == d.id).order_by(DisputeEvent.id))]
    assert actions == ["create", "accept", "schedule", "succeed", "close", "rate", "archive", "comment"]
    assert before["satisfaction_rate"] is None and after["satisfaction_rate"] == 1.0
    assert after["resolved"] == 1 and after["local_resolution_rate"] == 0.0  # handled at county level

    # the citizen sees the timeline
    await chat.send(c, "/mycases")
    msgs = await chat.press(c, number)
    out = texts(msgs)
    assert "办理经过" in out and "受理" in out and "调解成功" in out and "138****5678" in out


async def test_township_case_counts_as_local(chat, ctx, staff):
    number = await report(chat, 3002)
    d = await case(ctx, number)
    assert d.unit_id == d.place_id  # 海门街道 has a mediator
    assert number in chat.last(staff["med"]).text
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "调解成功")
    await chat.send(staff["med"], "双方达成协议，施工时间调整为8点到18点")
    async with ctx.sm() as s:
        rows = await stats.compute(s, None)
    assert stats.summary(rows)["local_resolution_rate"] == 1.0
