"""督导看板 — the official's board, computed for a jurisdiction in a few grouped queries and kept
for a few seconds (``Settings.console_board_cache_seconds``) per application process, keyed by the
jurisdiction: every official of a county reads the same figures, so a busy morning costs one
computation per county every few seconds, and the page says when its figures were computed
("数据更新于 HH:MM:SS").

What the board covers is the official's **jurisdiction** (a county: ``county_id``; a township:
``township_id``, the columns the Taizhou rollup groups by; a city official and an admin: every
case) — the same cases as the Taizhou figures of ``backend.disputes.stats``. The case lists it
links to are the policy's (``backend.console.queries.conditions``), as everywhere else.

One pass over the jurisdiction's cases (``GROUP BY township, category``, read from the covering
index ``ix_disputes_board``) gives the heat table, the rates by category and the risk counts;
the acceptance times and the time in each state read only their window's rows (indexes
``ix_disputes_board_accepted`` and ``ix_disputes_board_created``); the lists read the open cases only
(``ix_disputes_board_open``). The indexes are declared in backend/console/models.py.
"""
from __future__ import annotations

import statistics
import time
from collections import OrderedDict
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.console.queries import _deadline_passed
from backend.core.clock import now, to_local
from backend.disputes import config as dconfig
from backend.disputes import stats
from backend.disputes.models import OPEN_STATUSES, Dispute, DisputeEvent, Status
from backend.users import service as users
from backend.users.models import Jurisdiction, Level

OPEN = [s.value for s in OPEN_STATUSES]
RISKS = ("red", "yellow", "blue", "green")
ACCEPT_DAYS = 180
STATE_DAYS = 90
LIST_LIMIT = 20

def scope_of(j: Jurisdiction | None) -> list:
    """SQL conditions: the cases of jurisdiction ``j`` (None or the city: every case)."""
    if j is None or j.level == Level.city.value:
        return []
    if j.level == Level.county.value:
        return [Dispute.county_id == j.id]
    if j.level == Level.township.value:
        return [Dispute.township_id == j.id]
    return [Dispute.place_id.in_(select(Jurisdiction.id).where(Jurisdiction.path.startswith(j.path)))]


