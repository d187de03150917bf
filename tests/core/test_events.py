"""Domain events: a service publishes what happened; what the composition root subscribed runs
in the publisher's transaction and is kept or undone with it."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from backend.core.db import make_engine, make_sessionmaker
from backend.core.events import publish, subscribe, unsubscribe
from backend.users.models import AuditLog


@dataclass(frozen=True)
class CaseNoted:  # an event of this test's own (the app subscribes the real ones)
    kind: str
    ref_id: int


async def test_a_subscribed_handler_writes_in_the_publishers_transaction_and_rolls_back_with_it(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'e.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(AuditLog.__table__.create)
    sm = make_sessionmaker(engine)

    async def note(session, event: CaseNoted) -> None:
        session.add(AuditLog(actor="test", action="changed", note=f"{event.kind}:{event.ref_id}"))

    subscribe(CaseNoted, note)
    subscribe(CaseNoted, note)  # once is enough
    try:
        async with sm() as s:
            await publish(s, CaseNoted("dispute", 7))
            await s.commit()
        async with sm() as s:
            await publish(s, CaseNoted("dispute", 8))
            await s.rollback()  # the change was refused: its event leaves nothing behind
        async with sm() as s:
            assert list(await s.scalars(select(AuditLog.note))) == ["dispute:7"]
    finally:
        unsubscribe(CaseNoted, note)
    async with sm() as s:  # nobody subscribed: publishing does nothing
        await publish(s, CaseNoted("dispute", 9))
        await s.commit()
        assert list(await s.scalars(select(AuditLog.note))) == ["dispute:7"]
    await engine.dispose()
