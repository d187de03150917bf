"""Metrics as Taizhou reports them (考评反馈/预警研判) and the daily early-warning digest.

- local resolution rate: cases resolved (调解成功) while handled below county level, over
  cases with an outcome (调解成功 + 调解不成);
- average resolution days: creation → 调解成功;
- satisfaction rate: (满意 + 基本满意) / rated;
- overdue rate: cases that missed any deadline / all cases.
Grouped by jurisdiction (counties for the city, townships inside a county) and month.
"""
from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import fmt_local, local_now, now
from backend.disputes import config
from backend.disputes.models import Dispute, DisputeMonthly
from backend.notify.service import notify
from backend.users import service as users
from backend.users.models import Jurisdiction, Level, Role, User


@dataclass
class Row:
    jurisdiction_id: int | None
    jurisdiction: str
    code: str
    month: str
    total: int
    decided: int
    resolved: int
    local_resolved: int
    local_resolution_rate: float | None
    avg_resolution_days: float | None
    rated: int
    satisfied: int
    satisfaction_rate: float | None
    overdue: int
    overdue_rate: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


async def compute_raw(session: AsyncSession, scope: Jurisdiction | None, *, month_from: str | None = None,
                      month_to: str | None = None, totals: bool = False) -> list[Row]:
    """Rows per (child jurisdiction, month) of ``scope`` (None/city → counties), straight from
    the cases (used below township level and as the benchmark's baseline)."""
    by_township = scope is not None and scope.level != Level.city.value
    key = Dispute.township_id if by_township else Dispute.county_id
    success = Dispute.outcome == "success"
    cols = [
        func.count().label("total"),
        func.sum(case((Dispute.outcome.is_not(None), 1), else_=0)).label("decided"),
        func.sum(case((success, 1), else_=0)).label("resolved"),
        func.sum(case((and_(success, Dispute.escalated_county == 0), 1), else_=0)).label("local"),
        func.avg(case((success, Dispute.resolution_days))).label("days"),
        func.sum(case((Dispute.rating.is_not(None), 1), else_=0)).label("rated"),
        func.sum(case((Dispute.rating.in_(("satisfied", "basic")), 1), else_=0)).label("sat"),
        func.sum(Dispute.overdue).label("overdue"),
    ]
    group = [key] if totals else [key, Dispute.month]
    q = select(*group, *cols)
    if scope is not None and scope.level != Level.city.value:
        if scope.level == Level.county.value:
            q = q.where(Dispute.county_id == scope.id)
        else:
            inside = select(Jurisdiction.id).where(Jurisdiction.path.startswith(scope.path))
            q = q.where(Dispute.place_id.in_(inside))
    if month_from:
        q = q.where(Dispute.month >= month_from)
    if month_to:
        q = q.where(Dispute.month <= month_to)
    rows = (await session.execute(q.group_by(*group).order_by(*group))).all()
    ids = {r[0] for r in rows if r[0] is not None}
    names = {jid: await users.jurisdiction(session, jid) for jid in ids}
    out = []
    for r in rows:
        jid = r[0]
        month = "all" if totals else r[1]
        total, decided, resolved, local, days, rated, sat, overdue = r[-8:]
        j = names.get(jid)
        out.append(Row(jid, j.name if j else "-", (j.code or f"#{jid}") if j else "-", month, total,
                       decided or 0, resolved or 0, local or 0, _rate(local or 0, decided or 0),
                       round(float(days), 2) if days is not None else None, rated or 0, sat or 0,
                       _rate(sat or 0, rated or 0), overdue or 0, _rate(overdue or 0, total)))
    return out


