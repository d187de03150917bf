"""SQLite has one writer at a time: Hehe's writers queue for it instead of polling with sleeps,
and every way a transaction can end gives the slot back."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

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
        with pytest.raises(Exception):
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


async def test_the_one_trip_driver_answers_exactly_like_aiosqlite(tmp_path):
    """Hehe's SQLite connections run a statement and fetch its rows in one trip to the worker
    thread; results, row counts and generated ids must be those of plain aiosqlite."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'same.db'}"
    ours, plain = make_engine(url), make_engine(url, async_creator=None)
    try:
        async with ours.begin() as c:
            await c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)"))
        results = []
        for engine in (ours, plain):
            async with engine.begin() as c:
                ins = await c.execute(text("INSERT INTO t (name, n) VALUES ('甲', 1)"))
                many = await c.execute(text("INSERT INTO t (name, n) VALUES (:name, :n)"),
                                       [{"name": f"名{i}", "n": i} for i in range(2500)])
                upd = await c.execute(text("UPDATE t SET n = n + 1 WHERE n < 10"))
                rows = (await c.execute(text("SELECT name, n FROM t ORDER BY id"))).all()
                none = (await c.execute(text("SELECT name FROM t WHERE n < 0"))).all()
                await c.execute(text("DELETE FROM t"))
                results.append((ins.lastrowid, many.rowcount, upd.rowcount, rows, none))
        assert results[0] == results[1]
        assert len(results[0][3]) == 2501 and results[0][3][0] == ("甲", 2)
    finally:
        await ours.dispose()
        await plain.dispose()
