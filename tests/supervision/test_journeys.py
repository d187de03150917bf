"""Full journeys through the offline channel and the real Dispatcher."""
from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.core.files import StoredFile
from backend.supervision.models import ItemEvent, ItemParticipant, Suggestion, SupervisionItem
from tests.conftest import texts
from tests.supervision.helpers import (last_seen,
    CHIEF, CITIZEN, CITY_PROC, COSIGNER, DEPUTY, LIAISON, OFFICIAL, OTHER_PROC, PROC, item_text, local, people,
    propose,
)


async def _item(ctx, number):
    async with ctx.sm() as s:
        return await s.scalar(select(SupervisionItem).where(SupervisionItem.number == number))


async def test_propose_accept_suggest_reply_close_rate(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        await people(chat)
        number = await propose(chat, photo=True, cosign="钱代表", agency="某区生态环境分局")
        assert number == "DB-JJ-2026-0001"
        # co-signer confirms in chat; the liaison joins (联合督办)
        assert "联名" in item_text(chat, COSIGNER)
        await chat.press(COSIGNER, "同意联名")
        assert "钱代表 代表已联名" in item_text(chat, DEPUTY)
        msgs = await chat.send(LIAISON, f"/follow {number}")
        assert "已加入联合督办" in texts(msgs)

        # the county procuratorate receives it with decision buttons; the city does not
        assert number in item_text(chat, PROC) and number not in item_text(chat, CITY_PROC)
        assert number not in item_text(chat, OTHER_PROC)
        await chat.press(PROC, "受理")
        for uid in (DEPUTY, COSIGNER, LIAISON):
            assert "已由检察院受理" in item_text(chat, uid)

        # handling: an investigation note, then a 检察建议 with an explicit deadline
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "调查记录")
        await chat.send(PROC, "现场勘查，取水样三份送检。")
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "发出检察建议")
        await chat.send(PROC, "椒江区生态环境分局")
        await chat.send(PROC, "责令企业停止偷排，限期完成截污纳管。")
        msgs = await chat.send(PROC, "2027-01-15")
        assert "检察建议已发出" in texts(msgs)
        assert "发出检察建议" in item_text(chat, LIAISON)

        # the agency replies; the procurator enters it
        tm.move_to(local(2026, 12, 10, 10, 0))
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "录入整改回复")
        await chat.send(PROC, "2026-12-09")
        await chat.send(PROC, "已完成截污纳管，企业停产整顿。")
        msgs = await chat.press(PROC, "已整改")
        assert "回头看时间：2027-03-10" in texts(msgs)
        assert "整改情况：已整改" in item_text(chat, DEPUTY)

        # close → deputies are asked to rate
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "办结")
        await chat.send(PROC, "整改到位，办结。")
        assert "已办结" in item_text(chat, DEPUTY)
        await chat.press(DEPUTY, "评价")
        await chat.press(DEPUTY, "基本满意")
        msgs = await chat.send(DEPUTY, "整改及时，希望回头看时再核实。")
        assert "基本满意" in texts(msgs)

        # /myitems shows the item with its timeline
        msgs = await chat.send(DEPUTY, "/myitems")
        assert number in texts(msgs) and "评价" in texts(msgs) and "办结" in texts(msgs)
        msgs = await chat.press(DEPUTY, number)
        body = texts(msgs)
        for step in ("提出督办", "联名", "加入联合督办", "受理", "调查记录", "发出检察建议", "录入整改回复", "办结",
                     "评价"):
            assert step in body, step

    item = await _item(ctx, number)
    assert item.status == "closed" and item.rating == "basic" and item.agency == "某区生态环境分局"
    async with ctx.sm() as s:
        events = [e.action for e in await s.scalars(select(ItemEvent).where(ItemEvent.item_id == item.id)
                                                     .order_by(ItemEvent.id))]
        assert events == ["propose", "cosign", "follow", "accept", "note", "suggest", "reply", "close", "rate"]
        ev = await s.scalar(select(ItemEvent).where(ItemEvent.action == "accept"))
        assert ev.actor_id is not None and ev.from_status == "submitted" and ev.to_status == "accepted"
        files = await s.scalar(select(func.count(StoredFile.id)).where(StoredFile.owner_kind == "supervision_item",
                                                                       StoredFile.owner_id == item.id))
        assert files == 1
        sug = await s.scalar(select(Suggestion))
        assert sug.rectified == "yes" and sug.reply_date == "2026-12-09"
        assert sug.followup_at is not None and sug.remind_at == sug.followup_at  # the sweep's 回头看


async def test_unsatisfied_reopens_for_supervisor_review(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "办结")
        await chat.send(PROC, "经调查不属实。")
        await chat.press(DEPUTY, "评价")
        await chat.press(DEPUTY, "不满意")
        await chat.press(DEPUTY, "跳过")
        assert "不满意" in item_text(chat, CHIEF) and "请复查" in item_text(chat, CHIEF)
        # an ordinary procurator cannot decide the review
        await chat.send(PROC, f"/item {number}")
        assert "重新办理" not in chat.buttons(PROC)
        await chat.press(CHIEF, "重新办理")
        await chat.send(CHIEF, "调查不充分，重新核查。")
        assert "重新办理" in item_text(chat, DEPUTY)
    assert (await _item(ctx, number)).status == "accepted"


