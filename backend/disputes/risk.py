"""Four-colour risk grade (预警研判) from transparent, measured rules; every grade lists its
reasons in words a person reads.

Points: the category's base risk; phrases from the reviewed lists in ``config.toml``
(``[risk.phrases]``: violence or self-harm +3, a threat +2, collective action +2, a fight +1,
petitioning +1, death or serious injury +1 — each list counts once); a stated number of
people ≥ ``group_parties`` +1, ≥ ``crowd_parties`` +2; a repeat (same parties, or same place
and category, within ``repeat_days``) +1; a missed deadline +1. ≥3 red, 2 yellow, 1 blue,
0 green. The rules were tuned on the dev half of ``data/risk_labelled.csv``; precision and
recall of "red" on its test half are in docs/disputes.md (``python -m backend.disputes.risk_eval``).

Phrases match whole: a benign compound that contains one (砍价, 跳楼价, 拼命加班 …, the list
``benign``) is blanked out first, and a phrase right after a negation (不会上访) does not count.
People are counted only from phrases that state a number of people ("二十多个工友", "30户",
"十几人"); numbers of rooms, months or money ("602住户", "三个月", "8600元") are not people.
"""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.i18n import gettext
from backend.disputes import config
from backend.disputes.models import Dispute

GRADES = ("red", "yellow", "blue", "green")
_NUM = r"(\d{1,5}|[一二两三四五六七八九十百千几]{1,5}|上百|上千)"
_QUAL = r"(?:多|余|来|几)?"
_PEOPLE = (r"(?:人|工友|村民|业主|员工|工人|住户|群众|农民工|家属|会员|商户|租户|职工|学生|老人|"
           r"乡亲|居民|群众|同事|户人家|名)")
# a number, then a measure word that counts people: 个/位/名 + a people noun, or 人/户/家/名/位 itself
_COUNT = re.compile(_NUM + _QUAL + r"\s*(?:(?:个|位|名)" + _PEOPLE + r"|人|户|家|名|位)")
_NOT_PEOPLE_BEFORE = ("第", "楼上", "楼下", "隔壁", "对门", "号", "栋", "幢", "单元", "室")
_NEGATION = ("不会", "不想", "不要", "没有", "不敢", "不准备", "不打算")
_DIGIT = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
KIND_POINTS = {"violence": 3, "threat": 2, "mass": 2, "fight": 1, "petition": 1, "harm": 1}


def cn_number(s: str) -> int:
    """二十 → 20, 十五 → 15, 三百 → 300, 几十 → 20, 十几 → 10, 上百 → 100, "40" → 40."""
    if s.isdigit():
        return int(s)
    if s in ("几十", "上百", "上千"):
        return {"几十": 20, "上百": 100, "上千": 1000}[s]
    total, cur = 0, 0
    for ch in s:
        if ch in _DIGIT:
            cur = _DIGIT[ch]
        elif ch in "十百千":
            total += (cur or 1) * {"十": 10, "百": 100, "千": 1000}[ch]
            cur = 0
        else:  # 几: "二十几" → 20
            cur = 0
    return total + cur


def stated_people(text: str) -> int:
    """The largest number of people a phrase in ``text`` states (0 if none does)."""
    best = 0
    for m in _COUNT.finditer(text or ""):
        before = text[max(0, m.start() - 2):m.start()]
        if any(before.endswith(w) for w in _NOT_PEOPLE_BEFORE):
            continue  # 第3位, 楼上602户: an order or a room, not a crowd
        best = max(best, cn_number(m.group(1)))
    return best


def count_parties(description: str, other_party: str | None) -> int:
    """The case's parties: the reporter + each named other party, or a number of people stated."""
    named = 1 + (len([p for p in re.split(r"[、,，;；和与及]", other_party or "") if p.strip()]) or 1)
    return max(named, stated_people(description), stated_people(other_party or ""))


