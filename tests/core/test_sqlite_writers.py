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


async def _step(sm, who: int) -> None:
    """A transaction whose only write rides with the commit — a bot update's conversation step."""
    from backend.core.db import execute_at_commit

    async with sm() as s:
        conn = await s.connection()
        assert await conn.run_sync(lambda c: execute_at_commit(
            c, "INSERT INTO notes (who, note) VALUES (?, 'step')", (who,)))
        await s.commit()


async def test_a_step_commits_on_the_loop_but_never_waits_there_for_another_process(sm, tmp_path):
    """Steps commit on the event loop without waiting for the lock: while another process holds
    SQLite's write lock, a step waits on the worker thread and the loop keeps serving."""
    import sqlite3

    await _step(sm, 1)  # the common case: committed at once
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    other.execute("INSERT INTO notes (who, note) VALUES (99, 'other')")
    step = asyncio.create_task(_step(sm, 2))
    ticks = 0
    for _ in range(20):  # the loop stays free while the step waits
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20 and not step.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(step, 5)
    async with sm() as s:
        rows = (await s.execute(text("SELECT who FROM notes ORDER BY id"))).scalars().all()
    assert rows == [1, 99, 2]


async def test_steps_committed_on_the_loop_are_checkpointed_into_the_database_file(sm, tmp_path):
    import sqlite3

    from backend.core.db import INLINE_COMMITS_PER_CHECKPOINT

    for i in range(INLINE_COMMITS_PER_CHECKPOINT + 5):
        await _step(sm, i)

    def rows_in_main_file() -> int:  # the main file alone, WAL ignored: what checkpoints copied
        main_file = sqlite3.connect(f"file:{tmp_path / 'w.db'}?immutable=1", uri=True)
        try:
            return main_file.execute("SELECT count(*) FROM notes").fetchone()[0]
        except sqlite3.OperationalError:  # not even the table yet
            return 0
        finally:
            main_file.close()

    for _ in range(100):  # the checkpoint runs in a worker thread, after the 250th commit
        if rows_in_main_file() >= INLINE_COMMITS_PER_CHECKPOINT:
            break
        await asyncio.sleep(0.05)
    assert INLINE_COMMITS_PER_CHECKPOINT <= rows_in_main_file() <= INLINE_COMMITS_PER_CHECKPOINT + 5


async def test_a_failed_step_on_the_loop_writes_nothing_and_frees_the_lock(sm):
    from backend.core.db import execute_at_commit

    async def failing_step() -> None:  # the same id twice: IntegrityError at the second insert
        async with sm() as s:
            conn = await s.connection()
            for note in ("a", "b"):
                await conn.run_sync(lambda c, n=note: execute_at_commit(
                    c, "INSERT INTO notes (id, who, note) VALUES (7, 7, ?)", (n,)))
            await s.commit()

    with pytest.raises(Exception, match="UNIQUE"):
        await failing_step()
    await asyncio.wait_for(_step(sm, 8), 2)  # would wait 30 s behind a held write lock
    async with sm() as s:
        assert (await s.execute(text("SELECT who FROM notes ORDER BY id"))).scalars().all() == [8]
