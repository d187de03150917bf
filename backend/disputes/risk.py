"""Four-colour risk grade (预警研判) from transparent rules; every grade lists its reasons.

Points: category base risk; escalation words +3; ≥N parties (群体性) +2; repeat reports
about the same people or place within 90 days +1; overdue +1. ≥3 red, 2 yellow, 1 blue,
0 green (thresholds in config.toml). Reasons are stored as ``{"code", "detail"}`` and
rendered with ``disputes.risk_<code>``.
"""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.disputes import config
from backend.disputes.models import Dispute

GRADES = ("red", "yellow", "blue", "green")
_WHO = r"(?:个|位|名)?\s*(?:人|户|名|家|位|工友|村民|业主|员工|工人|住户|群众|农民工)"
_COUNT = re.compile(r"(\d{1,4})\s*多?\s*" + _WHO)
_CN_COUNT = re.compile(r"(几十|上百|[一二两三四五六七八九十百]{1,4})\s*多?\s*" + _WHO)
_DIGIT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def cn_number(s: str) -> int:
    """二十 → 20, 十五 → 15, 三百 → 300, 几十 → 20, 上百 → 100."""
    if s == "几十":
        return 20
    if s == "上百":
        return 100
    total, cur = 0, 0
    for ch in s:
        if ch in _DIGIT:
            cur = _DIGIT[ch]
        elif ch == "十":
            total += (cur or 1) * 10
            cur = 0
        elif ch == "百":
            total += (cur or 1) * 100
            cur = 0
    return total + cur


def count_parties(description: str, other_party: str | None) -> int:
    """The case's parties: the reporter + each named other party, or a number stated in the text."""
    n = 1 + (len([p for p in re.split(r"[、,，;；和与及]", other_party or "") if p.strip()]) or 1)
    for text in (description, other_party or ""):
        for m in _COUNT.finditer(text):
            n = max(n, int(m.group(1)))
        for m in _CN_COUNT.finditer(text):
            n = max(n, cn_number(m.group(1)))
    return n


def grade_of(score: int) -> str:
    cfg = config.get()
    if score >= cfg.red:
        return "red"
    if score >= cfg.yellow:
        return "yellow"
    if score >= cfg.blue:
        return "blue"
    return "green"


async def assess(session: AsyncSession, d: Dispute) -> tuple[str, list[dict]]:
    cfg = config.get()
    cat = cfg.category(d.category)
    score, reasons = 0, []
    if cat.risk:
        score += cat.risk
        reasons.append({"code": "category", "detail": cat.zh, "points": cat.risk})
    text = f"{d.description} {d.other_party or ''}"
    words = [w for w in cfg.escalation_words if w in text]
    if words:
        score += 3
        reasons.append({"code": "words", "detail": "、".join(words), "points": 3})
    if (d.parties or 0) >= cfg.group_parties:
        score += 2
        reasons.append({"code": "group", "detail": str(d.parties), "points": 2})
    since = d.created_at - timedelta(days=cfg.repeat_days)
    same = [and_(Dispute.place_id == d.place_id, Dispute.category == d.category)]
    if d.citizen_id is not None:
        same.append(Dispute.citizen_id == d.citizen_id)
    if d.other_party:
        same.append(Dispute.other_party == d.other_party)
    q = select(func.count(Dispute.id)).where(Dispute.created_at >= since, or_(*same))
    if d.id is not None:
        q = q.where(Dispute.id != d.id)
    repeats = await session.scalar(q) or 0
    if repeats:
        score += 1
        reasons.append({"code": "repeat", "detail": str(repeats), "points": 1})
    if d.overdue:
        score += 1
        reasons.append({"code": "overdue", "detail": "", "points": 1})
    return grade_of(score), reasons
