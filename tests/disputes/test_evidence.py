"""Evidence staff can open (issue 15, finding 1): a button on the case card sends the files to
people allowed to see the case, the API lists and serves them with thumbnails, every read is
audited, and nobody else gets them."""
from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from backend.users.models import AuditLog, User
from tests.conftest import bearer, ChatDriver, texts
from tests.disputes.conftest import PDF, case


def real_jpeg(w: int = 1200, h: int = 900) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 120, 40)).save(out, format="JPEG")
    return out.getvalue()


async def _report_with_files(chat, uid: int) -> str:
    await chat.send(uid, "/report")
    await chat.press(uid, "邻里纠纷")
    await chat.send(uid, "楼上漏水把我家天花板泡坏了，对方不承认，有照片和维修报价单")
    await chat.press(uid, "椒江区")
    await chat.press(uid, "海门街道")
    await chat.press(uid, "跳过")
    await chat.photo(uid, real_jpeg())
    await chat.document(uid, PDF, "维修报价单.pdf")
    await chat.press(uid, "完成")
    await chat.press(uid, "跳过")
    return texts(await chat.press(uid, "确认提交")).split("案件编号：")[1].split()[0]


async def _audited(ctx, d) -> int:
    async with ctx.sm() as s:
        return await s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "dispute.evidence_read", AuditLog.subject == f"dispute:{d.id}"))


async def test_the_mediator_opens_the_evidence_from_the_case_card(chat, ctx, staff):
    number = await _report_with_files(chat, 3701)
    d = await case(ctx, number)
    await chat.send(staff["med"], "/queue")
    card = texts(await chat.press(staff["med"], number))
    assert "证据：2 份" in card and any("查看证据" in b for b in chat.buttons(staff["med"]))
    sent = await chat.press(staff["med"], "查看证据")
    assert len(sent) == 2 and sent[0].photo and sent[1].document
    assert chat.ch.get_file(sent[1].document).data == PDF
    assert await _audited(ctx, d) == 1


async def test_nobody_else_gets_the_evidence(chat, ctx, staff):
    number = await _report_with_files(chat, 3702)
    d = await case(ctx, number)
    await chat.send(3703, "/start")
    m = chat.ch.out[3703][-1]
    await chat.ch.press_callback(3703, m, f"dsp:evidence:{d.id}")
    assert "没有找到这个案件" in [x for x in chat.ch.out[3703] if x.toast][-1].text  # refused, not revealed
    assert not any(x.photo or x.document for x in chat.ch.out[3703])
    await chat.as_role(3704, "official", "黄岩区")
    await chat.ch.press_callback(3704, m, f"dsp:evidence:{d.id}")
    assert not any(x.photo or x.document for x in chat.ch.out.get(3704, []))
    assert await _audited(ctx, d) == 0


async def test_the_api_lists_serves_and_thumbnails_the_evidence(api):
    med = await api.user(5001, "mediator", "椒江区/海门街道")
    other = await api.user(5009, "mediator", "椒江区/白云街道")
    number = await _report_with_files(ChatDriver(api.ctx), 3705)
    async with api.ctx.sm() as s:
        owner = await s.scalar(select(User).where(User.telegram_id == 3705))
    await bearer(api.ctx, owner.id)
    cid = (await case(api.ctx, number)).id
    r = await api.client.get(f"/api/disputes/{cid}/evidence", headers=api.auth(med))
    assert r.status_code == 200
    files = r.json()
    assert [f["mime"] for f in files] == ["image/jpeg", "application/pdf"]
    assert files[0]["thumbnail_url"] and files[1]["thumbnail_url"] is None
    r = await api.client.get(files[1]["url"], headers=api.auth(owner))
    assert r.status_code == 200 and r.content == PDF and r.headers["content-type"] == "application/pdf"
    r = await api.client.get(files[0]["thumbnail_url"], headers=api.auth(med))
    thumb = Image.open(io.BytesIO(r.content))
    assert r.status_code == 200 and thumb.format == "JPEG" and max(thumb.size) <= 320
    r = await api.client.get(f"{files[1]['url']}/thumbnail", headers=api.auth(med))
    assert r.status_code == 404
    for url in (f"/api/disputes/{cid}/evidence", files[0]["url"], files[0]["thumbnail_url"]):
        assert (await api.client.get(url, headers=api.auth(other))).status_code == 404  # not revealed
        assert (await api.client.get(url)).status_code == 401
    r = await api.client.get(f"/api/disputes/{cid}", headers=api.auth(med))
    assert r.json()["actions"] == ["accept", "transfer", "escalate", "note"]
    assert (await api.client.get(f"/api/disputes/{cid}", headers=api.auth(owner))).json()["actions"] == []


async def test_the_case_export_carries_the_evidence_as_thumbnails(api):
    from docx import Document

    med = await api.user(5001, "mediator", "椒江区/海门街道")
    other = await api.user(5009, "mediator", "椒江区/白云街道")
    chat = ChatDriver(api.ctx)
    number = await _report_with_files(chat, 3706)
    await chat.press(5001, "受理")
    async with api.ctx.sm() as s:
        owner = await s.scalar(select(User).where(User.telegram_id == 3706))
    await bearer(api.ctx, owner.id)
    d = await case(api.ctx, number)
    r = await api.client.get(f"/api/disputes/{d.id}/export", headers=api.auth(med))
    assert r.status_code == 200 and r.headers["content-type"].endswith("wordprocessingml.document")
    doc = Document(io.BytesIO(r.content))
    cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
    assert number in doc.paragraphs[0].text and "u5001" in cells  # names, never ids
    assert "已受理" in cells and any("维修报价单.pdf" in p.text for p in doc.paragraphs)
    assert len(doc.inline_shapes) == 1 and doc.inline_shapes[0].width <= 6 * 360000  # one thumbnail, 6 cm
    mine = Document(io.BytesIO((await api.client.get(f"/api/disputes/{d.id}/export", headers=api.auth(owner))).content))
    assert not any("风险" in c.text for t in mine.tables for row in t.rows for c in row.cells)
    assert (await api.client.get(f"/api/disputes/{d.id}/export", headers=api.auth(other))).status_code == 404
    assert await _audited(api.ctx, d) == 2
