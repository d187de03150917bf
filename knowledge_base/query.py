"""Filters stated in a question (kind, category, place, date range) and access control, as one
``Filter`` that renders to a Chroma ``where`` clause and evaluates on the keyword index."""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from backend.core import taxonomy
from knowledge_base.places import Gazetteer
from knowledge_base.records import STAFF_ROLES, Scope

# ------------------------------------------------------------------ vocabularies
# One taxonomy for the slices and the KB (backend/core/taxonomy.py); these names stay for callers.
KIND_WORDS: dict[str, tuple[str, ...]] = {k: v.question_words for k, v in taxonomy.KINDS.items()}
KIND_LABELS = {k: v.zh for k, v in taxonomy.KINDS.items()}
CATEGORIES: dict[str, tuple[str, ...]] = {k: v.synonyms for k, v in taxonomy.CATEGORIES.items()}

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def cn_number(s: str) -> int | None:
    """"3" / "三" / "十二" / "二十" / "一百" → int."""
    s = s.strip()
    if s.isdigit():
        return int(s)
    if not s or any(c not in CN_DIGITS and c not in "十百" for c in s):
        return None
    total, cur = 0, 0
    for c in s:
        if c == "百":
            total += (cur or 1) * 100
            cur = 0
        elif c == "十":
            total += (cur or 1) * 10
            cur = 0
        else:
            cur = CN_DIGITS[c]
    return total + cur


