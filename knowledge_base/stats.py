"""Statistical questions ("本月椒江区有多少件未办结的纠纷？", "哪个乡镇欠薪纠纷最多？", trends).

The knowledge base parses the question into a :class:`StatsQuery`, calls the provider that
the owning slice registered for the kind, and formats the :class:`StatsAnswer` together with
the filter that was applied. A provider::

    async def dispute_stats(session, q: StatsQuery, scope: Scope) -> StatsAnswer: ...
    register_stats_provider("dispute", dispute_stats)

It must apply ``scope`` itself (an official counts only inside their jurisdiction).

A slice may instead expose rows (``KB_STATS = {"missing": rows_fn}`` in ``backend/<slice>/stats.py``,
found by :func:`discover_providers`; such a module does not import the knowledge base): ``rows_fn(session,
q)`` returns one dict per item inside the question's place and period — ``jurisdiction_ids`` (the
item's place and its ancestors), ``owner_user_ids``, ``date`` (yyyymmdd), ``category``, ``status``
(open | closed) and ``overdue`` — and :func:`aggregate` applies the asker's scope with the very
filter retrieval uses, then counts, ranks or follows the trend.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date

from backend.core import taxonomy
from backend.core.i18n import gettext
from knowledge_base.places import Gazetteer
from knowledge_base.query import (KIND_LABELS, Acl, Filter, Period, cn_number, parse_categories, parse_kinds,
                                  parse_period)
from knowledge_base.records import Answer, Scope

_COUNT_RE = re.compile(r"多少|几件|几起|几个|几宗|数量|总数|统计|共有|一共|how many", re.IGNORECASE)
_TOP_RE = re.compile(r"最多|最少|排名|排行|前\s*(\d+|[一二三四五六七八九十]+)\s*(?:名|位|个)?|哪个|哪些|哪几个")
_TREND_RE = re.compile(r"趋势|变化|走势|逐月|每月|每个月|按月|同比|环比|增加了?还是减少|增长|下降|trend", re.IGNORECASE)
_STATUS = (
    ("open", re.compile(r"未办结|未结|没办结|没结案|未化解|在办|待处理|未处理|办理中|正在处理|未找到|还没找到|尚未找到|仍在寻找")),
    ("overdue", re.compile(r"超期|逾期|超时")),
    ("closed", re.compile(r"已办结|办结了?的|已结案|已化解|化解成功|已处理|调解成功|已找到|找到了|已寻回")),
)
_GROUP = (
    ("township", re.compile(r"乡镇|街道|镇街")),
    ("county", re.compile(r"区县|县市区|哪个区|哪个县|哪个市|各区|各县")),
    ("village", re.compile(r"村|社区")),
    ("category", re.compile(r"类型|类别|哪类|哪种|什么纠纷")),
)


@dataclass
class StatsQuery:
    measure: str  # count | top_n | trend
    kind: str = "dispute"
    category: str | None = None
    place: str | None = None  # name as found in the question
    place_jids: tuple[int, ...] = ()  # the place and its ancestors' ids: filter with the last one
    status: str | None = None  # open | closed | overdue
    period: Period | None = None
    group_by: str | None = None  # township | county | village | category | month
    n: int = 5
    question: str = ""
    gazetteer: Gazetteer | None = field(default=None, repr=False, compare=False)  # names for ranked places

    @property
    def place_id(self) -> int | None:
        return self.place_jids[-1] if self.place_jids else None

    def filter_labels(self, lang: str = "zh") -> list[tuple[str, str]]:
        t = lambda k, **p: gettext(lang, k, **p)  # noqa: E731
        out = [(t("kb.f_kind"), KIND_LABELS.get(self.kind, self.kind) if lang == "zh" else self.kind)]
        out.append((t("kb.f_category"), self.category or t("kb.f_all")))
        out.append((t("kb.f_place"), self.place or t("kb.f_all")))
        out.append((t("kb.f_status"), t(f"kb.status_{self.status}") if self.status else t("kb.f_all")))
        per = f"{self.period.label}（{self.period.start.isoformat()}～{self.period.end.isoformat()}）" if self.period else t("kb.f_all")
        out.append((t("kb.f_period"), per))
        return out


@dataclass
class StatsAnswer:
    value: int | None = None  # count
    rows: list[tuple[str, int]] = field(default_factory=list)  # top_n: (label, count), best first
    series: list[tuple[str, int]] = field(default_factory=list)  # trend: (period label, count)
    note: str | None = None


Provider = Callable[[object, StatsQuery, Scope], Awaitable[StatsAnswer]]
_PROVIDERS: dict[str, Provider] = {}


def register_stats_provider(kind: str, fn: Provider) -> None:
    _PROVIDERS[kind] = fn


def unregister_stats_provider(kind: str) -> None:
    _PROVIDERS.pop(kind, None)


def has_provider(kind: str) -> bool:
    return kind in _PROVIDERS


def parse_stats(question: str, gazetteer: Gazetteer | None, today: date) -> StatsQuery | None:
    """A :class:`StatsQuery` if the question asks for a number, a ranking or a trend, else None."""
    q = (question or "")[:300]
    trend = bool(_TREND_RE.search(q))
    top = _TOP_RE.search(q)
    is_top = bool(top) and bool(re.search(r"最多|最少|排名|排行|前\s*\S+\s*(?:名|位|个)", q))
    if not (trend or is_top or _COUNT_RE.search(q)):
        return None
    measure = "trend" if trend else ("top_n" if is_top else "count")
    kinds = parse_kinds(q)
    cats = parse_categories(q)
    kind = next((k for k in kinds if k != "document"), None) or "dispute"
    status = next((s for s, rx in _STATUS if rx.search(q)), None)
    group = None
    if measure == "top_n":
        group = next((g for g, rx in _GROUP if rx.search(q)), "township")
    elif measure == "trend":
        group = "month"
    n = 5
    m_n = re.search(r"前\s*(\d+|[一二三四五六七八九十]+)\s*(?:名|位|个)?", q)
    if m_n:
        n = cn_number(m_n.group(1)) or 5
    elif measure == "top_n" and re.search(r"哪个|哪一个|最多|最少", q) and not re.search(r"哪些|哪几个|排名|排行", q):
        n = 1
    place, jids = None, ()
    if gazetteer is not None:
        found = gazetteer.find(q)
        found = [p for p in found if not any(o is not p and p.id in o.path_ids[:-1] for o in found)]
        if found:
            place, jids = found[0].name, tuple(found[0].path_ids)
    period = parse_period(q, today)
    if measure == "trend" and period is None:
        from knowledge_base.query import parse_period as pp

        period = pp("近6个月", today)
    return StatsQuery(measure=measure, kind=kind, category=cats[0] if cats else None, place=place, place_jids=jids,
                      status=status, period=period, group_by=group, n=n, question=question, gazetteer=gazetteer)


def format_stats(q: StatsQuery, a: StatsAnswer, lang: str = "zh") -> str:
    t = lambda k, **p: gettext(lang, k, **p)  # noqa: E731
    sep = "；" if lang == "zh" else "; "
    eq = "：" if lang == "zh" else ": "
    lines = [t("kb.stats_filters", filters=sep.join(f"{k}{eq}{v}" for k, v in q.filter_labels(lang)))]
    if q.measure == "count":
        lines.append(t("kb.stats_count", value=a.value or 0) if a.value else t("kb.stats_empty"))
    elif q.measure == "top_n":
        rows = [r for r in a.rows if r[1] > 0][: q.n]
        if not rows:
            lines.append(t("kb.stats_empty"))
        else:
            lines.append(t("kb.stats_top"))
            lines += [t("kb.stats_top_row", rank=i, label=lab, value=v) for i, (lab, v) in enumerate(rows, 1)]
    else:
        if not a.series or not any(v for _, v in a.series):
            lines.append(t("kb.stats_empty"))
        else:
            lines.append(t("kb.stats_trend"))
            lines += [t("kb.stats_trend_row", label=lab, value=v) for lab, v in a.series]
    if a.note:
        lines.append(a.note)
    return "\n".join(lines)


def outside_jurisdiction(q: StatsQuery, scope: Scope, gazetteer: Gazetteer | None) -> bool:
    """The question names a place that is neither inside the asker's jurisdiction nor one of its
    ancestors (a 黄岩区 official asking about 椒江区). Staff only: deputies count their own items."""
    if scope.sees_all or scope.role not in ("official", "mediator", "procurator", "officer"):
        return False
    if scope.jurisdiction_id is None:
        return True
    if not q.place_jids:
        return False
    mine = gazetteer.by_id.get(scope.jurisdiction_id) if gazetteer is not None else None
    mine_path = mine.path_ids if mine is not None else [scope.jurisdiction_id]
    return scope.jurisdiction_id not in q.place_jids and q.place_id not in mine_path


async def answer_stats(session, q: StatsQuery, scope: Scope, lang: str = "zh",
                       gazetteer: Gazetteer | None = None) -> Answer:
    fn = _PROVIDERS.get(q.kind)
    labels = dict(q.filter_labels(lang))
    if fn is None:
        return Answer(gettext(lang, "kb.stats_no_provider", kind=KIND_LABELS.get(q.kind, q.kind)), [], mode="stats",
                      filters=labels)
    if not scope.may_query_cases:
        return Answer(gettext(lang, "kb.stats_denied"), [], mode="refused", filters=labels)
    if outside_jurisdiction(q, scope, gazetteer or q.gazetteer):
        # said as such, never a silent 0
        text = gettext(lang, "kb.stats_filters", filters=_criteria(q, lang)) + "\n" + gettext(lang, "kb.stats_outside")
        return Answer(text, [], mode="refused", filters=labels)
    res = await fn(session, q, scope)
    return Answer(format_stats(q, res, lang), [], mode="stats", filters=labels)


def _criteria(q: StatsQuery, lang: str) -> str:
    sep, eq = ("；", "：") if lang == "zh" else ("; ", ": ")
    return sep.join(f"{k}{eq}{v}" for k, v in q.filter_labels(lang))


# ---------------------------------------------------------------- providers that give rows
RowsFn = Callable[[object, StatsQuery], Awaitable[list[dict]]]
_LEVEL_INDEX = {"county": 1, "township": 2, "village": 3}  # position in the path: city / county / township / village
_discovered = False


def aggregate(q: StatsQuery, rows: list[dict], scope: Scope, name_of: Callable[[int], str | None]) -> StatsAnswer:
    """Count, rank or follow the trend of ``rows`` the asker may see (the retrieval filter decides)."""
    acl = Filter(acl=Acl.for_scope(scope))
    seen = [r for r in rows if acl.match({**r, "public": False})]
    if q.category:
        seen = [r for r in seen if taxonomy.category_of(r.get("category")) == q.category]
    if q.status == "overdue":
        seen = [r for r in seen if r.get("overdue") and r.get("status") == "open"]
    elif q.status:
        seen = [r for r in seen if r.get("status") == q.status]
    if q.measure == "count":
        return StatsAnswer(value=len(seen))
    if q.measure == "trend":
        months: dict[str, int] = {}
        for r in seen:
            d = str(r.get("date") or "")
            if len(d) == 8:
                months[f"{d[:4]}-{d[4:6]}"] = months.get(f"{d[:4]}-{d[4:6]}", 0) + 1
        return StatsAnswer(series=sorted(months.items()))
    groups: dict[str, int] = {}
    for r in seen:
        if q.group_by == "category":
            label = taxonomy.category_of(r.get("category")) or "-"
        else:
            ids = r.get("jurisdiction_ids") or []
            i = _LEVEL_INDEX.get(q.group_by or "township", 2)
            if len(ids) <= i:
                continue
            label = name_of(ids[i]) or str(ids[i])
        groups[label] = groups.get(label, 0) + 1
    return StatsAnswer(rows=sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])))


def register_rows_provider(kind: str, rows_fn: RowsFn) -> None:
    async def provider(session, q: StatsQuery, scope: Scope) -> StatsAnswer:
        g = q.gazetteer or Gazetteer.default()
        return aggregate(q, await rows_fn(session, q), scope, g.name_of)

    register_stats_provider(kind, provider)


def discover_providers() -> None:
    """Register ``KB_STATS`` of every ``backend/<slice>/stats.py`` that has one (once)."""
    global _discovered
    if _discovered:
        return
    from knowledge_base.models import slice_modules

    for m in slice_modules("stats"):
        for kind, fn in (getattr(m, "KB_STATS", None) or {}).items():
            if not has_provider(kind):
                register_rows_provider(kind, fn)
    _discovered = True
