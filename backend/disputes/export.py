"""A case as a Word document (DOCX, python-docx): the card, the timeline with the names of the
people who acted, and the evidence — images as thumbnails, other files listed. What a viewer
may not see stays out, exactly as on the card (masked text and phone, no risk grade for the
reporter); the export is a read of the evidence and is audited like one."""
from __future__ import annotations

import io

from docx import Document
from docx.shared import Cm
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local
from backend.core.i18n import gettext
from backend.core.storage import ObjectStore
from backend.disputes import config, risk, service
from backend.disputes.models import Dispute
from backend.users.models import User

THUMB_WIDTH = Cm(6)


async def _name(session: AsyncSession, user_id: int | None, lang: str) -> str:
    u = await session.get(User, user_id) if user_id else None
    return (u.name or "-") if u else gettext(lang, "disputes.system")


async def _fields(session: AsyncSession, d: Dispute, viewer: User, lang: str) -> list[tuple[str, str]]:
    def t(key: str, **kw) -> str:
        return gettext(lang, key, **kw)

    outcome = "-"
    if d.outcome == "success":
        outcome = f"{t('disputes.status_resolved')}：{service.text_for(viewer, d, d.agreement)}"
    elif d.outcome == "failed":
        outcome = f"{t('disputes.status_failed')} → {t(f'disputes.referral_{d.referral}')}"
    rows = [("export_status", t(f"disputes.status_{d.status}")),
            ("export_category", config.get().category(d.category).name(lang)),
            ("export_place", d.place.name + (f"（{d.address}）" if d.address else "")),
            ("export_unit", d.unit.name), ("export_mediator", await _name(session, d.mediator_id, lang)),
            ("export_other_party", d.other_party or "-"), ("export_phone", service.phone_for(viewer, d)),
            ("export_description", service.text_for(viewer, d, d.description)),
            ("export_deadlines", f"{fmt_local(d.accept_due)} / {fmt_local(d.resolve_due)}"),
            ("export_outcome", outcome),
            ("export_rating", t(f"disputes.rating_{d.rating}") if d.rating else "-")]
    if service.sees_risk(viewer, d):
        rows.append(("export_risk", f"{t(f'disputes.risk_{d.risk}')} {risk.describe(d.risk_reasons, lang)}"))
    return [(t(f"disputes.{k}"), v) for k, v in rows]


def _table(doc, header: list[str], rows: list[list[str]]) -> None:
    table = doc.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header):
        cell.text = text
    for row in rows:
        for cell, text in zip(table.add_row().cells, row):
            cell.text = text


async def to_docx(session: AsyncSession, d: Dispute, viewer: User, store: ObjectStore, lang: str = "zh") -> bytes:
    def t(key: str, **kw) -> str:
        return gettext(lang, key, **kw)

    files = await service.evidence_files(session, d, viewer, store)  # checks the viewer, audits
    doc = Document()
    doc.add_heading(t("disputes.export_title", number=d.number), level=1)
    _table(doc, [t("disputes.export_field"), t("disputes.export_value")],
           [[k, v] for k, v in await _fields(session, d, viewer, lang)])
    doc.add_heading(t("disputes.timeline_title").rstrip("：:"), level=2)
    _table(doc, [t("disputes.export_when"), t("disputes.export_action"), t("disputes.export_actor"),
                 t("disputes.export_note")],
           [[fmt_local(ev.at), t(f"disputes.action_{ev.action}"), await _name(session, ev.actor_id, lang),
             service.text_for(viewer, d, ev.note) if ev.note and ev.action not in ("create", "overdue") else ""]
            for ev in await service.timeline(session, d)])
    doc.add_heading(t("disputes.export_evidence", n=len(files)), level=2)
    for i, (f, data) in enumerate(files, start=1):
        thumb = service.thumbnail(data, f.mime)
        if thumb is not None:
            doc.add_picture(io.BytesIO(thumb), width=THUMB_WIDTH)
        doc.add_paragraph(t("disputes.export_file", i=i, name=f.filename or f.mime, kb=max(1, f.size // 1024)))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