async def compute(session: AsyncSession, scope: Jurisdiction | None, *, month_from: str | None = None,
                  month_to: str | None = None, totals: bool = False) -> list[Row]:
    """Rows per (child jurisdiction, month) of ``scope``: counties for the city, townships for a
    county or a township — read from the ``dispute_monthly`` rollup. Below township level the
    cases themselves are grouped (:func:`compute_raw`)."""
    if scope is not None and scope.level not in (Level.city.value, Level.county.value, Level.township.value):
        return await compute_raw(session, scope, month_from=month_from, month_to=month_to, totals=totals)
    m = DisputeMonthly
    by_township = scope is not None and scope.level != Level.city.value
    key = m.township_id if by_township else m.county_id
    group = [key] if totals else [key, m.month]
    q = select(*group, func.sum(m.total), func.sum(m.decided), func.sum(m.resolved), func.sum(m.local_resolved),
               func.sum(m.days_sum), func.sum(m.rated), func.sum(m.satisfied), func.sum(m.overdue))
    if scope is not None and scope.level == Level.county.value:
        q = q.where(m.county_id == scope.id)
    elif scope is not None and scope.level == Level.township.value:
        q = q.where(m.township_id == scope.id)
    if month_from:
        q = q.where(m.month >= month_from)
    if month_to:
        q = q.where(m.month <= month_to)
    rows = [r for r in (await session.execute(q.group_by(*group).order_by(*group))).all() if r[-8]]
    ids = {r[0] for r in rows if r[0]}
    names = {jid: await users.jurisdiction(session, jid) for jid in ids}
    out = []
    for r in rows:
        jid = r[0] or None
        month = "all" if totals else r[1]
        total, decided, resolved, local, days_sum, rated, sat, overdue = (x or 0 for x in r[-8:])
        j = names.get(jid)
        out.append(Row(jid, j.name if j else "-", (j.code or f"#{jid}") if j else "-", month, int(total),
                       int(decided), int(resolved), int(local), _rate(local, decided),
                       round(float(days_sum) / resolved, 2) if resolved else None, int(rated), int(sat),
                       _rate(sat, rated), int(overdue), _rate(overdue, total)))
    return out


def contribution(d: Dispute | None) -> dict | None:
    """What one case adds to its rollup row."""
    if d is None:
        return None
    success = d.outcome == "success"
    return {"key": (d.county_id, d.township_id or 0, d.month), "total": 1, "decided": int(d.outcome is not None),
            "resolved": int(success), "local_resolved": int(success and not d.escalated_county),
            "days_sum": float(d.resolution_days or 0) if success else 0.0, "rated": int(d.rating is not None),
            "satisfied": int(d.rating in ("satisfied", "basic")), "overdue": int(bool(d.overdue))}


FIELDS = ("total", "decided", "resolved", "local_resolved", "days_sum", "rated", "satisfied", "overdue")


async def apply_change(session: AsyncSession, before: dict | None, after: dict | None) -> None:
    """Move a case's contribution from ``before`` to ``after`` (same transaction as the change)."""
    deltas: dict[tuple, dict] = {}
    for sign, c in ((-1, before), (1, after)):
        if c is None:
            continue
        row = deltas.setdefault(c["key"], dict.fromkeys(FIELDS, 0))
        for f in FIELDS:
            row[f] += sign * c[f]
    for (county, township, month), delta in deltas.items():
        if not any(delta.values()):
            continue
        await session.execute(_upsert(session.bind.dialect.name),
                              {"county_id": county, "township_id": township, "month": month, **delta})


@functools.cache
def _upsert(dialect: str):
    """Add a delta to a rollup row, creating it if needed. Built once per dialect: building
    the statement cost more than running it, on every change of every case (bench/disputes.py)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ins = insert(DisputeMonthly).values({c: bindparam(c) for c in ("county_id", "township_id", "month", *FIELDS)})
    return ins.on_conflict_do_update(index_elements=["county_id", "township_id", "month"],
                                     set_={f: getattr(DisputeMonthly, f) + ins.excluded[f] for f in FIELDS})


async def rebuild(session: AsyncSession) -> int:
    """Recompute the rollup from the cases (after bulk imports; ``hehe`` admin use)."""
    from sqlalchemy import delete, text

    await session.execute(delete(DisputeMonthly))
    await session.execute(text("""
        INSERT INTO dispute_monthly (county_id, township_id, month, total, decided, resolved, local_resolved,
                                     days_sum, rated, satisfied, overdue)
        SELECT county_id, COALESCE(township_id, 0), month, count(*),
               sum(CASE WHEN outcome IS NOT NULL THEN 1 ELSE 0 END),
               sum(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END),
               sum(CASE WHEN outcome = 'success' AND escalated_county = 0 THEN 1 ELSE 0 END),
               coalesce(sum(CASE WHEN outcome = 'success' THEN resolution_days ELSE 0 END), 0),
               sum(CASE WHEN rating IS NOT NULL THEN 1 ELSE 0 END),
               sum(CASE WHEN rating IN ('satisfied', 'basic') THEN 1 ELSE 0 END),
               sum(overdue)
        FROM disputes GROUP BY county_id, COALESCE(township_id, 0), month"""))
    return await session.scalar(select(func.count()).select_from(DisputeMonthly))


def summary(rows: list[Row]) -> dict:
    tot = {k: sum(getattr(r, k) for r in rows) for k in
           ("total", "decided", "resolved", "local_resolved", "rated", "satisfied", "overdue")}
    days_w = sum((r.avg_resolution_days or 0) * r.resolved for r in rows)
    return {**tot, "local_resolution_rate": _rate(tot["local_resolved"], tot["decided"]),
            "avg_resolution_days": round(days_w / tot["resolved"], 2) if tot["resolved"] else None,
            "satisfaction_rate": _rate(tot["satisfied"], tot["rated"]),
            "overdue_rate": _rate(tot["overdue"], tot["total"])}


def chart_png(rows: list[Row], title: str = "Disputes by month") -> bytes:
    """Bar chart of cases per month with the local resolution rate as a line.

    Labels are ASCII on purpose: the image has no CJK font available, so jurisdictions are
    shown by their code (JJ, HY, …) and the axes in English."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = sorted({r.month for r in rows})
    per_month = {m: [r for r in rows if r.month == m] for m in months}
    totals = [sum(r.total for r in per_month[m]) for m in months]
    local = [summary(per_month[m])["local_resolution_rate"] for m in months]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.bar(months, totals, color="#4e79a7", label="cases")
    ax.set_ylabel("cases")
    ax.set_xlabel("month")
    ax.set_title(title)
    ax2 = ax.twinx()
    ax2.plot(months, [(v or 0) * 100 for v in local], color="#e15759", marker="o", label="local resolution %")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("local resolution %")
    fig.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- daily digest