# ---------------------------------------------------------------- cache
class BoardCache:
    """Computed boards by key, each trusted for ``ttl`` seconds (per process; at most ``size`` keys)."""

    def __init__(self, size: int = 256):
        self.size = size
        self.entries: OrderedDict[Any, tuple[float, dict]] = OrderedDict()

    def get(self, key, ttl: float) -> dict | None:
        hit = self.entries.get(key)
        if hit is None or ttl <= 0 or time.monotonic() - hit[0] > ttl:
            return None
        return hit[1]

    def put(self, key, value: dict) -> None:
        self.entries[key] = (time.monotonic(), value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


def cache_of(state) -> BoardCache:
    """The application's board cache (``app.state``): one per application, never shared by two."""
    c = getattr(state, "board_cache", None)
    if c is None:
        c = state.board_cache = BoardCache()
    return c


async def board(session: AsyncSession, j: Jurisdiction | None, *, cache: BoardCache | None = None,
                ttl: float = 0) -> dict:
    """Everything the board shows for jurisdiction ``j``, with ``computed_at``; from ``cache`` if
    it was computed less than ``ttl`` seconds ago."""
    key = ("board", j.id if j is not None else 0)
    if cache is not None and (hit := cache.get(key, ttl)) is not None:
        return hit
    scope = scope_of(j)
    groups = await _groups(session, scope)
    at = now()
    data = {"computed_at": at, "updated": to_local(at).strftime("%H:%M:%S"), "figures": await _figures(session, j),
            **_from_groups(groups),
            "times": await acceptance_times(session, scope), "states": await time_in_state(session, scope),
            **await _lists(session, scope)}
    await _name_rows(session, data)
    if cache is not None:
        cache.put(key, data)
    return data


async def _name_rows(session: AsyncSession, data: dict) -> None:
    """Names beside the township ids and category codes the queries group by."""
    cfg = dconfig.get()
    for r in data["heat"]["rows"]:
        r["name"] = await name_of(session, r["id"])
    for part in ("times", "states"):
        for r in data[part]["by_township"]:
            r["name"] = await name_of(session, r["key"])
        for r in data[part]["by_category"]:
            r["name"] = cfg.category(r["key"]).zh


# ---------------------------------------------------------------- the Taizhou figures (rollup)
def _row_sum(rows: list[stats.Row]) -> dict:
    total = sum(r.total for r in rows)
    resolved = sum(r.resolved for r in rows)
    days = sum((r.avg_resolution_days or 0) * r.resolved for r in rows)
    overdue = sum(r.overdue for r in rows)
    return {"total": total, "local_rate": stats._rate(sum(r.local_resolved for r in rows), sum(r.decided for r in rows)),
            "avg_days": round(days / resolved, 2) if resolved else None,
            "satisfaction": stats._rate(sum(r.satisfied for r in rows), sum(r.rated for r in rows)),
            "overdue": overdue, "overdue_rate": stats._rate(overdue, total)}


async def _figures(session: AsyncSession, j: Jurisdiction | None) -> dict:
    """The Taizhou figures by child jurisdiction (township or county) and by month, from the
    statistics service the API and /stats use (its rollup)."""
    rows = await stats.compute(session, j)
    by_place: dict[int | None, list] = {}
    by_month: dict[str, list] = {}
    for r in rows:
        by_place.setdefault(r.jurisdiction_id, []).append(r)
        by_month.setdefault(r.month, []).append(r)
    places = [{"id": jid, "name": rs[0].jurisdiction, **_row_sum(rs)} for jid, rs in by_place.items()]
    months = [{"month": m, **_row_sum(rs)} for m, rs in sorted(by_month.items())]
    return {"places": sorted(places, key=lambda p: -p["total"]), "months": months, "summary": _row_sum(rows)}


# ---------------------------------------------------------------- one pass: heat, rates by category, risk
async def _groups(session: AsyncSession, scope: list) -> list:
    success = Dispute.outcome == "success"
    is_open = Dispute.status.in_(OPEN)
    q = select(
        Dispute.township_id, Dispute.category, func.count(),
        func.sum(case((Dispute.outcome.is_not(None), 1), else_=0)),
        func.sum(case((and_(success, Dispute.escalated_county == 0), 1), else_=0)),
        func.sum(case((success, 1), else_=0)),
        func.sum(case((success, Dispute.resolution_days), else_=0)),
        func.sum(case((Dispute.rating.is_not(None), 1), else_=0)),
        func.sum(case((Dispute.rating.in_(("satisfied", "basic")), 1), else_=0)),
        func.sum(Dispute.overdue),
        *[func.sum(case((and_(is_open, Dispute.risk == r), 1), else_=0)) for r in RISKS],
    ).where(*scope).group_by(Dispute.county_id, Dispute.township_id, Dispute.category)
    return [(t, c, *(x or 0 for x in rest)) for t, c, *rest in (await session.execute(q)).all()]


def _rates(total, decided, local, resolved, days, rated, sat, overdue) -> dict:
    return {"total": int(total), "local_rate": stats._rate(local, decided),
            "avg_days": round(float(days) / resolved, 2) if resolved else None,
            "satisfaction": stats._rate(sat, rated), "overdue": int(overdue), "overdue_rate": stats._rate(overdue, total)}


def _from_groups(groups: list) -> dict:
    cfg = dconfig.get()
    cells: dict[tuple, int] = {}
    by_cat: dict[str, list] = {}
    risk = dict.fromkeys(RISKS, 0)
    for tid, cat, *nums in groups:
        cells[(tid, cat)] = cells.get((tid, cat), 0) + int(nums[0])
        acc = by_cat.setdefault(cat, [0] * 8)
        for i in range(8):
            acc[i] += nums[i]
        for r, n in zip(RISKS, nums[8:]):
            risk[r] += int(n)
    cats = [c for c, _ in sorted(by_cat.items(), key=lambda x: -x[1][0])]
    tids = {t for t, _ in cells if t is not None}
    top = max(cells.values(), default=0)
    order = sorted(tids, key=lambda t: -sum(cells.get((t, c), 0) for c in cats))
    heat = {"categories": [{"code": c, "name": cfg.category(c).zh} for c in cats],
            "rows": [{"id": t, "cells": [{"n": cells.get((t, c), 0), "level": _heat(cells.get((t, c), 0), top)}
                                         for c in cats]} for t in order]}
    by_category = [{"code": c, "name": cfg.category(c).zh, **_rates(*by_cat[c])} for c in cats]
    return {"heat": heat, "by_category": by_category, "risk_counts": risk}


def _heat(n: int, top: int) -> int:
    return 0 if not n or not top else min(4, 1 + int(4 * n / (top + 1)))


# ---------------------------------------------------------------- times
def _pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 1)


def summary(hours: list[float]) -> dict:
    """n, median and p90 (inclusive quantiles, like a spreadsheet's PERCENTILE) of ``hours``."""
    return {"n": len(hours), "median": _pct(hours, 50), "p90": _pct(hours, 90)}


def _hours(session: AsyncSession, start, end):
    """SQL: hours from ``start`` to ``end`` (computed by the database: no timestamps to parse)."""
    if session.bind.dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def _collect(rows, every: dict, by_town: dict, by_cat: dict, key=lambda r: None) -> None:
    for town, cat, h, *rest in rows:
        k = key(rest)
        every.setdefault(k, []).append(h)
        by_town.setdefault((town, k), []).append(h)
        by_cat.setdefault((cat, k), []).append(h)


