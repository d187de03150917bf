"""Demo data is idempotent; case changes are queued for the knowledge base in the same
transaction and the dispute source builds records without personal data."""
from __future__ import annotations

from sqlalchemy import func, select

from backend.core.db import session_scope
from backend.demo import seed_users
from backend.disputes import demo
from backend.disputes.models import Dispute


async def test_demo_seed_is_idempotent_and_kb_records_are_clean(ctx):
    from knowledge_base.models import KbQueue
    import backend.disputes.kb_source as src

    for _ in range(2):
        async with session_scope(ctx.sm) as s:
            await seed_users(s)
            await demo.seed(s, ctx.settings)
    async with ctx.sm() as s:
        rows = list(await s.scalars(select(Dispute).order_by(Dispute.id)))
        assert len(rows) == 3
        assert [d.status for d in rows] == ["new", "accepted", "archived"]
        assert rows[1].risk == "red"
        queued = await s.scalar(select(func.count(KbQueue.id)).where(KbQueue.kind == "dispute"))
        assert queued >= 3
        rec = await src.build(s, rows[0].id)
        rec.validate()
        assert rec.id == rows[0].number and "13800001001" not in rec.text and "502" not in rec.text
        assert rows[0].place.id in rec.jurisdiction_ids
