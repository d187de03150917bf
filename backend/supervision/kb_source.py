"""Supervision items as knowledge-base records (the ingestion seam in knowledge_base.models).

The service enqueues ``("supervision", item.id)`` in the same transaction as every change;
the knowledge base's drain calls :func:`build` later. Records are not public: staff of the
jurisdiction and the item's deputies (owners) may find them.
"""
from __future__ import annotations

from sqlalchemy import select

from backend.supervision import export, service as svc
from backend.supervision.models import SupervisionItem
from knowledge_base.models import register_source
from knowledge_base.records import Record, jurisdiction_ids_from_path


async def build(session, ref_id) -> Record | None:
    item = await session.get(SupervisionItem, int(ref_id))
    if item is None:
        return None
    d = await export.summary(session, item)
    owners = [p.user_id for p in await svc.participants(session, item)]
    parts = [item.description]
    for s in d["suggestions"]:
        parts.append(f"检察建议（{s['agency']}）：{s['content']} 回复：{s['reply']}（{s['rectified']}）")
    for e in d["events"]:
        if e["note"]:
            parts.append(f"{e['at']} {e['what']}：{e['note']}")
    return Record(
        id=item.number, kind="supervision", title=item.title, text="\n".join(parts), category=item.area,
        location=item.jurisdiction.name, jurisdiction_ids=jurisdiction_ids_from_path(item.jurisdiction.path),
        date=svc.to_local(item.created_at).date(), owner_user_ids=owners, public=False,
    )


async def all_ids(session) -> list:
    return list(await session.scalars(select(SupervisionItem.id).order_by(SupervisionItem.id)))


register_source("supervision", build, all_ids)