async def test_decline_then_appeal_once_to_city(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "不予受理")
        msgs = await chat.send(PROC, "   ")  # the reason is mandatory
        assert "不能为空" in texts(msgs)
        await chat.send(PROC, "不属于检察机关管辖范围。")
        assert "不予受理" in item_text(chat, DEPUTY) and "不属于检察机关管辖" in item_text(chat, DEPUTY)
        await chat.press(DEPUTY, "申请复查")
        await chat.send(DEPUTY, "污染涉及公共利益，属于公益诉讼范围。")
        assert "复查申请" in item_text(chat, CITY_PROC) and number in item_text(chat, CITY_PROC)
        # the county procurator can no longer decide it
        await chat.send(PROC, f"/item {number}")
        assert "受理" not in chat.buttons(PROC)
        await chat.press(CITY_PROC, "不予受理")
        await chat.send(CITY_PROC, "维持原决定。")
        assert "经台州市人民检察院复查" in item_text(chat, DEPUTY)
        # no second appeal: the old button is stale
        msgs = await chat.ch.press_callback(DEPUTY, next(m for m in reversed(chat.inbox(DEPUTY))
                                                          if any("申请复查" in l for row in m.inline for l, _ in row)),
                                            f"sp:appeal:{(await _item(ctx, number)).id}")
        await ctx.flush()
        assert "已经申请过一次复查" in last_seen(chat, DEPUTY).text
    item = await _item(ctx, number)
    assert item.status == "declined_final" and item.appealed


async def test_clue_then_case_and_litigation(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "转为线索")
        assert "转为案件线索" in item_text(chat, DEPUTY)
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "立案")
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "提起公益诉讼")
        await chat.send(PROC, "已向台州市中级人民法院提起行政公益诉讼。")
        assert "公益诉讼" in item_text(chat, DEPUTY)
    item = await _item(ctx, number)
    assert item.was_clue and item.case_filed and item.litigation and item.status == "litigation"


async def test_officials_read_only_and_citizen_sees_nothing(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        msgs = await chat.send(OFFICIAL, f"/item {number}")
        assert number in texts(msgs) and "受理" not in chat.buttons(OFFICIAL)
        msgs = await chat.send(CITIZEN, f"/item {number}")
        assert "没有找到" in texts(msgs)
        msgs = await chat.send(CITIZEN, "/myitems")
        assert "没有权限" in texts(msgs)
        msgs = await chat.send(CITIZEN, "/propose")
        assert "只有人大代表" in texts(msgs)
        msgs = await chat.send(OFFICIAL, "/supstats")
        assert "督办统计" in texts(msgs) and "联合督办率" in texts(msgs)
        msgs = await chat.send(CITIZEN, "/supstats")
        assert "没有权限" in texts(msgs)
        # a procurator's button pressed by someone else is refused
        item = await _item(ctx, number)
        await chat.ch.press_callback(CITIZEN, chat.inbox(CITIZEN)[-1], f"sp:accept:{item.id}")
        await ctx.flush()
        assert "没有权限" in last_seen(chat, CITIZEN).text
    assert (await _item(ctx, number)).status == "submitted"


async def test_export_markdown_and_pdf_in_chat(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.send(DEPUTY, f"/item {number}")
        msgs = await chat.press(DEPUTY, "导出 Markdown")
        doc = next(m for m in msgs if m.document)
        md = ctx.channel.get_file(doc.document).data.decode()
        assert md.startswith(f"# {number}") and "办理过程" in md
        await chat.send(DEPUTY, f"/item {number}")
        msgs = await chat.press(DEPUTY, "导出 PDF")
        doc = next(m for m in msgs if m.document)
        assert ctx.channel.get_file(doc.document).data.startswith(b"%PDF")


async def test_menu_entries_by_role_and_english(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.send(DEPUTY, "/start")
        assert "📝 提出督办事项" in chat.buttons(DEPUTY)
        msgs = await chat.press(DEPUTY, "提出督办事项")
        assert "标题" in texts(msgs)
        await chat.send(DEPUTY, "/cancel")
        await chat.send(CITIZEN, "/start")
        assert not any("督办" in b for b in chat.buttons(CITIZEN))
        await chat.send(PROC, "/start")
        assert "⚖️ 督办待办" in chat.buttons(PROC)
        await chat.send(OFFICIAL, "/start")
        assert "📊 督办统计" in chat.buttons(OFFICIAL)
        await chat.send(COSIGNER, "/lang en")
        msgs = await chat.send(COSIGNER, "/propose")
        assert msgs[0].text.startswith("Title of the item")
