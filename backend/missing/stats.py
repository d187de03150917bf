"""Statistical questions about missing-person reports ("今年走失人员报告有多少件？", "哪个乡镇走失
报告最多？"): the reports inside the question's place and period, as rows the knowledge base
counts after applying the asker's scope (``KB_STATS``, found by ``knowledge_base.stats``).
Reports only (kind ``missing``), not found-person registrations. Open = still searched for."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import select

from backend.core.clock import TZ, to_local
from backend.missing.models import PersonCase
from backend.users.models import Jurisdiction


async def report_rows(session, q) -> list[dict]:
    """One row per missing-person report within ``q.place_jids`` and ``q.period`` (duck-typed
    ``StatsQuery``): jurisdiction ids of its place, reporter as owner, yyyymmdd, status."""
    stmt = (select(Jurisdiction.path, PersonCase.created_at, PersonCase.status, PersonCase.reporter_id)
            .join(Jurisdiction, Jurisdiction.id == PersonCase.jurisdiction_id)
            .where(PersonCase.kind == "missing"))
    if q.place_jids:
        stmt = stmt.where(Jurisdiction.path.startswith("/" + "/".join(map(str, q.place_jids)) + "/"))
    if q.period is not None:
        stmt = stmt.where(PersonCase.created_at >= datetime.combine(q.period.start, time.min, tzinfo=TZ),
                          PersonCase.created_at <= datetime.combine(q.period.end, time.max, tzinfo=TZ))
    out = []
    for path, created, status, reporter in (await session.execute(stmt)).all():
        d = to_local(created).date()
        out.append({"jurisdiction_ids": [int(p) for p in path.split("/") if p.isdigit()],
                    "owner_user_ids": [reporter] if reporter else [], "date": d.year * 10000 + d.month * 100 + d.day,
                    "category": "", "status": "open" if status == "open" else "closed", "overdue": False})
    return out


KB_STATS = {"missing": report_rows}
