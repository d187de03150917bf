"""Issue #15 for supervision: evidence reaches procurators (chat, API, exports); deadlines on the
right clock after downtime; digests titled with the period they cover; exports with real tables
and display names, current after a reopen; an appeal nobody is registered to receive is escalated."""
from __future__ import annotations

import io
import shutil
import subprocess
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from pypdf import PdfReader
from sqlalchemy import select

from backend.supervision import export
from backend.supervision.models import ItemEvent, SupervisionItem
from tests.conftest import texts
from tests.supervision.helpers import (
    CHIEF, CITIZEN, CITY_PROC, COSIGNER, DEPUTY, NUMBER, OTHER_PROC, PROC, item_text, last_seen, local, people, propose,
    settle, suggest, close_and_rate,
)

ADMIN, UNNAMED_PROC = 3501, 3104


def jpeg(color=(200, 40, 40), size=(320, 240)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


def count(chat, uid, needle):
    return sum(1 for m in chat.inbox(uid) if needle in m.text)


async def _item(ctx, number) -> SupervisionItem:
    async with ctx.sm() as s:
        return await s.scalar(select(SupervisionItem).where(SupervisionItem.number == number))


async def _propose_with_evidence(chat) -> str:
    """A proposal with a photo and a PDF document attached."""
    return await propose(chat, evidence=(jpeg(), (b"%PDF-1.4 monitoring report", "监测报告.pdf")))


# ---------------------------------------------------------------- 1. evidence reaches procurators
async def test_procurator_opens_the_evidence_in_chat_and_others_cannot(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await _propose_with_evidence(chat)
        card = texts(await chat.send(PROC, f"/item {number}"))
        assert "证据材料：2 份" in card and "📎 查看证据" in chat.buttons(PROC)
        msgs = await chat.press(PROC, "📎 查看证据")
        assert "证据材料（2 份）" in texts(msgs)
        assert [bool(m.photo) for m in msgs if m.photo or m.document] == [True, False]  # the photo, the PDF
        assert any(m.document for m in msgs)
        # a procurator of another county and a citizen press the same button: refused, nothing sent
        card_msg = next(m for m in reversed(chat.inbox(PROC)) if any("查看证据" in lb for row in m.inline for lb, _ in row))
        evidence_cb = next(d for row in card_msg.inline for lb, d in row if "查看证据" in lb)
        before = len(chat.ch.out.get(OTHER_PROC, []))
        for uid in (OTHER_PROC, CITIZEN):
            await chat.ch.press_callback(uid, card_msg, evidence_cb)
            await ctx.flush()
            assert "没有找到这个督办事项" in last_seen(chat, uid).text  # refused without revealing it
        assert not [m for m in chat.ch.out.get(OTHER_PROC, [])[before:] if m.photo or m.document]


async def test_evidence_api_serves_the_files_to_those_who_may_open_the_item(chat, ctx, api):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await _propose_with_evidence(chat)
        r = await api(PROC, f"/api/supervision/items/{number}/evidence")
        assert r.status_code == 200, r.text
        listed = r.json()
        assert [e["mime"] for e in listed] == ["image/jpeg", "application/octet-stream"]
        photo = await api(PROC, listed[0]["url"])
        assert photo.status_code == 200 and photo.content == jpeg()
        assert photo.headers["content-type"] == "image/jpeg"
        doc = await api(DEPUTY, listed[1]["url"])
        assert doc.status_code == 200 and doc.headers["content-disposition"].startswith("attachment")
        assert (await api(PROC, f"/api/supervision/items/{number}/evidence/3")).status_code == 404
        for uid in (OTHER_PROC, CITIZEN):
            assert (await api(uid, f"/api/supervision/items/{number}/evidence")).status_code in (403, 404)
            assert (await api(uid, listed[0]["url"])).status_code in (403, 404)


async def test_exports_carry_evidence_thumbnails(chat, ctx, api):
    from docx import Document

    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await _propose_with_evidence(chat)
        pdf = await api(PROC, f"/api/supervision/items/{number}/export", params={"format": "pdf"})
        if pdf.status_code == 400 and "字体" in pdf.text:
            pytest.skip("no CJK font on this machine")
        assert pdf.status_code == 200, pdf.text
        images = [img for page in PdfReader(io.BytesIO(pdf.content)).pages for img in page.images]
        assert len(images) == 1 and max(images[0].image.size) <= export.THUMB_PX
        docx = await api(PROC, f"/api/supervision/items/{number}/export", params={"format": "docx"})
        assert docx.status_code == 200
        assert len(Document(io.BytesIO(docx.content)).inline_shapes) == 1
        md = (await api(PROC, f"/api/supervision/items/{number}/export")).text
        assert "监测报告.pdf" in md


# ---------------------------------------------------------------- 4. clock, catch-up, digest titles
async def test_catch_up_after_downtime_sends_one_current_reminder_not_the_stale_series(db_settings):
    """On SQLite and PostgreSQL (where the sweep claims rows with FOR UPDATE SKIP LOCKED)."""
    settings = db_settings
    from backend.context import start_context
    from tests.conftest import ChatDriver

    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        c1 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            chat = ChatDriver(c1)
            await people(chat)
            number = await propose(chat)
            await suggest(chat, number, "2026-12-15")
            tm.move_to(local(2026, 12, 8, 17, 31))
            await settle(c1)
            assert count(chat, PROC, "还有 7 天") == 1
        finally:
            await c1.stop()  # down from 12-08 until three days after the deadline (12-15 17:30)

        tm.move_to(local(2026, 12, 18, 18, 0))
        c2 = await start_context(settings, models=False, workers=False, telegram=False)
        try:
            await settle(c2)
            got = [m.text for m in c2.channel.out.get(PROC, [])]
            assert not [x for x in got if "还有 1 天" in x]  # stale: the deadline has passed
            assert [x for x in got if "已超期" in x and "未回复" in x] == [x for x in got if "已超期 3 天" in x]
            assert len([x for x in got if "已超期 3 天" in x]) == 1
            assert sum("未在期限" in m.text for m in c2.channel.out.get(DEPUTY, [])) == 1
            await settle(c2)  # a second sweep at the same moment sends nothing more
            assert len(c2.channel.out.get(PROC, [])) == len(got)
            tm.move_to(local(2026, 12, 19, 17, 31))
            await settle(c2)
            assert sum("已超期 4 天" in m.text for m in c2.channel.out.get(PROC, [])) == 1
        finally:
            await c2.stop()


async def test_monthly_digest_sent_on_the_first_of_january_is_titled_with_december(chat, ctx):
    from scheduler.jobs.supervision import register

    with time_machine.travel(local(2026, 12, 20, 10, 0), tick=True) as tm:
        register(ctx.scheduler)
        await people(chat)
        await propose(chat)
        tm.move_to(local(2027, 1, 1, 9, 30, 5))
        await settle(ctx)
        assert count(chat, DEPUTY, "2026-12 督办月报") == 1
        assert count(chat, DEPUTY, "2027-01 督办月报") == 0


def test_supervision_jobs_run_on_hehe_timezone_whatever_the_host_zone(monkeypatch, tmp_path):
    from scheduler.factory import make_scheduler
    from scheduler.jobs.supervision import register

    monkeypatch.setenv("TZ", "UTC")  # the Docker image's host zone
    time.tzset()
    try:
        sched = make_scheduler(f"sqlite:///{tmp_path}/jobs.db", "Asia/Shanghai")
        register(sched)
    finally:
        monkeypatch.undo()
        time.tzset()
    now = local(2026, 11, 4, 10, 0)  # a Wednesday
    weekly, monthly = sched.get_job("sup-weekly-digest"), sched.get_job("sup-monthly-digest")
    assert weekly.trigger.timezone == ZoneInfo("Asia/Shanghai")
    assert weekly.trigger.get_next_fire_time(None, now) == local(2026, 11, 9, 9, 0)
    assert monthly.trigger.get_next_fire_time(None, now) == local(2026, 12, 1, 9, 30)


# ---------------------------------------------------------------- 7. exports and names
async def test_export_pdf_has_real_tables_and_docx_opens(chat, ctx, api):
    from docx import Document

    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
        await chat.send(PROC, f"/item {number}")
        await chat.press(PROC, "调查记录")
        await chat.send(PROC, "现场检查：排污口两处。")
        pdf = await api(DEPUTY, f"/api/supervision/items/{number}/export", params={"format": "pdf"})
        if pdf.status_code == 400 and "字体" in pdf.text:
            pytest.skip("no CJK font on this machine")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        reader = PdfReader(io.BytesIO(pdf.content))
        text = "".join(p.extract_text() for p in reader.pages).replace("\x00", "")  # pypdf: CID text
        assert number in text and "现场检查" in text and "赵检察" in text
        assert "｜" not in text and " | " not in text  # no text-drawn table
        drawn = b"".join(p.get_contents().get_data() for p in reader.pages)
        assert drawn.count(b" re") + drawn.count(b" l") >= 20  # cell borders drawn as a table
        if shutil.which("pdftoppm"):  # rendered as a reader would: a page with ink on it, table rules included
            from PIL import Image

            png = subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", "-"],
                                 input=pdf.content, capture_output=True, check=True).stdout
            page = Image.open(io.BytesIO(png)).convert("L")
            px, w = page.tobytes(), page.width
            dark = sum(1 for v in px if v < 128)
            assert 0.002 < dark / len(px) < 0.5
            rows = [sum(1 for v in px[y * w:(y + 1) * w] if v < 160) for y in range(page.height)]
            assert sum(1 for r in rows if r > page.width * 0.6) >= 4  # long horizontal rules: table borders

        r = await api(DEPUTY, f"/api/supervision/items/{number}/export", params={"format": "docx"})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"].endswith(f'{number}.docx"')
        doc = Document(io.BytesIO(r.content))
        cells = [[c.text for c in row.cells] for table in doc.tables for row in table.rows]
        timeline = next(t for t in doc.tables if t.rows[0].cells[0].text == "时间")
        whats = [row.cells[2].text for row in timeline.rows[1:]]
        assert whats == ["提出督办", "受理", "调查记录"]
        assert ["状态", "已受理"] in cells


async def test_people_are_shown_by_name_never_by_id(chat, ctx, api):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.as_role(UNNAMED_PROC, "procurator", "椒江区")  # a web account without a name
        await chat.send(UNNAMED_PROC, "/me")
        number = await propose(chat, cosign=str(COSIGNER))  # the co-signer given by user id
        summary = next(m.text for m in chat.inbox(DEPUTY) if "请核对督办事项" in m.text)
        assert "联名代表：钱代表" in summary and str(COSIGNER) not in summary
        await chat.press(COSIGNER, "同意联名")
        await chat.press(UNNAMED_PROC, "受理")
        assert "椒江区检察官" in item_text(chat, DEPUTY)  # the 受理 notice names the handler
        md = (await api(DEPUTY, f"/api/supervision/items/{number}/export")).text
        card = texts(await chat.send(DEPUTY, f"/item {number}"))
        for shown in (md, card, item_text(chat, DEPUTY)):
            assert f"用户{UNNAMED_PROC}" not in shown and f"#{UNNAMED_PROC}" not in shown
        assert "椒江区检察官" in md and "钱代表（联名）" in md


async def test_after_a_reopen_card_and_export_show_the_current_result_and_rating(chat, ctx, api):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.press(PROC, "受理")
        await close_and_rate(chat, number, "企业已停产整顿。", "不满意", "偷排仍在继续。")
        await chat.press(CHIEF, "重新办理")
        await chat.send(CHIEF, "重新核查。")
        md = (await api(DEPUTY, f"/api/supervision/items/{number}/export")).text
        assert "- 评价：-" in md and "- 办结结果：-" in md  # reopened: no result, no rating yet
        card = texts(await chat.send(DEPUTY, f"/item {number}"))
        assert "办结结果" not in card
        await close_and_rate(chat, number, "排污口已封堵，企业被处罚。", "满意")
        md = (await api(DEPUTY, f"/api/supervision/items/{number}/export")).text
        assert "- 办结结果：排污口已封堵，企业被处罚。" in md and "- 评价：满意" in md
        card = texts(await chat.send(DEPUTY, f"/item {number}"))
        assert "办结结果：排污口已封堵" in card and "评价：满意" in card
        assert "停产整顿" not in card.split("进展：")[0]  # the old result only on the timeline


# ---------------------------------------------------------------- 8. nobody registered to receive it
async def test_appeal_to_a_city_procuratorate_without_anyone_registered_is_escalated(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True) as tm:
        await people(chat)
        await chat.as_role(CITY_PROC, "citizen")  # nobody at the city procuratorate
        await chat.as_role(ADMIN, "admin")
        number = await propose(chat)
        await chat.press(PROC, "不予受理")
        await chat.send(PROC, "不属于检察机关管辖范围。")
        await chat.press(DEPUTY, "申请复查")
        await chat.send(DEPUTY, "污染涉及公共利益。")
        ack = item_text(chat, DEPUTY)
        assert "复查申请已记录" in ack and "没有注册的检察人员" in ack
        assert "复查申请已提交台州市人民检察院。" not in ack
        for uid in (ADMIN, CHIEF):  # told at once
            assert count(chat, uid, "尚无注册的检察人员") == 1 and number in item_text(chat, uid)
        due = (await _item(ctx, number)).acceptance_due
        tm.move_to(due + timedelta(minutes=1))
        await settle(ctx)
        for uid in (ADMIN, CHIEF):  # the deadline escalates, once
            assert count(chat, uid, "仍无注册人员") == 1
        assert count(chat, DEPUTY, "已提请管理员和检察长处理") == 1
        await settle(ctx)
        assert count(chat, ADMIN, "仍无注册人员") == 1
    async with ctx.sm() as s:
        actions = [e.action for e in await s.scalars(select(ItemEvent).order_by(ItemEvent.id))]
    assert actions[-2:] == ["unstaffed", "escalate"] or "escalate" in actions


async def test_item_for_a_county_without_procurators_reaches_the_admin_at_once(chat, ctx):
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        await chat.as_role(ADMIN, "admin")
        await propose(chat, title="路桥某工地夜间施工扰民", county="路桥区")
        assert count(chat, ADMIN, "尚无注册的检察人员") == 1 and "路桥区" in item_text(chat, ADMIN)
