"""SQLite has one writer at a time: concurrent writers all commit (they wait for the lock, off
the event loop), every way a transaction can end gives the lock back, readers never wait."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from backend.core.db import make_engine, make_sessionmaker


@pytest.fixture
async def sm(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as c:
        await c.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, who INTEGER, note TEXT)"))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_many_writers_holding_transactions_across_awaits_all_commit(sm):
    async def writer(i: int) -> None:
        async with sm() as s:
            await s.execute(text("INSERT INTO notes (who, note) VALUES (:w, 'a')"), {"w": i})
            await asyncio.sleep(0.005)  # e.g. a handler sending a message before it commits
            await s.execute(text("INSERT INTO notes (who, note) VALUES (:w, 'b')"), {"w": i})
            await s.commit()

    await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(30))), 20)
    async with sm() as s:
        assert await s.scalar(text("SELECT count(*) FROM notes")) == 60


@pytest.mark.parametrize("ending", ["rollback", "close", "error"])
async def test_every_end_of_a_write_transaction_frees_the_slot(sm, ending):
    s = sm()
    await s.execute(text("INSERT INTO notes (who, note) VALUES (1, 'first')"))
    if ending == "rollback":
        await s.rollback()
        await s.close()
    elif ending == "close":
        await s.close()  # abandoned without commit
    else:
        with pytest.raises(OperationalError):
            await s.execute(text("INSERT INTO no_such_table VALUES (1)"))
        await s.close()

    async def second_writer() -> None:
        async with sm() as s2:
            await s2.execute(text("INSERT INTO notes (who, note) VALUES (2, 'second')"))
            await s2.commit()

    await asyncio.wait_for(second_writer(), 2)  # would wait 30 s if the slot leaked
    async with sm() as s3:
        assert await s3.scalar(text("SELECT count(*) FROM notes WHERE who = 1")) == 0
        assert await s3.scalar(text("SELECT count(*) FROM notes WHERE who = 2")) == 1


async def test_readers_do_not_wait_for_a_writer(sm):
    w = sm()
    await w.execute(text("INSERT INTO notes (who, note) VALUES (3, 'pending')"))
    async with sm() as r:  # WAL: reads proceed while the write transaction is open
        n = await asyncio.wait_for(r.scalar(text("SELECT count(*) FROM notes")), 2)
    assert n == 0
    await w.commit()
    await w.close()
