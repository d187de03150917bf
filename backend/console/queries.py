"""The console's read side: case lists with combinable filters, the boards and figures of the
dashboard, and exports. Every query starts from the cases the person may see
(``backend.disputes.service`` decides that, as for the API and the chat); masking is the
service's too (``text_for`` / ``phone_for``). Nothing here decides who may do what."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from backend.core.clock import now, to_local
from backend.disputes import config as dconfig
from backend.disputes import service as disputes
from backend.disputes.models import OPEN_STATUSES, Dispute, Status
from backend.users.models import Jurisdiction, Role, User

OPEN = [s.value for s in OPEN_STATUSES]
NOT_ACCEPTED = [Status.new.value, Status.transferred.value, Status.escalated.value]
TABS = ("new", "accepted", "scheduled", "overdue", "at_risk", "escalated", "open", "all")
PAGE_SIZE = 50
MAX_EXPORT = 50_000
RISKS = ("red", "yellow", "blue", "green")


@dataclass
class Filters:
    """A list's filters, read from and written back to its URL (a saved view is that URL).
    Several values of one field are OR-ed; different fields are AND-ed."""
    tab: str = "open"
    status: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    risk: list[str] = field(default_factory=list)
    place: list[int] = field(default_factory=list)  # a county or township: the cases inside it
    month: list[str] = field(default_factory=list)
    q: str = ""
    window: int = 48  # hours: "at risk" = a deadline within this window
    page: int = 1

    @classmethod
    def parse(cls, params) -> Filters:
        def ints(name):
            return [int(v) for v in params.getlist(name) if v.strip().isdigit()]

        def many(name, allowed=None):
            vals = [v for raw in params.getlist(name) for v in raw.split(",") if v]
            return [v for v in vals if allowed is None or v in allowed]

        tab = params.get("tab", "open")
        window = params.get("window", "48")
        page = params.get("page", "1")
        return cls(tab=tab if tab in TABS else "open",
                   status=many("status", {s.value for s in Status}),
                   category=many("category", set(dconfig.get().categories)),
                   risk=many("risk", set(RISKS)), place=ints("place"),
                   month=[m for m in many("month") if len(m) == 7 and m[4] == "-"],
                   q=(params.get("q") or "").strip()[:64],
                   window=min(max(int(window), 1), 24 * 30) if window.isdigit() else 48,
                   page=max(int(page), 1) if page.isdigit() else 1)

    def query(self, **override) -> str:
        """The URL query of these filters (with ``override`` applied), defaults left out."""
        d = {"tab": self.tab, "status": self.status, "category": self.category, "risk": self.risk,
             "place": self.place, "month": self.month, "q": self.q, "window": self.window, "page": self.page}
        d.update(override)
        pairs = []
        for k, v in d.items():
            default = Filters().__dict__[k]
            if v == default or v in ("", [], None):
                continue
            pairs.extend((k, x) for x in v) if isinstance(v, list) else pairs.append((k, v))
        return urlencode(pairs)


def _deadline_passed(at: datetime):
    # NULL deadlines compared explicitly: NOT (NULL < at) would be NULL, not true, in SQL
    return or_(Dispute.overdue == 1,
               and_(Dispute.status.in_(NOT_ACCEPTED), Dispute.accept_due.is_not(None), Dispute.accept_due < at),
               and_(Dispute.resolve_due.is_not(None), Dispute.resolve_due < at))


def _deadline_within(at: datetime, until: datetime):
    return or_(and_(Dispute.status.in_(NOT_ACCEPTED), Dispute.accept_due >= at, Dispute.accept_due < until),
               and_(Dispute.resolve_due >= at, Dispute.resolve_due < until))


def _tab(tab: str, window: int, at: datetime):
    return {
        "new": Dispute.status == Status.new.value,
        "accepted": Dispute.status == Status.accepted.value,
        "scheduled": Dispute.status == Status.mediating.value,
        "escalated": Dispute.status == Status.escalated.value,
        "overdue": and_(Dispute.status.in_(OPEN), _deadline_passed(at)),
        "at_risk": and_(Dispute.status.in_(OPEN), ~_deadline_passed(at),
                        _deadline_within(at, at + timedelta(hours=window))),
        "open": Dispute.status.in_(OPEN),
    }.get(tab)


def conditions(user: User, f: Filters, at: datetime | None = None, *, with_tab: bool = True) -> list:
    at = at or now()
    out = []
    scope = disputes._scope(user)
    if scope is not None:
        out.append(scope)
    tab = _tab(f.tab, f.window, at) if with_tab else None
    if tab is not None:
        out.append(tab)
    if f.status:
        out.append(Dispute.status.in_(f.status))
    if f.category:
        out.append(Dispute.category.in_(f.category))
    if f.risk:
        out.append(Dispute.risk.in_(f.risk))
    if f.month:
        out.append(Dispute.month.in_(f.month))
    if f.place:
        outer = aliased(Jurisdiction)
        inside = (select(Jurisdiction.id).join(outer, Jurisdiction.path.startswith(outer.path))
                  .where(outer.id.in_(f.place)))
        out.append(Dispute.place_id.in_(inside))
    if f.q:
        like = f"%{f.q}%"
        # Free text is searched only by those who read it unmasked (the handling mediators), so a
        # search cannot confirm a masked phone or ID number; everyone may search case numbers.
        if Role(user.role) in (Role.mediator, Role.admin):
            out.append(or_(Dispute.number.like(like), Dispute.description.like(like)))
        else:
            out.append(Dispute.number.like(like))
    return out


async def case_list(session: AsyncSession, user: User, f: Filters, *, limit: int = PAGE_SIZE
                    ) -> tuple[list[Dispute], dict[str, int]]:
    """One page of the list, and how many cases each queue tab holds under the other filters
    (one pass over the person's cases, whatever the number of tabs)."""
    at = now()
    counted = [func.count(Dispute.id)] + [func.sum(case((_tab(t, f.window, at), 1), else_=0)) for t in TABS[:-1]]
    row = (await session.execute(select(*counted).where(*conditions(user, f, at, with_tab=False)))).one()
    counts = {"all": row[0] or 0, **{t: int(n or 0) for t, n in zip(TABS[:-1], row[1:])}}
    rows = await session.scalars(select(Dispute).where(*conditions(user, f, at)).order_by(Dispute.id.desc())
                                 .limit(limit).offset((f.page - 1) * limit))
    return list(rows), counts


# ---------------------------------------------------------------- export
EXPORT_COLUMNS = ("number", "category", "status", "place", "unit", "created", "accept_due", "resolve_due",
                  "overdue", "risk", "phone", "description")


async def export_rows(session: AsyncSession, user: User, f: Filters, *, limit: int = MAX_EXPORT) -> list[list]:
    """The rows of a list as this person may see them (the service masks), at most ``limit``.
    Read as plain columns: 50k ORM objects with their places would take seconds."""
    places = {j.id: j for j in (await session.execute(select(Jurisdiction.id, Jurisdiction.name, Jurisdiction.path)
                                                      )).all()}
    cfg = dconfig.get()
    cols = (Dispute.id, Dispute.number, Dispute.category, Dispute.status, Dispute.place_id, Dispute.unit_id,
            Dispute.citizen_id, Dispute.mediator_id, Dispute.created_at, Dispute.accept_due, Dispute.resolve_due,
            Dispute.overdue, Dispute.risk, Dispute.phone, Dispute.description)
    q = select(*cols).where(*conditions(user, f)).order_by(Dispute.id.desc()).limit(limit)
    out = []
    for r in await session.execute(q):
        # the service's masking functions read these attributes of a case
        d = SimpleNamespace(id=r.id, unit=places.get(r.unit_id), place=places.get(r.place_id),
                            citizen_id=r.citizen_id, mediator_id=r.mediator_id, phone=r.phone)
        out.append([r.number, cfg.category(r.category).zh, r.status, _name(places, r.place_id),
                    _name(places, r.unit_id), _fmt(r.created_at), _fmt(r.accept_due), _fmt(r.resolve_due),
                    bool(r.overdue), r.risk, disputes.phone_for(user, d),
                    disputes.text_for(user, d, r.description)])
    return out


def _name(places: dict, jid: int | None) -> str:
    j = places.get(jid)
    return j.name if j else ""


def _fmt(dt: datetime | None) -> str:
    return to_local(dt).strftime("%Y-%m-%d %H:%M") if dt else ""


def to_csv(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")  # the BOM lets Excel read Chinese


def to_xlsx(header: list[str], rows: list[list]) -> bytes:
    from backend.console import xlsx  # written directly: openpyxl took 5-20 s for 50,000 rows

    return xlsx.write(header, rows)