async def acceptance_times(session: AsyncSession, scope: list, since_days: int = ACCEPT_DAYS) -> dict:
    """Median and p90 hours from report to acceptance, overall, per township and per category, over
    the cases accepted in the last ``since_days`` days."""
    q = select(Dispute.township_id, Dispute.category, _hours(session, Dispute.created_at, Dispute.accepted_at)).where(
        *scope, Dispute.accepted_at.is_not(None), Dispute.accepted_at >= now() - timedelta(days=since_days))
    every: dict = {}
    by_town: dict = {}
    by_cat: dict = {}
    _collect(await session.execute(q), every, by_town, by_cat)
    return {"all": summary(every.get(None, [])), "by_township": _grouped(by_town), "by_category": _grouped(by_cat)}


def _grouped(groups: dict) -> list[dict]:
    return [{"key": k, **summary(v)} for (k, _), v in sorted(groups.items(), key=lambda x: -len(x[1]))]


async def time_in_state(session: AsyncSession, scope: list, since_days: int = STATE_DAYS) -> dict:
    """Median and p90 hours a case stays in each open status — from the timeline: from the event
    that enters a status to the next event that changes it (notes and comments change none) —
    overall, per township and per category, over the cases reported in the last ``since_days``
    days. A status still held is not counted (its stay has not ended)."""
    e = DisputeEvent
    moves = (select(e.dispute_id, e.to_status, e.at,
                    func.lead(e.at).over(partition_by=e.dispute_id, order_by=e.id).label("left_at"))
             .where(e.dispute_id.in_(select(Dispute.id).where(
                 *scope, Dispute.created_at >= now() - timedelta(days=since_days))),
                    e.from_status.is_distinct_from(e.to_status))
             .subquery())
    q = (select(Dispute.township_id, Dispute.category, _hours(session, moves.c.at, moves.c.left_at),
                moves.c.to_status)
         .join(Dispute, Dispute.id == moves.c.dispute_id)
         .where(moves.c.left_at.is_not(None), moves.c.to_status.in_(OPEN)))
    every: dict = {}
    by_town: dict = {}
    by_cat: dict = {}
    _collect(await session.execute(q), every, by_town, by_cat, key=lambda rest: rest[0])
    statuses = [st for st in OPEN if st in every]

    def table(groups: dict) -> list[dict]:
        keys = sorted({k for k, _ in groups}, key=lambda k: -sum(len(v) for (kk, _), v in groups.items() if kk == k))
        return [{"key": k, "cells": [summary(groups.get((k, st), [])) for st in statuses]} for k in keys]

    return {"statuses": statuses, "all": [{"status": st, **summary(every[st])} for st in statuses],
            "by_township": table(by_town), "by_category": table(by_cat)}


# ---------------------------------------------------------------- the lists (plain rows, cacheable)
async def _lists(session: AsyncSession, scope: list) -> dict:
    at = now()
    cols = (Dispute.id, Dispute.number, Dispute.status, Dispute.place_id, Dispute.unit_id, Dispute.risk,
            Dispute.risk_reasons)
    overdue = (await session.execute(select(*cols).where(
        *scope, Dispute.status.in_(OPEN), _deadline_passed(at)).order_by(Dispute.created_at).limit(LIST_LIMIT))).all()
    escalated = (await session.execute(select(*cols).where(
        *scope, Dispute.status == Status.escalated.value).order_by(Dispute.updated_at.desc())
        .limit(LIST_LIMIT))).all()
    risky = []
    for r in RISKS[:3]:  # red first, then yellow, then blue: each read from the index
        if len(risky) >= LIST_LIMIT:
            break
        risky += (await session.execute(select(*cols).where(
            *scope, Dispute.status.in_(OPEN), Dispute.risk == r).order_by(Dispute.id.desc())
            .limit(LIST_LIMIT - len(risky)))).all()
    return {"overdue": [await _plain(session, r) for r in overdue],
            "escalated": [await _plain(session, r) for r in escalated],
            "risky": [await _plain(session, r) for r in risky]}


async def _plain(session: AsyncSession, r) -> SimpleNamespace:
    return SimpleNamespace(id=r.id, number=r.number, status=r.status, risk=r.risk, risk_reasons=r.risk_reasons or [],
                           place=SimpleNamespace(name=await name_of(session, r.place_id)),
                           unit=SimpleNamespace(name=await name_of(session, r.unit_id)))


async def name_of(session: AsyncSession, jid: int | None) -> str:
    """A place's name from the in-memory jurisdiction tree (no query once it is loaded)."""
    j = await users.jurisdiction(session, jid)
    return j.name if j else "-"
