"""Statistical questions about supervision items ("今年的代表督办事项有多少件？", "哪个区县检察建议
最多？", "未办结的督办按月变化"): the items inside the question's place and period, as rows the
knowledge base counts after applying the asker's scope (``KB_STATS``, found by
``knowledge_base.stats``). Deputies count the items they proposed or joined. Closed = 办结 or 不予受理."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import select

from backend.core.clock import TZ, local_now, to_local
from backend.supervision.models import ItemParticipant, SupervisionItem
from backend.users.models import Jurisdiction

CLOSED = ("closed", "declined")


async def item_rows(session, q) -> list[dict]:
    """One row per item within ``q.place_jids`` and ``q.period`` (duck-typed ``StatsQuery``):
    jurisdiction ids of its place, proposer and participants as owners, yyyymmdd, area, status,
    overdue (acceptance due and still waiting)."""
    stmt = (select(SupervisionItem.id, Jurisdiction.path, SupervisionItem.created_at, SupervisionItem.status,
                   SupervisionItem.proposer_id, SupervisionItem.area, SupervisionItem.acceptance_due)
            .join(Jurisdiction, Jurisdiction.id == SupervisionItem.jurisdiction_id))
    if q.place_jids:
        stmt = stmt.where(Jurisdiction.path.startswith("/" + "/".join(map(str, q.place_jids)) + "/"))
    if q.period is not None:
        stmt = stmt.where(SupervisionItem.created_at >= datetime.combine(q.period.start, time.min, tzinfo=TZ),
                          SupervisionItem.created_at <= datetime.combine(q.period.end, time.max, tzinfo=TZ))
    rows = (await session.execute(stmt)).all()
    owners: dict[int, set[int]] = {}
    ids = [r[0] for r in rows]
    for i in range(0, len(ids), 500):
        part = (await session.execute(select(ItemParticipant.item_id, ItemParticipant.user_id)
                                      .where(ItemParticipant.item_id.in_(ids[i:i + 500])))).all()
        for item_id, user_id in part:
            owners.setdefault(item_id, set()).add(user_id)
    now = local_now()
    out = []
    for item_id, path, created, status, proposer, area, due in rows:
        d = to_local(created).date()
        waiting = status in ("submitted", "appealed")
        out.append({"jurisdiction_ids": [int(p) for p in path.split("/") if p.isdigit()],
                    "owner_user_ids": sorted(owners.get(item_id, set()) | {proposer}),
                    "date": d.year * 10000 + d.month * 100 + d.day, "category": area or "",
                    "status": "closed" if status in CLOSED else "open",
                    "overdue": bool(waiting and due is not None and to_local(due) < now)})
    return out


KB_STATS = {"supervision": item_rows}
