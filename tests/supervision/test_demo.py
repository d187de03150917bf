from sqlalchemy import func, select

from backend.demo import seed_demo
from backend.core.db import make_engine, make_sessionmaker
from backend.notify.models import Outbox
from backend.supervision.models import SupervisionItem


async def test_demo_seed_is_idempotent(settings):
    await seed_demo(settings)
    await seed_demo(settings)
    engine = make_engine(settings.db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = list(await s.scalars(select(SupervisionItem).order_by(SupervisionItem.id)))
            new_item = await s.scalar(select(Outbox).where(Outbox.text.contains("新的代表督办事项")))
    finally:
        await engine.dispose()
    assert [r.status for r in rows] == ["submitted", "suggested", "closed"]
    assert rows[2].rating == "satisfied"
    # the procurator's notice of the waiting item carries its decision buttons
    assert [label for label, _data in new_item.buttons[0]] == ["受理", "不予受理", "转为线索"]
