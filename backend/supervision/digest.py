"""Digests: monthly to each deputy (their items + jurisdiction-wide figures), weekly on
Monday 09:00 to each deputy and procurator with open items."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import to_local
from backend.core.i18n import gettext
from backend.core.policy import place_scope
from backend.notify.service import notify
from backend.supervision import metrics, service as svc
from backend.users.models import Role, User


def _line(item, lang: str) -> str:
    return gettext(lang, "supervision.digest_line", number=item.number, title=item.title,
                   status=svc.status_label(item.status, lang))


async def weekly(session: AsyncSession, at) -> int:
    week = to_local(at).strftime("%G-W%V")
    sent = 0
    ids = set(await svc.deputies_with_open_items(session)) | set(await svc.procurators_with_open_items(session))
    for uid in sorted(ids):
        u = await session.get(User, uid)
        if u is None or not u.active:
            continue
        items = await svc.list_items(session, u, open_only=True, limit=30)
        if not items:
            continue
        lang = u.language or "zh"
        await notify(session, u, "supervision.digest_weekly", dedupe_key=f"sup:weekly:{week}:u{u.id}",
                     n=len(items), lines="\n".join(_line(i, lang) for i in items))
        sent += 1
    return sent


def month_covered(at) -> str:
    """The month a digest sent at ``at`` reports on: the one that just ended (sent on 1 January
    2027, it covers 2026-12)."""
    first = to_local(at).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


async def monthly(session: AsyncSession, at) -> int:
    """On the 1st: every deputy with items gets last month's picture, titled with that month."""
    month = month_covered(at)
    sent = 0
    deputies = set(await svc.deputies_with_open_items(session))
    from sqlalchemy import select

    from backend.supervision.models import ItemParticipant
    deputies |= set(await session.scalars(select(ItemParticipant.user_id).where(
        ItemParticipant.confirmed.is_(True)).distinct()))
    for uid in sorted(deputies):
        u = await session.get(User, uid)
        if u is None or not u.active or Role(u.role) not in (Role.deputy, Role.official):
            continue
        items = await svc.list_items(session, u, limit=50)
        lang = u.language or "zh"
        lines = "\n".join(_line(i, lang) for i in items) or "-"
        if place_scope(u) is None:  # no jurisdiction: their items, never city-wide figures
            await notify(session, u, "supervision.digest_monthly_items", dedupe_key=f"sup:monthly:{month}:u{u.id}",
                         month=month, n=len(items), lines=lines)
            sent += 1
            continue
        m = await metrics.compute(session, u.jurisdiction)
        await notify(session, u, "supervision.digest_monthly", dedupe_key=f"sup:monthly:{month}:u{u.id}",
                     month=month, n=len(items), lines=lines, place=m["jurisdiction"] or "台州市", **_figures(m))
        sent += 1
    return sent


def _figures(m: dict) -> dict:
    return {"items_all": m["items"], "joint": m["joint_items"], "multi": m["multi_deputy_items"],
            "clue_rate": metrics.pct(m["clue_to_case_rate"]), "joint_rate": metrics.pct(m["joint_supervision_rate"]),
            "reply_rate": metrics.pct(m["reply_rate"]), "rect_rate": metrics.pct(m["rectification_rate"]),
            "avg_days": "-" if m["avg_handling_days"] is None else m["avg_handling_days"]}
