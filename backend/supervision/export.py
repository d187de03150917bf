"""检e用: an item's summary as Markdown, PDF and DOCX, for use in NPC sessions.

PDF needs a CJK font: ``PDF_FONT_PATH`` (a module constant, overridable by the
``HEHE_SUP_PDF_FONT`` environment variable) or the first of ``FONT_CANDIDATES`` that
exists, then the font of the PyPI package ``cvttf-notosanscjk-regular``. Without one, :func:`to_pdf` raises ``DomainError("supervision.err_no_font")``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.errors import DomainError
from backend.core.files import read_blob
from backend.core.i18n import gettext
from backend.core.masking import mask_personal
from backend.core.storage import ObjectStore
from backend.supervision import service as svc
from backend.supervision.models import SupervisionItem

PDF_FONT_PATH: str | None = os.environ.get("HEHE_SUP_PDF_FONT") or None
FONT_CANDIDATES = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian fonts-noto-cjk (CI installs it)
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
]
# Face inside a font collection: Noto CJK .ttc files hold JP, KR, SC, TC, HK — SC is number 2.
COLLECTION_FACE = {"NotoSansCJK-Regular.ttc": 2}


def _packaged_font() -> str | None:
    """The Noto Sans CJK font shipped by the PyPI package ``cvttf-notosanscjk-regular`` (OFL)."""
    try:
        import cvttf_NotoSansCJK_Regular as pkg
        return pkg.get_TTF_path()
    except Exception:  # noqa: BLE001 - package absent or broken: try system fonts
        return None


def find_font() -> Path | None:
    for p in ([PDF_FONT_PATH] if PDF_FONT_PATH else []) + FONT_CANDIDATES + [_packaged_font()]:
        if p and Path(p).is_file():
            return Path(p)
    return None


THUMB_PX = 240  # longest side of an evidence thumbnail in the exports


def thumbnail(data: bytes) -> bytes | None:
    """A small JPEG of an evidence photo (None for anything Pillow cannot read as an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            im.convert("RGB").save(out, "JPEG", quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


async def summary(session: AsyncSession, item: SupervisionItem, lang: str = "zh", *, mask: bool = False,
                  store: ObjectStore | None = None) -> dict:
    """Everything shown about an item, people by their display names. ``mask``: phones, ID numbers
    and minors' names in free text are masked (for viewers not entitled to personal data, see
    ``service.sees_personal_data``). With ``store`` the evidence photos get thumbnails."""
    names: dict[int | None, str] = {}
    m = mask_personal if mask else (lambda x: x)

    async def name(uid: int | None) -> str:
        if uid not in names:
            names[uid] = await svc.display_name(session, uid, lang)
        return names[uid]

    parts = [f"{await name(p.user_id)}（{gettext(lang, f'supervision.kind_{p.kind}')}）"
             for p in await svc.participants(session, item)]
    events = [{"at": fmt_local(e.at), "who": await name(e.actor_id),
               "what": gettext(lang, f"supervision.action_{e.action}"), "note": m(e.note or "")}
              for e in await svc.timeline(session, item)]
    sugg = [{"agency": s.agency, "content": m(s.content), "issued": fmt_local(s.issued_at), "due": fmt_local(s.reply_due),
             "reply_date": s.reply_date or "-", "reply": m(s.reply_content or "-"),
             "rectified": gettext(lang, f"supervision.rectified_{s.rectified}") if s.rectified else "-"}
            for s in await svc.suggestions(session, item)]
    result = await svc.current_result(session, item)
    evidence = []
    for n, f in enumerate(await svc.files_of(session, svc.OWNER_KIND, item.id), 1):
        thumb = None
        if store is not None and (data := await read_blob(store, f.sha256)) is not None:
            thumb = thumbnail(data)
        evidence.append({"n": n, "name": f.filename or f"#{n}", "size": f.size, "thumb": thumb})
    closed = item.status == svc.S.closed
    return {
        "number": item.number, "title": item.title, "area": item.area, "place": item.jurisdiction.name,
        "agency": item.agency or "-", "status": svc.status_label(item.status, lang),
        "procuratorate": item.procuratorate.name, "created": fmt_local(item.created_at),
        "closed": fmt_local(item.closed_at), "description": m(item.description), "participants": parts,
        "events": events, "suggestions": sugg,
        "result": m(result) if result else "-",
        "rating": svc.rating_label(item.rating, lang) if closed and item.rating else "-",
        "rating_comment": m(item.rating_comment or "") if closed else "",
        "evidence": evidence,
    }


def _fields(d: dict, lang: str) -> list[tuple[str, str]]:
    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    return [(t("area"), d["area"]), (t("place"), d["place"]), (t("agency"), d["agency"]),
            (t("status"), d["status"]), (t("procuratorate"), d["procuratorate"]), (t("created"), d["created"]),
            (t("closed"), d["closed"]), (t("result"), d.get("result", "-")),
            (t("rating"), f"{d['rating']} {d['rating_comment']}".strip()),
            (t("deputies"), "、".join(d["participants"]))]


def _columns(lang: str) -> tuple[list[str], list[str]]:
    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    return ([t("agency"), t("issued"), t("due"), t("content"), t("reply_date"), t("rectified"), t("reply")],
            [t("when"), t("who"), t("what"), t("note")])


def _sugg_row(s: dict) -> list[str]:
    return [s["agency"], s["issued"], s["due"], s["content"], s["reply_date"], s["rectified"], s["reply"]]


def to_markdown(d: dict, lang: str = "zh") -> str:
    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    lines = [f"# {d['number']} {d['title']}", ""] + [f"- {k}：{v}" for k, v in _fields(d, lang)]
    lines += ["", f"## {t('description')}", "", d["description"], ""]
    if d["suggestions"]:
        lines += [f"## {t('suggestions')}", ""]
        for s in d["suggestions"]:
            lines += [f"- **{s['agency']}**（{s['issued']}，{t('due')} {s['due']}）：{s['content']}",
                      f"  - {t('reply')}（{s['reply_date']}，{s['rectified']}）：{s['reply']}"]
        lines.append("")
    if d.get("evidence"):
        lines += [f"## {t('evidence')}", ""] + [f"{e['n']}. {e['name']}" for e in d["evidence"]] + [""]
    lines += [f"## {t('timeline')}", "", f"| {t('when')} | {t('who')} | {t('what')} | {t('note')} |",
              "|---|---|---|---|"]
    for e in d["events"]:
        note = e["note"].replace("|", "｜").replace("\n", " ")
        lines.append(f"| {e['at']} | {e['who']} | {e['what']} | {note} |")
    return "\n".join(lines) + "\n"


def to_pdf(d: dict, lang: str = "zh", font_path: Path | None = None) -> bytes:
    """A4, with real tables (fpdf2): the item's fields, the suggestions, the timeline, and the
    evidence photos as thumbnails."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    font = font_path or find_font()
    if font is None:
        raise DomainError("supervision.err_no_font")
    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    kw = {"collection_font_number": COLLECTION_FACE.get(Path(font).name, 0)} \
        if str(font).lower().endswith(".ttc") else {}
    pdf.add_font("cjk", "", str(font), **kw)
    head = FontFace(fill_color=(230, 230, 230))

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font("cjk", size=13)
        pdf.multi_cell(pdf.epw, 8, text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=9)

    pdf.set_font("cjk", size=16)
    pdf.multi_cell(pdf.epw, 9, f"{d['number']} {d['title']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=9)
    with pdf.table(col_widths=(1, 4), first_row_as_headings=False, line_height=5.5) as table:
        for k, v in _fields(d, lang):
            table.row([k, v])
    heading(t("description"))
    pdf.multi_cell(pdf.epw, 5.5, d["description"], new_x="LMARGIN", new_y="NEXT")
    sugg_cols, event_cols = _columns(lang)
    if d["suggestions"]:
        heading(t("suggestions"))
        with pdf.table(col_widths=(3, 2.4, 2.4, 4, 2, 1.6, 4), headings_style=head, line_height=5) as table:
            for row in [sugg_cols] + [_sugg_row(s) for s in d["suggestions"]]:
                table.row(row)
    heading(t("timeline"))
    with pdf.table(col_widths=(2.6, 2, 2.4, 6), headings_style=head, line_height=5) as table:
        for row in [event_cols] + [[e["at"], e["who"], e["what"], e["note"]] for e in d["events"]]:
            table.row(row)
    if d.get("evidence"):
        heading(t("evidence"))
        _pdf_thumbnails(pdf, d["evidence"])
    return bytes(pdf.output())


def _pdf_thumbnails(pdf, evidence: list[dict], size: float = 40) -> None:
    """Thumbnails four to a row, each captioned; files without one are listed by name."""
    x0, per_row = pdf.l_margin, max(1, int(pdf.epw // (size + 5)))
    for i, e in enumerate(evidence):
        if i % per_row == 0:
            if i:
                pdf.ln(size + 8)
            if pdf.will_page_break(size + 8):
                pdf.add_page()
            y = pdf.get_y()
        x = x0 + (i % per_row) * (size + 5)
        if e["thumb"]:
            pdf.image(io.BytesIO(e["thumb"]), x=x, y=y, w=size, h=size, keep_aspect_ratio=True)
        pdf.set_xy(x, y + size + 1)
        pdf.cell(size, 5, f"{e['n']}. {e['name']}"[:24])
    pdf.ln(size + 8)


def to_docx(d: dict, lang: str = "zh") -> bytes:
    """The same summary as a Word document (python-docx): fields, suggestions and timeline as
    tables, evidence photos as thumbnails."""
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt

    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.size = Pt(10.5)
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    doc.add_heading(f"{d['number']} {d['title']}", level=1)

    def table(rows: list[list[str]], header: bool = True) -> None:
        tb = doc.add_table(rows=0, cols=len(rows[0]))
        tb.style = "Table Grid"
        for r, row in enumerate(rows):
            cells = tb.add_row().cells
            for c, value in enumerate(row):
                cells[c].text = str(value)
                if header and r == 0:
                    for run in cells[c].paragraphs[0].runs:
                        run.bold = True

    table([[k, v] for k, v in _fields(d, lang)], header=False)
    doc.add_heading(t("description"), level=2)
    doc.add_paragraph(d["description"])
    sugg_cols, event_cols = _columns(lang)
    if d["suggestions"]:
        doc.add_heading(t("suggestions"), level=2)
        table([sugg_cols] + [_sugg_row(s) for s in d["suggestions"]])
    doc.add_heading(t("timeline"), level=2)
    table([event_cols] + [[e["at"], e["who"], e["what"], e["note"]] for e in d["events"]])
    if d.get("evidence"):
        doc.add_heading(t("evidence"), level=2)
        for e in d["evidence"]:
            if e["thumb"]:
                doc.add_picture(io.BytesIO(e["thumb"]), width=Cm(4))
            doc.add_paragraph(f"{e['n']}. {e['name']}")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


FORMATS = {"md": ("text/markdown; charset=utf-8", lambda d, lang: to_markdown(d, lang).encode("utf-8")),
           "pdf": ("application/pdf", to_pdf),
           "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", to_docx)}


def render(d: dict, fmt: str, lang: str = "zh") -> bytes:
    return FORMATS[fmt][1](d, lang)
