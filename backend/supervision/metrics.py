"""检e用 figures, as Taizhou reports them.

Definitions (documented in docs/supervision.md):
- joint_items: items the procuratorate took into joint supervision (accepted or registered as a clue);
- multi_deputy_items: items followed by two or more deputies / the liaison (联合督办);
- clue_to_case_rate: clues that were later filed as cases (立案) / clues;
- joint_supervision_rate: items taken into joint supervision / items decided (taken + finally declined);
- reply_rate: 检察建议 answered by the agency / 检察建议 issued;
- rectification_rate: replies with rectified yes or partly / replies;
- avg_handling_days: mean days from proposal to closing, over closed items.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.supervision.models import ItemParticipant, Suggestion, SupervisionItem
from backend.supervision.service import HANDLED_STATES
from backend.users.models import Jurisdiction


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


async def compute(session: AsyncSession, jurisdiction: Jurisdiction | None = None) -> dict:
    q = select(SupervisionItem)
    if jurisdiction is not None:
        q = q.join(Jurisdiction, Jurisdiction.id == SupervisionItem.jurisdiction_id).where(
            Jurisdiction.path.startswith(jurisdiction.path))
    items = list(await session.scalars(q))
    ids = [i.id for i in items]
    taken = [i for i in items if i.status in HANDLED_STATES]
    declined_final = [i for i in items if i.status == "declined_final"
                      or (i.status == "declined" and not i.appealed)]
    clues = [i for i in items if i.was_clue]
    cases = [i for i in clues if i.case_filed]
    closed = [i for i in items if i.closed_at is not None and i.status == "closed"]
    sugg = list(await session.scalars(select(Suggestion).where(Suggestion.item_id.in_(ids)))) if ids else []
    replied = [s for s in sugg if s.replied_at is not None]
    rectified = [s for s in replied if s.rectified in ("yes", "partly")]
    multi = 0
    if ids:
        counts = await session.execute(
            select(ItemParticipant.item_id, func.count(ItemParticipant.id))
            .where(ItemParticipant.item_id.in_(ids), ItemParticipant.confirmed.is_(True))
            .group_by(ItemParticipant.item_id))
        multi = sum(1 for _, n in counts if n >= 2)
    days = [(i.closed_at - i.created_at).total_seconds() / 86400 for i in closed]
    return {
        "jurisdiction": jurisdiction.name if jurisdiction else None,
        "items": len(items),
        "joint_items": len(taken),
        "multi_deputy_items": multi,
        "clues": len(clues),
        "cases_filed": len(cases),
        "clue_to_case_rate": _rate(len(cases), len(clues)),
        "joint_supervision_rate": _rate(len(taken), len(taken) + len(declined_final)),
        "suggestions": len(sugg),
        "replies": len(replied),
        "reply_rate": _rate(len(replied), len(sugg)),
        "rectification_rate": _rate(len(rectified), len(replied)),
        "closed": len(closed),
        "avg_handling_days": round(sum(days) / len(days), 1) if days else None,
    }


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"
