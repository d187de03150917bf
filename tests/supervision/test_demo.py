from sqlalchemy import func, select

from backend.demo import seed_demo
from backend.core.db import make_engine, make_sessionmaker
from backend.supervision.models import SupervisionItem


async def test_demo_seed_is_idempotent(settings):
    await seed_demo(settings)
    await seed_demo(settings)
    engine = make_engine(settings.db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = list(await s.scalars(select(SupervisionItem).order_by(SupervisionItem.id)))
    finally:
        await engine.dispose()
    assert [r.status for r in rows] == ["submitted", "suggested", "closed"]
    assert rows[2].rating == "satisfied"