async def hot_spots(session: AsyncSession, scope: Jurisdiction | None) -> list[dict]:
    """Township × category counts this week rising against the average of the previous four weeks."""
    t = now()
    week, month = t - timedelta(days=7), t - timedelta(days=35)
    place = func.coalesce(Dispute.township_id, Dispute.county_id)
    q = select(place, Dispute.category,
               func.sum(case((Dispute.created_at >= week, 1), else_=0)),
               func.sum(case((Dispute.created_at < week, 1), else_=0))).where(Dispute.created_at >= month)
    if scope is not None and scope.level != Level.city.value:
        inside = select(Jurisdiction.id).where(Jurisdiction.path.startswith(scope.path))
        q = q.where(Dispute.place_id.in_(inside))
    rows = (await session.execute(q.group_by(place, Dispute.category))).all()
    cfg = config.get()
    out = []
    for jid, cat, this_week, before in rows:
        avg = (before or 0) / 4
        if (this_week or 0) >= cfg.hotspot_min and this_week > avg:
            j = await users.jurisdiction(session, jid)
            out.append({"place": j.name if j else "-", "category": cfg.category(cat).zh,
                        "week": int(this_week), "avg": round(avg, 1)})
    return sorted(out, key=lambda h: (-h["week"], h["place"]))


async def send_digest(session: AsyncSession) -> int:
    """08:30: each official gets the red/yellow cases reported in the 24 hours before and hot
    spots; the title names that period (e.g. "2026-12-31 08:30 至 2027-01-01 08:30")."""
    end = now()
    since = end - timedelta(days=1)
    officials = list(await session.scalars(select(User).where(
        User.role == Role.official.value, User.active.is_(True), User.jurisdiction_id.is_not(None))))
    day = local_now().strftime("%Y-%m-%d")
    sent = 0
    for u in officials:
        inside = select(Jurisdiction.id).where(Jurisdiction.path.startswith(u.jurisdiction.path))
        cases = list(await session.scalars(select(Dispute).where(
            Dispute.created_at >= since, Dispute.created_at < end, Dispute.risk.in_(("red", "yellow")),
            Dispute.place_id.in_(inside)).order_by(Dispute.risk, Dispute.id)))
        spots = await hot_spots(session, u.jurisdiction)
        if not cases and not spots:
            continue
        lines = "\n".join(f"{'🔴' if d.risk == 'red' else '🟡'} {d.number} {config.get().category(d.category).zh} "
                          f"{d.place.name}" for d in cases[:30]) or "-"
        hot = "\n".join(f"🔥 {h['place']} · {h['category']}：本周 {h['week']} 件（前四周周均 {h['avg']}）"
                        for h in spots[:10]) or "-"
        msg = await notify(session, u, "disputes.n_digest", dedupe_key=f"digest-{day}-{u.id}", date=day,
                           start=fmt_local(since), end=fmt_local(end), n=len(cases), cases=lines, hot=hot)
        sent += msg is not None
    return sent
