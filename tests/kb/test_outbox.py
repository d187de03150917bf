"""The ingestion seam: enqueue inside the caller's transaction, drain, reindex; the migration."""
from datetime import date

import pytest
from sqlalchemy import select

from backend.core.db import make_engine, make_sessionmaker
from knowledge_base import models
from knowledge_base.models import KbQueue, drain, enqueue, register_source, reindex_all, unregister_source
from knowledge_base.records import Record, Scope

FAKE_DB: dict[int, dict] = {}


async def build(session, ref_id):
    row = FAKE_DB.get(int(ref_id))
    if row is None:
        return None
    return Record(id=row["no"], kind="dispute", title=row["title"], text=row["text"], category="邻里纠纷",
                  location="椒江区", jurisdiction_ids=[1, 2], date=date(2026, 5, 1))


async def all_ids(session):
    return list(FAKE_DB)


@pytest.fixture
async def sm(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(KbQueue.__table__.create)
    # Only the fake source during the test; the real slices' sources (registered by other
    # tests through discover_sources) are put back afterwards.
    saved = dict(models._SOURCES)
    models._SOURCES.clear()
    register_source("dispute", build, all_ids)
    FAKE_DB.clear()
    yield make_sessionmaker(engine)
    unregister_source("dispute")
    models._SOURCES.update(saved)
    await engine.dispose()


async def test_enqueue_drain_follows_every_change(sm, kb):
    FAKE_DB[1] = {"no": "TZ-JJ-20260501-0001", "title": "噪音", "text": "楼下麻将馆深夜噪音扰民，调解后限时营业。"}
    async with sm() as s:  # the domain service's own transaction
        await enqueue(s, "dispute", 1)
        await s.rollback()  # …rolled back: nothing to index
    assert await drain(sm, kb) == 0
    async with sm() as s:
        await enqueue(s, "dispute", 1)
        await s.commit()
    assert await drain(sm, kb) == 1
    assert kb.search("麻将馆噪音", Scope.admin())[0].id == "TZ-JJ-20260501-0001"

    FAKE_DB[1]["text"] = "楼下棋牌室深夜喧哗，社区调解。"
    async with sm() as s:
        assert await enqueue(s, "dispute", 1) is not None
        assert await enqueue(s, "dispute", 1) is None  # one queue row per record per transaction
        await s.commit()
    assert await drain(sm, kb) == 1
    assert kb.count() == 1 and kb.search("棋牌室", Scope.admin(), mode="keyword")[0].id == "TZ-JJ-20260501-0001"

    async with sm() as s:
        await enqueue(s, "dispute", 1, op="delete")
        await s.commit()
    await drain(sm, kb)
    assert kb.count() == 0
    async with sm() as s:
        rows = (await s.execute(select(KbQueue))).scalars().all()
        assert all(r.done_at is not None for r in rows)


async def test_failures_are_retried_and_recorded(sm, kb):
    async with sm() as s:
        await enqueue(s, "unknown-kind", 5)
        await s.commit()
    assert await drain(sm, kb) == 0
    async with sm() as s:
        row = (await s.execute(select(KbQueue))).scalar_one()
        assert row.done_at is None and row.attempts == 1 and "no source" in row.error


async def test_builder_none_means_delete_and_reindex(sm, kb):
    FAKE_DB.update({i: {"no": f"TZ-JJ-2026050{i}-0001", "title": f"案{i}", "text": f"第{i}起纠纷的经过。"} for i in (1, 2, 3)})
    out = await reindex_all(sm, kb, progress=False)
    assert out == {"dispute": 3} and kb.count() == 3
    del FAKE_DB[2]
    async with sm() as s:
        await enqueue(s, "dispute", 2)  # builder returns None → removed
        await s.commit()
    await drain(sm, kb)
    assert sorted(kb.store.all_ids()) == ["TZ-JJ-20260501-0001", "TZ-JJ-20260503-0001"]
    del FAKE_DB[3]
    await reindex_all(sm, kb, progress=False)  # stale records of the source are removed
    assert kb.store.all_ids() == ["TZ-JJ-20260501-0001"]


def test_migration_matches_model(tmp_path):
    import importlib

    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import create_engine, inspect

    mig = importlib.import_module("migrations.versions.kb_0001_queue")
    assert (mig.down_revision, mig.branch_labels, mig.depends_on) == ("0001_foundation", ("kb",), None)
    eng = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with eng.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            mig.upgrade()
        cols = {c["name"] for c in inspect(conn).get_columns("kb_queue")}
        assert cols == {c.name for c in KbQueue.__table__.columns}
        with Operations.context(MigrationContext.configure(conn)):
            mig.downgrade()
        assert "kb_queue" not in inspect(conn).get_table_names()


def test_discover_sources_is_harmless():
    assert isinstance(models.discover_sources(), list)
