"""Bad input in the chat: polite messages, the conversation stays usable, no half-written case."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.disputes.models import Dispute
from tests.conftest import texts
from tests.disputes.conftest import JPEG, PDF, case, report


async def _count(ctx) -> int:
    async with ctx.sm() as s:
        return await s.scalar(select(func.count(Dispute.id)))


async def _to_step(chat, uid, step):
    await chat.send(uid, "/report")
    if step == "category":
        return
    await chat.press(uid, "物业纠纷")
    if step == "description":
        return
    await chat.send(uid, "小区物业半年没修电梯，老人上下楼很困难")
    if step == "place":
        return
    await chat.press(uid, "路桥区")
    await chat.press(uid, "就选")
    if step == "other_party":
        return
    await chat.press(uid, "跳过")
    if step == "evidence":
        return
    await chat.press(uid, "完成")
    if step == "phone":
        return
    await chat.press(uid, "跳过")


async def test_description_empty_short_and_too_long(chat, ctx):
    await _to_step(chat, 3201, "description")
    assert "太短" in texts(await chat.send(3201, "吵"))
    assert "太短" in texts(await chat.send(3201, "          "))
    out = texts(await chat.send(3201, "吵" * 10_000))
    assert "太长" in out
    assert "太长" in texts(await chat.send(3201, "吵" * 2001))
    assert "哪里" in texts(await chat.send(3201, "吵" * 2000))  # exactly 2000 is fine
    assert await _count(ctx) == 0


async def test_wrong_phone_then_good_one(chat, ctx):
    await _to_step(chat, 3202, "phone")
    for bad in ("12345", "23812345678", "1381234567x", "电话"):
        assert "格式不对" in texts(await chat.send(3202, bad))
    msgs = await chat.send(3202, "+86 139-1234-5678")
    assert "139****5678" in texts(msgs)


async def test_location_outside_taizhou_and_unknown_address(chat, ctx):
    await _to_step(chat, 3203, "place")
    assert "不在台州市" in texts(await chat.location(3203, 31.2304, 121.4737))  # Shanghai
    assert "没能识别" in texts(await chat.send(3203, "火星基地一号"))
    assert "椒江区" in chat.buttons(3203)
    msgs = await chat.send(3203, "黄岩区北城街道劳动路8号")
    assert "黄岩区北城街道" in texts(msgs)


async def test_files_that_are_not_images(chat, ctx):
    await _to_step(chat, 3204, "evidence")
    assert "不是图片" in texts(await chat.photo(3204, b"MZ\x90\x00 this is an exe"))
    assert "不是图片" in texts(await chat.document(3204, b"plain text, not evidence", "notes.txt"))
    assert "第 1 份" in texts(await chat.document(3204, PDF, "合同.pdf"))
    assert "第 2 份" in texts(await chat.document(3204, JPEG, "scan.jpg"))
    assert "请发送照片" in texts(await chat.send(3204, "这是文字"))
    for i in range(7):
        await chat.photo(3204, JPEG + bytes([i]))
    assert "上限" in texts(chat.inbox(3204)[-2:]) and "手机号" in chat.last(3204).text


@pytest.mark.parametrize("step", ["category", "description", "place", "other_party", "evidence", "phone",
                                  "confirm"])
async def test_cancel_at_every_step(chat, ctx, step):
    await _to_step(chat, 3205, step)
    assert "已取消" in texts(await chat.send(3205, "/cancel"))
    assert await _count(ctx) == 0
    # an old intake button after cancelling does nothing
    await chat.ch.press_callback(3205, chat.ch.out[3205][-2], "din:confirm")
    assert await _count(ctx) == 0


async def test_cancel_button_on_summary(chat, ctx):
    await _to_step(chat, 3206, "confirm")
    assert "没有提交" in texts(await chat.press(3206, "取消"))
    assert await _count(ctx) == 0


async def test_edit_from_summary(chat, ctx):
    await _to_step(chat, 3207, "confirm")
    await chat.press(3207, "修改")
    await chat.press(3207, "电话")
    msgs = await chat.send(3207, "13700001111")
    assert "137****1111" in texts(msgs) and any("确认提交" in b for b in chat.buttons(3207))
    await chat.press(3207, "修改")
    await chat.press(3207, "类别")
    msgs = await chat.press(3207, "宅基地")
    assert "宅基地" in texts(msgs)
    await chat.press(3207, "确认提交")
    d = (await _all(ctx))[0]
    assert d.category == "homestead" and d.phone == "13700001111" and d.number.startswith("TZ-LQ-")


async def _all(ctx):
    async with ctx.sm() as s:
        return list(await s.scalars(select(Dispute)))


async def test_draft_survives_restart_and_continues(chat, ctx, settings):
    from backend.context import start_context
    from tests.conftest import ChatDriver

    await _to_step(chat, 3208, "place")
    await ctx.stop()
    c2 = await start_context(settings, models=False, workers=False, telegram=False, scheduler=False)
    try:
        chat2 = ChatDriver(c2)
        msgs = await chat2.send(3208, "/report")
        assert "尚未提交" in texts(msgs)
        msgs = await chat2.press(3208, "继续填写")
        assert "哪里" in texts(msgs)
        await chat2.press(3208, "天台县")
        await chat2.press(3208, "就选")
        await chat2.press(3208, "跳过")
        await chat2.press(3208, "完成")
        await chat2.press(3208, "跳过")
        msgs = await chat2.press(3208, "确认提交")
        assert "TZ-TT-" in texts(msgs)
    finally:
        await c2.stop()


async def test_complaint_text_offers_a_report_with_category(chat, ctx):
    msgs = await chat.send(3209, "隔壁装修天天吵到半夜")
    assert "邻里纠纷" in texts(msgs)
    await chat.press(3209, "是")
    msgs = texts(chat.inbox(3209)[-2:])
    assert "已记下" in msgs and "哪里" in msgs  # description kept, straight to the place
    await chat.press(3209, "椒江区")
    await chat.press(3209, "海门街道")
    await chat.press(3209, "跳过")
    await chat.press(3209, "完成")
    await chat.press(3209, "跳过")
    await chat.press(3209, "确认提交")
    d = (await _all(ctx))[0]
    assert d.category == "neighbor" and d.description == "隔壁装修天天吵到半夜"
    # the citizen may pick another category instead, or decline
    await chat.send(3210, "老板拖欠工资三个月了")
    await chat.press(3210, "换个类别")
    assert "选择纠纷类别" in chat.last(3210).text
    await chat.send(3211, "楼上漏水好几天了没人管")
    assert "不用了" in chat.buttons(3211)
    assert "随时" in texts(await chat.press(3211, "不用了"))
    # ordinary chatter is left to others
    assert "邻里纠纷" not in texts(await chat.send(3212, "你好"))


async def test_someone_elses_or_old_case_buttons(chat, ctx, staff):
    number = await report(chat, 3213)
    d = await case(ctx, number)
    # another citizen presses the case's buttons (forged callback)
    await chat.send(3214, "/start")
    m = chat.ch.out[3214][-1]
    for data in (f"dsp:view:{d.id}", f"dsp:accept:{d.id}", f"dsr:satisfied:{d.id}", "dsp:view:99999"):
        await chat.ch.press_callback(3214, m, data)
    toasts = [x.text for x in chat.ch.out[3214] if x.toast]
    assert len(toasts) == 4 and "不是您的案件" in toasts[0] and "不存在" in toasts[0] or "没有找到" in toasts[3]
    # a mediator of another unit
    await chat.ch.press_callback(staff["med2"], m, f"dsp:accept:{d.id}")
    assert "没有找到" in [x for x in chat.ch.out[staff["med2"]] if x.toast][-1].text  # not revealed (404)
    # the right mediator presses 受理 twice (old button): the second is refused clearly
    await chat.press(staff["med"], "受理")
    old = [x for x in chat.ch.out[staff["med"]] if any("受理" == l for row in x.inline for l, _ in row)][0]
    await chat.ch.press_callback(staff["med"], old, f"dsp:accept:{d.id}")
    assert "不能进行这个操作" in [x for x in chat.ch.out[staff["med"]] if x.toast][-1].text
    # the citizen cannot rate before the case is closed
    await chat.ch.press_callback(3213, m, f"dsr:satisfied:{d.id}")
    assert "不能评价" in [x for x in chat.ch.out[3213] if x.toast][-1].text
    assert (await case(ctx, number)).status == "accepted"


async def test_mediator_input_errors_keep_the_step(chat, ctx, staff):
    number = await report(chat, 3215)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "转派")
    assert "没有找到目标单位" in texts(await chat.send(staff["med"], "火星 不归我们管"))
    assert "转派" in texts(await chat.send(staff["med"], "白云街道 当事人住在白云街道"))
    d = await case(ctx, number)
    assert d.status == "transferred" and d.unit.name == "白云街道"
    assert number in chat.last(staff["med2"]).text
    await chat.press(staff["med2"], "受理")
    await chat.press(staff["med2"], "安排调解")
    assert "格式不对" in texts(await chat.send(staff["med2"], "明天下午"))
    assert "将来" in texts(await chat.send(staff["med2"], "2020-01-01 10:00 调解室"))
    assert "已安排" in texts(await chat.send(staff["med2"], "2026-12-04 09:00 白云街道调解室"))
    assert (await case(ctx, number)).status == "mediating"