def yyyymmdd(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


# ------------------------------------------------------------------ access control
@dataclass(frozen=True)
class Acl:
    all: bool = False
    jids: tuple[int, ...] = ()
    owner: int | None = None
    public: bool = True

    @classmethod
    def for_scope(cls, scope: Scope) -> "Acl":
        if scope.sees_all:
            return cls(all=True)
        if scope.role in STAFF_ROLES:
            return cls(jids=(scope.jurisdiction_id,) if scope.jurisdiction_id else (), owner=scope.user_id)
        if scope.role == "deputy":
            return cls(owner=scope.user_id)
        # citizens and unknown roles: public documents only (decision documented in docs/kb.md)
        return cls()


@dataclass(frozen=True)
class Filter:
    acl: Acl = field(default_factory=lambda: Acl(all=True))
    kinds: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    place_jids: tuple[int, ...] = ()  # any of
    date_from: int | None = None  # yyyymmdd inclusive
    date_to: int | None = None

    def where(self) -> dict | None:
        """The Chroma ``where`` clause (access control is evaluated inside Chroma)."""
        parts: list[dict] = []
        if not self.acl.all:
            ors: list[dict] = [{"public": True}] if self.acl.public else []
            ors += [{f"j_{j}": True} for j in self.acl.jids]
            if self.acl.owner is not None:
                ors.append({f"u_{self.acl.owner}": True})
            if not ors:
                ors = [{"public": True}]
            parts.append(ors[0] if len(ors) == 1 else {"$or": ors})
        # kind / category narrow the *cases*; public documents (laws, guides), historical cases and
        # records of a category outside the taxonomy stay eligible (ranking decides, not exclusion)
        if self.kinds:
            kinds = self.kind_set()
            parts.append({"kind": kinds[0]} if len(kinds) == 1 else {"kind": {"$in": list(kinds)}})
        if self.categories:
            parts.append({"category": {"$nin": list(self.other_categories())}})
        if self.place_jids:
            ps = [{f"j_{j}": True} for j in self.place_jids]
            parts.append(ps[0] if len(ps) == 1 else {"$or": ps})
        if self.date_from is not None:
            parts.append({"date": {"$gte": self.date_from}})
        if self.date_to is not None:
            parts.append({"date": {"$lte": self.date_to}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def match_chunk(self, md: dict) -> bool:
        """The test on a chunk's Chroma metadata (``j_<id>`` / ``u_<id>`` keys)."""
        meta = {"kind": md.get("kind"), "category": md.get("category"), "date": md.get("date") or 0,
                "public": md.get("public"),
                "jurisdiction_ids": [int(k[2:]) for k, v in md.items() if k.startswith("j_") and v is True],
                "owner_user_ids": [int(k[2:]) for k, v in md.items() if k.startswith("u_") and v is True]}
        return self.match(meta)

    def kind_set(self) -> tuple[str, ...]:
        extra = ("document", "history") if any(k in taxonomy.CASE_KINDS for k in self.kinds) else ("document",)
        return tuple(dict.fromkeys((*self.kinds, *extra)))

    def other_categories(self) -> tuple[str, ...]:
        """Known categories the question did not name: the only ones a category filter excludes."""
        return tuple(c for c in taxonomy.CATEGORIES if c not in self.categories) + taxonomy.CATCH_ALL

    def match(self, meta: dict) -> bool:
        """The same test in Python, on a record's metadata (``jurisdiction_ids``, ``owner_user_ids``...)."""
        jids = set(meta.get("jurisdiction_ids") or [])
        if not self.acl.all:
            ok = (self.acl.public and bool(meta.get("public")))
            ok = ok or any(j in jids for j in self.acl.jids)
            ok = ok or (self.acl.owner is not None and self.acl.owner in (meta.get("owner_user_ids") or []))
            if not ok:
                return False
        if self.kinds and meta.get("kind") not in self.kind_set():
            return False
        if self.categories and meta.get("category") in self.other_categories():
            return False
        if self.place_jids and not any(j in jids for j in self.place_jids):
            return False
        d = meta.get("date") or 0
        if self.date_from is not None and d < self.date_from:
            return False
        if self.date_to is not None and d > self.date_to:
            return False
        return True


# ------------------------------------------------------------------ periods
@dataclass(frozen=True)
class Period:
    start: date
    end: date
    label: str

    @property
    def range(self) -> tuple[int, int]:
        return yyyymmdd(self.start), yyyymmdd(self.end)


def _month(y: int, m: int) -> tuple[date, date]:
    return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])


_N = r"(\d+|[零〇一二两三四五六七八九十百]+)"


def parse_period(text: str, today: date) -> Period | None:
    """今年 / 去年 / 前年 / 本月 / 上个月 / 最近N天 / 近N个月 / 本周 / 上周 / 今天 / 昨天 /
    2025年 / 2025年3月 / 3月 / 2025-03."""
    t = text
    m = re.search(r"(?:最近|近|过去)" + _N + r"\s*(天|日|周|星期|个月|月|年)", t)
    if m:
        n = cn_number(m.group(1)) or 1
        unit = m.group(2)
        if unit in ("天", "日"):
            start = today - timedelta(days=n - 1)
        elif unit in ("周", "星期"):
            start = today - timedelta(days=7 * n - 1)
        elif unit in ("个月", "月"):
            y, mo = today.year, today.month - n
            while mo <= 0:
                mo += 12
                y -= 1
            start = date(y, mo, min(today.day, calendar.monthrange(y, mo)[1])) + timedelta(days=1)
        else:
            start = date(today.year - n, today.month, min(today.day, 28)) + timedelta(days=1)
        return Period(start, today, m.group(0))
    if re.search(r"最近一周|近一周|这周|本周", t):
        if "本周" in t or "这周" in t:
            start = today - timedelta(days=today.weekday())
            return Period(start, today, "本周")
        return Period(today - timedelta(days=6), today, "最近一周")
    if "上周" in t:
        start = today - timedelta(days=today.weekday() + 7)
        return Period(start, start + timedelta(days=6), "上周")
    if "今天" in t or "今日" in t:
        return Period(today, today, "今天")
    if "昨天" in t:
        d = today - timedelta(days=1)
        return Period(d, d, "昨天")
    m = re.search(r"(20\d{2}|19\d{2})\s*[年\-/.]\s*(\d{1,2}|[一二三四五六七八九十]+)\s*月?", t)
    if m and (cn_number(m.group(2)) or 0) in range(1, 13) and (m.group(0).endswith("月") or "-" in m.group(0)):
        y, mo = int(m.group(1)), cn_number(m.group(2))
        s, e = _month(y, mo)
        return Period(s, e, f"{y}年{mo}月")
    m = re.search(r"(20\d{2}|19\d{2})\s*年", t)
    if m:
        y = int(m.group(1))
        return Period(date(y, 1, 1), date(y, 12, 31), f"{y}年")
    for word, dy in (("今年", 0), ("本年", 0), ("去年", -1), ("上一年", -1), ("前年", -2)):
        if word in t:
            y = today.year + dy
            mm = re.search(word + r"\s*(\d{1,2}|[一二三四五六七八九十]+)\s*月", t)
            if mm and (cn_number(mm.group(1)) or 0) in range(1, 13):
                mo = cn_number(mm.group(1))
                s, e = _month(y, mo)
                return Period(s, e, f"{y}年{mo}月")
            return Period(date(y, 1, 1), date(y, 12, 31), f"{word}（{y}年）")
    if re.search(r"本月|这个月|当月", t):
        s, e = _month(today.year, today.month)
        return Period(s, e, f"本月（{today.year}年{today.month}月）")
    if re.search(r"上个月|上月", t):
        y, mo = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        s, e = _month(y, mo)
        return Period(s, e, f"上个月（{y}年{mo}月）")
    m = re.search(r"(?<![\d年])(\d{1,2}|[一二三四五六七八九十]{1,2})\s*月份?(?![\d日号])", t)
    if m:
        mo = cn_number(m.group(1)) or 0
        if 1 <= mo <= 12:
            y = today.year if mo <= today.month else today.year - 1
            s, e = _month(y, mo)
            return Period(s, e, f"{y}年{mo}月")
    return None


# ------------------------------------------------------------------ the question
@dataclass
class ParsedQuery:
    text: str
    kinds: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    place_jids: tuple[int, ...] = ()
    period: Period | None = None
    filter_only: bool = False  # the question is nothing but filters: every match is relevant

    def filter(self, scope: Scope) -> Filter:
        f = Filter(acl=Acl.for_scope(scope), kinds=self.kinds, categories=self.categories, place_jids=self.place_jids)
        if self.period:
            a, b = self.period.range
            f = replace(f, date_from=a, date_to=b)
        return f

    def labels(self) -> dict:
        out: dict = {}
        if self.kinds:
            out["kind"] = [KIND_LABELS.get(k, k) for k in self.kinds]
        if self.categories:
            out["category"] = list(self.categories)
        if self.places:
            out["place"] = list(self.places)
        if self.period:
            out["period"] = f"{self.period.label} {self.period.start.isoformat()}~{self.period.end.isoformat()}"
        return out


_FILLER = re.compile(r"的|有哪些|有什么|有没有|哪些|案例|案件|事件|情况|记录|相关|一下|查询|查一下|看看|列出|所有|全部|请问|[吗呢吧？?。，,！!\s]")


def residual_text(text: str, gazetteer: "Gazetteer | None") -> str:
    """What is left of a question once place, kind, category and period words are removed.
    Empty means the question is only a filter ("仙居县的山林纠纷")."""
    t = text
    if gazetteer is not None and gazetteer._re is not None:
        t = gazetteer._re.sub(" ", t)
    words = taxonomy.question_words() + ["纠纷", "矛盾", "代表", "人大", "检察", "建议", "督办", "老人", "儿童", "村", "镇", "区", "县", "市"]
    for w in sorted(words, key=len, reverse=True):
        t = t.replace(w, " ")
    t = re.sub(r"(20\d{2}|19\d{2})\s*年|\d{1,2}\s*月份?|今年|去年|前年|本月|上个?月|这个月|最近|近期|近\S{1,3}(天|周|个月|年)", " ", t)
    return _FILLER.sub("", t)


def parse_kinds(text: str) -> tuple[str, ...]:
    return taxonomy.kinds_in(text)


def parse_categories(text: str) -> tuple[str, ...]:
    return taxonomy.categories_in(text)


def parse_query(text: str, gazetteer: Gazetteer | None, today: date, *, max_chars: int = 500) -> ParsedQuery:
    """Only the head of a very long question is parsed for filters."""
    head = (text or "")[:max_chars]
    kinds = parse_kinds(head)
    cats = parse_categories(head)
    if cats:
        # missing-person reports have no dispute category: "老板失联欠薪" is a wage dispute
        kinds = tuple(k for k in kinds if k != "missing")
    if cats and not kinds:
        kinds = ()  # a category alone does not restrict the kind (督办 items have categories too)
    places: list[str] = []
    jids: list[int] = []
    if gazetteer is not None:
        found = gazetteer.find(head)
        # keep the most specific ones: a township named together with its county keeps the township
        for p in found:
            if any(q is not p and p.id in q.path_ids[:-1] for q in found):
                continue
            places.append(p.name)
            jids.append(p.id)
    period = parse_period(head, today)
    has_filter = bool(kinds or cats or jids or period)
    return ParsedQuery(text=text, kinds=kinds, categories=cats, places=tuple(places), place_jids=tuple(jids),
                       period=period, filter_only=has_filter and not residual_text(head, gazetteer))
