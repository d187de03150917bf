"""Markdown and PDF summaries; the PDF's CJK font is configurable and its absence is polite."""
from __future__ import annotations

import time_machine
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.core.errors import DomainError
from backend.supervision import export
from backend.supervision.models import SupervisionItem
from tests.conftest import texts
from tests.supervision.helpers import DEPUTY, PROC, local, people, propose

SAMPLE = dict(number="DB-JJ-2026-0001", title="椒江某河道排污", area="生态环境", place="椒江区", agency="-",
              status="已办结", procuratorate="椒江区", created="2026-11-03 10:00", closed="-",
              description="河道两岸企业夜间偷排。", participants=["王代表（提出人）"],
              events=[{"at": "2026-11-03 10:00", "who": "赵检察", "what": "受理", "note": "a|b"}],
              suggestions=[{"agency": "分局", "content": "停止偷排", "issued": "x", "due": "y", "reply_date": "-",
                            "reply": "-", "rectified": "-"}], rating="满意", rating_comment="")


def test_markdown_escapes_table_cells():
    md = export.to_markdown(SAMPLE)
    assert md.startswith("# DB-JJ-2026-0001 椒江某河道排污") and "| 2026-11-03 10:00 | 赵检察 | 受理 | a｜b |" in md


@pytest.mark.parametrize("font", [export._packaged_font(), "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"])
def test_pdf_with_each_known_font(font):
    if not font or not Path(font).is_file():
        pytest.skip(f"font not installed: {font}")
    pdf = export.to_pdf(SAMPLE, font_path=Path(font))
    assert pdf.startswith(b"%PDF") and b"/FontFile" in pdf


def test_no_font_is_a_domain_error(monkeypatch):
    monkeypatch.setattr(export, "find_font", lambda: None)
    with pytest.raises(DomainError) as e:
        export.to_pdf(SAMPLE)
    assert e.value.key == "supervision.err_no_font"


async def test_no_font_in_chat_is_polite_and_markdown_still_works(chat, ctx, monkeypatch):
    monkeypatch.setattr(export, "find_font", lambda: None)
    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.send(DEPUTY, f"/item {number}")
        assert "缺少中文字体" in texts(await chat.press(DEPUTY, "导出 PDF"))
        await chat.send(DEPUTY, f"/item {number}")
        msgs = await chat.press(DEPUTY, "导出 Markdown")
        assert any(m.document for m in msgs)
