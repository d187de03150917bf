"""Bad input gets a clear Chinese message and leaves nothing half-written."""
from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.core.files import StoredFile
from backend.supervision.models import ItemEvent, ItemParticipant, SupervisionItem
from tests.conftest import texts
from tests.supervision.helpers import (last_seen,
    CHIEF, COSIGNER, DEPUTY, PROC, local, people, propose,
)


async def _counts(ctx):
    async with ctx.sm() as s:
        return (await s.scalar(select(func.count(SupervisionItem.id))),
                await s.scalar(select(func.count(ItemEvent.id))),
                await s.scalar(select(func.count(ItemParticipant.id))),
                await s.scalar(select(func.count(StoredFile.id))))


async def test_title_and_description_checks(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.send(DEPUTY, "/propose")
        assert "不能为空" in texts(await chat.send(DEPUTY, "   "))
        assert "标题太长" in texts(await chat.send(DEPUTY, "长" * 101))
        assert "问题" in texts(await chat.send(DEPUTY, "标" * 100))  # exactly 100 is fine
        msgs = await chat.send(DEPUTY, "污" * 10_000)
        assert "描述太长了（10000 字）" in texts(msgs) and "5000" in texts(msgs)
        msgs = await chat.send(DEPUTY, "污" * 5000)
        assert "领域" in texts(msgs)
        # typing where a button is expected
        assert "按钮" in texts(await chat.send(DEPUTY, "生态"))
        # a sticker in a text step
        await chat.send(DEPUTY, "/cancel")
    assert await _counts(ctx) == (0, 0, 0, 0)


async def test_unknown_cosigner_and_cancel_at_summary_write_nothing(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.send(DEPUTY, "/propose")
        await chat.send(DEPUTY, "某小区违建")
        await chat.send(DEPUTY, "小区绿地被违规占用建房，多次反映无果。")
        await chat.press(DEPUTY, "行政执法监督")
        await chat.press(DEPUTY, "椒江区")
        await chat.press(DEPUTY, "海门街道")
        await chat.press(DEPUTY, "跳过")
        await chat.photo(DEPUTY, b"\xff\xd8\xff" + b"p" * 50)
        await chat.press(DEPUTY, "完成")
        msgs = await chat.send(DEPUTY, "钱代表, 不存在的人")
        assert "没有找到代表“不存在的人”" in texts(msgs)
        assert "没有找到代表“3301”" in texts(await chat.send(DEPUTY, "3301"))  # a citizen is not a deputy
        assert "不需要联名自己" in texts(await chat.send(DEPUTY, "王代表"))
        msgs = await chat.send(DEPUTY, "3002")
        assert "钱代表" in texts(msgs) and "海门街道" in texts(msgs)
        await chat.press(DEPUTY, "取消")
        assert "没有提交" in chat.last(DEPUTY).text
    assert await _counts(ctx) == (0, 0, 0, 0)
    assert not [m for m in chat.inbox(COSIGNER) if "联名" in m.text]


async def test_confirm_pressed_twice_creates_one_item(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await propose(chat)
        summary = next(m for m in reversed(chat.inbox(DEPUTY)) if m.inline and "确认提交" in m.inline[0][0][0])
        await chat.ch.press_callback(DEPUTY, summary, summary.inline[0][0][1])
        await ctx.flush()
    async with ctx.sm() as s:
        assert await s.scalar(select(func.count(SupervisionItem.id))) == 1


async def test_urging_once_per_three_days(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        await people(chat)
        number = await propose(chat)
        await chat.send(DEPUTY, f"/item {number}")
        assert "已催办" in texts(await chat.press(DEPUTY, "催办"))
        assert "催办事项" in chat.last(PROC).text
        tm.move_to(local(2026, 11, 5, 9, 0))
        await chat.send(DEPUTY, f"/item {number}")
        msgs = await chat.press(DEPUTY, "催办")
        assert "每 3 天可催办一次" in texts(msgs) and "2026-11-06 10:00" in texts(msgs)
        assert sum("催办事项" in m.text for m in chat.inbox(PROC)) == 1
        tm.move_to(local(2026, 11, 6, 10, 1))
        await chat.send(DEPUTY, f"/item {number}")
        assert "已催办" in texts(await chat.press(DEPUTY, "催办"))
        assert sum("催办事项" in m.text for m in chat.inbox(PROC)) == 2
    async with ctx.sm() as s:
        assert await s.scalar(select(func.count(ItemEvent.id)).where(ItemEvent.action == "urge")) == 2


async def test_stale_buttons(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
        # the chief presses 不予受理 on the same, older notification
        msgs = await chat.press(CHIEF, "不予受理")
        assert "已失效" in texts(msgs) and "已受理" in texts(msgs)
        msgs = await chat.press(PROC, "受理")  # again
        assert "已失效" in texts(msgs)
        # the deputy's rate button before closing
        async with ctx.sm() as s:
            iid = await s.scalar(select(SupervisionItem.id))
        await chat.ch.press_callback(DEPUTY, chat.inbox(DEPUTY)[-1], f"sp:rate:{iid}")
        await ctx.flush()
        assert "已失效" in last_seen(chat, DEPUTY).text
        # a button for an item that does not exist
        await chat.ch.press_callback(PROC, chat.inbox(PROC)[-1], "sp:accept:999")
        await ctx.flush()
        assert "没有找到" in last_seen(chat, PROC).text
    async with ctx.sm() as s:
        item = await s.scalar(select(SupervisionItem))
        assert item.status == "accepted"
        assert await s.scalar(select(func.count(ItemEvent.id)).where(ItemEvent.action == "accept")) == 1


async def test_bad_dates_in_handling(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "发出检察建议")
        await chat.send(PROC, "分局")
        await chat.send(PROC, "建议内容")
        assert "格式不对" in texts(await chat.send(PROC, "明年一月")) 
        assert "必须晚于今天" in texts(await chat.send(PROC, "2026-11-01"))
        assert "2027-01-04" in texts(await chat.press(PROC, "默认期限"))  # 2027-01-03 is a Sunday
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "录入整改回复")
        assert "不能晚于今天" in texts(await chat.send(PROC, "2026-12-01"))
        assert "格式不对" in texts(await chat.send(PROC, "2026-02-30"))
