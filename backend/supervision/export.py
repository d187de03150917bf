"""检e用: an item's summary as Markdown and PDF, for use in NPC sessions.

PDF needs a CJK font: ``PDF_FONT_PATH`` (a module constant, overridable by the
``HEHE_SUP_PDF_FONT`` environment variable) or the first of ``FONT_CANDIDATES`` that
exists, then the font of the PyPI package ``cvttf-notosanscjk-regular``. Without one, :func:`to_pdf` raises ``DomainError("supervision.err_no_font")``.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.core.masking import mask_personal
from backend.supervision import service as svc
from backend.supervision.models import SupervisionItem
from backend.users.models import User

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


async def summary(session: AsyncSession, item: SupervisionItem, lang: str = "zh", *, mask: bool = False) -> dict:
    """Everything shown about an item. ``mask``: phones, ID numbers and minors' names in free
    text are masked (for viewers not entitled to personal data, see ``service.sees_personal_data``)."""
    names: dict[int, str] = {}
    m = mask_personal if mask else (lambda x: x)

    async def name(uid: int | None) -> str:
        if uid is None:
            return gettext(lang, "supervision.system")
        if uid not in names:
            u = await session.get(User, uid)
            names[uid] = (u.name or f"#{u.telegram_id}") if u else "-"
        return names[uid]

    parts = []
    for p in await svc.participants(session, item):
        parts.append(f"{await name(p.user_id)}（{gettext(lang, f'supervision.kind_{p.kind}')}）")
    events = []
    for e in await svc.timeline(session, item):
        events.append({"at": fmt_local(e.at), "who": await name(e.actor_id),
                       "what": gettext(lang, f"supervision.action_{e.action}"), "note": m(e.note or "")})
    sugg = [{"agency": s.agency, "content": m(s.content), "issued": fmt_local(s.issued_at), "due": fmt_local(s.reply_due),
             "reply_date": s.reply_date or "-", "reply": m(s.reply_content or "-"),
             "rectified": gettext(lang, f"supervision.rectified_{s.rectified}") if s.rectified else "-"}
            for s in await svc.suggestions(session, item)]
    return {
        "number": item.number, "title": item.title, "area": item.area, "place": item.jurisdiction.name,
        "agency": item.agency or "-", "status": svc.status_label(item.status, lang),
        "procuratorate": item.procuratorate.name, "created": fmt_local(item.created_at),
        "closed": fmt_local(item.closed_at), "description": m(item.description), "participants": parts,
        "events": events, "suggestions": sugg,
        "rating": svc.rating_label(item.rating, lang) if item.rating else "-",
        "rating_comment": m(item.rating_comment or ""),
    }


def to_markdown(d: dict, lang: str = "zh") -> str:
    t = lambda k: gettext(lang, f"supervision.md_{k}")  # noqa: E731
    lines = [f"# {d['number']} {d['title']}", "",
             f"- {t('area')}：{d['area']}", f"- {t('place')}：{d['place']}", f"- {t('agency')}：{d['agency']}",
             f"- {t('status')}：{d['status']}", f"- {t('procuratorate')}：{d['procuratorate']}",
             f"- {t('created')}：{d['created']}", f"- {t('closed')}：{d['closed']}",
             f"- {t('deputies')}：{'、'.join(d['participants'])}",
             f"- {t('rating')}：{d['rating']} {d['rating_comment']}".rstrip(), "",
             f"## {t('description')}", "", d["description"], ""]
    if d["suggestions"]:
        lines += [f"## {t('suggestions')}", ""]
        for s in d["suggestions"]:
            lines += [f"- **{s['agency']}**（{s['issued']}，{t('due')} {s['due']}）：{s['content']}",
                      f"  - {t('reply')}（{s['reply_date']}，{s['rectified']}）：{s['reply']}"]
        lines.append("")
    lines += [f"## {t('timeline')}", "", f"| {t('when')} | {t('who')} | {t('what')} | {t('note')} |",
              "|---|---|---|---|"]
    for e in d["events"]:
        note = e["note"].replace("|", "｜").replace("\n", " ")
        lines.append(f"| {e['at']} | {e['who']} | {e['what']} | {note} |")
    return "\n".join(lines) + "\n"


def to_pdf(d: dict, lang: str = "zh", font_path: Path | None = None) -> bytes:
    from fpdf import FPDF

    font = font_path or find_font()
    if font is None:
        raise DomainError("supervision.err_no_font")
    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    kw = {"collection_font_number": COLLECTION_FACE.get(Path(font).name, 0)} \
        if str(font).lower().endswith(".ttc") else {}
    pdf.add_font("cjk", "", str(font), **kw)
    pdf.set_font("cjk", size=16)
    w = pdf.epw
    pdf.multi_cell(w, 9, f"{d['number']} {d['title']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    for line in to_markdown(d, lang).splitlines()[2:]:
        if line.startswith("## "):
            pdf.ln(2)
            pdf.set_font("cjk", size=13)
            pdf.multi_cell(w, 8, line[3:], new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("cjk", size=11)
        elif line.startswith("|---"):
            continue
        elif line.strip():
            pdf.multi_cell(w, 6, line.replace("**", "").strip("| ").replace(" | ", "  ｜  "),
                           new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