def find_phrases(text: str) -> dict[str, list[str]]:
    """The reviewed phrases found in ``text``, by kind (violence, threat, mass, fight, petition, harm)."""
    cfg = config.get()
    clean = text or ""
    for benign in cfg.benign_phrases:
        clean = clean.replace(benign, "　" * len(benign))
    found: dict[str, list[str]] = {}
    for kind, phrases in cfg.phrases.items():
        for p in phrases:
            for m in re.finditer(re.escape(p), clean):
                if any(clean[max(0, m.start() - 4):m.start()].endswith(n) for n in _NEGATION):
                    continue
                found.setdefault(kind, [])
                if p not in found[kind]:
                    found[kind].append(p)
                break
    return found


def grade_of(score: int) -> str:
    cfg = config.get()
    if score >= cfg.red:
        return "red"
    if score >= cfg.yellow:
        return "yellow"
    if score >= cfg.blue:
        return "blue"
    return "green"


def grade_text(category: str, description: str, other_party: str | None = None,
               parties: int | None = None) -> tuple[int, list[dict]]:
    """Points and reasons from what the report says (no history): the part the labelled set measures."""
    cfg = config.get()
    cat = cfg.category(category)
    score, reasons = 0, []
    if cat.risk:
        score += cat.risk
        reasons.append({"code": "category", "detail": cat.zh, "points": cat.risk})
    for kind, words in find_phrases(f"{description} {other_party or ''}").items():
        pts = KIND_POINTS.get(kind, 1)
        score += pts
        reasons.append({"code": "words", "kind": kind, "detail": "、".join(words), "points": pts})
    n = parties if parties is not None else count_parties(description, other_party)
    if n >= cfg.group_parties:
        pts = 2 if n >= cfg.crowd_parties else 1
        score += pts
        reasons.append({"code": "group", "detail": str(n), "points": pts})
    return score, reasons


def grade_description(category: str, description: str, other_party: str | None = None) -> str:
    return grade_of(grade_text(category, description, other_party)[0])


def _norm(name: str | None) -> str:
    return re.sub(r"\s+", "", name or "")


async def repeats(session: AsyncSession, d: Dispute) -> int:
    """Earlier reports within the window about the same thing: the same parties (this citizen
    against the same other party, or anyone against the same named other party), or the same
    place and category. Another report by the same citizen about something else is no repeat."""
    cfg = config.get()
    since = d.created_at - timedelta(days=cfg.repeat_days)
    same = [and_(Dispute.place_id == d.place_id, Dispute.category == d.category)]
    if _norm(d.other_party):
        same.append(Dispute.other_party == d.other_party)
    q = select(func.count(Dispute.id)).where(Dispute.created_at >= since, Dispute.created_at <= d.created_at,
                                             or_(*same))
    if d.id is not None:
        q = q.where(Dispute.id != d.id)
    return await session.scalar(q) or 0


async def assess(session: AsyncSession, d: Dispute) -> tuple[str, list[dict]]:
    cfg = config.get()
    score, reasons = grade_text(d.category, d.description, d.other_party, d.parties)
    n = await repeats(session, d)
    if n:
        score += 1
        reasons.append({"code": "repeat", "detail": str(n), "points": 1, "days": cfg.repeat_days})
    if d.overdue:
        score += 1
        reasons.append({"code": "overdue", "detail": "", "points": 1})
    return grade_of(score), reasons


def describe(reasons: list[dict] | None, lang: str = "zh") -> str:
    """The reasons as a person reads them ("出现暴力或自伤言辞：砍死；群体性：约 20 人")."""
    parts = []
    for r in reasons or []:
        key = f"disputes.risk_words_{r['kind']}" if r.get("code") == "words" and r.get("kind") else \
            f"disputes.risk_{r.get('code')}"
        parts.append(gettext(lang, key, detail=r.get("detail", ""),
                             days=r.get("days", config.get().repeat_days)))
    return gettext(lang, "disputes.risk_sep").join(parts) if parts else "-"
