"""The SQL FSM storage: write-through, reads served from memory, the database always current."""
from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import event, select

from bot.fsm_storage import FsmState, SQLStorage


class Form(StatesGroup):
    a = State()
    b = State()


async def test_writes_reach_the_database_and_reads_come_from_memory(ctx):
    storage = SQLStorage(ctx.sm)
    key = StorageKey(bot_id=1, chat_id=42, user_id=42)
    statements: list[str] = []
    event.listen(ctx.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: statements.append(stmt))

    assert await storage.get_state(key) is None and await storage.get_data(key) == {}
    await storage.set_state(key, Form.a)
    await storage.set_data(key, {"description": "邻居噪音"})
    await storage.update_data(key, {"place": "椒江区"})
    async with ctx.sm() as s:
        row = await s.scalar(select(FsmState))
        assert row.state == Form.a.state and row.data == {"description": "邻居噪音", "place": "椒江区"}

    statements.clear()
    for _ in range(5):
        assert await storage.get_state(key) == Form.a.state
        assert (await storage.get_data(key))["place"] == "椒江区"
    assert statements == []  # served from memory

    data = await storage.get_data(key)
    data["place"] = "mutated by a caller"
    assert (await storage.get_data(key))["place"] == "椒江区"  # callers get copies

    await storage.set_state(key, None)
    await storage.set_data(key, {})
    fresh = SQLStorage(ctx.sm)  # a restart: empty cache, reads the database
    assert await fresh.get_state(key) is None and await fresh.get_data(key) == {}


async def test_cache_is_bounded(ctx):
    storage = SQLStorage(ctx.sm, cache_size=3)
    for i in range(6):
        await storage.set_state(StorageKey(bot_id=1, chat_id=i, user_id=i), Form.b)
    assert len(storage._cache) == 3
    assert await storage.get_state(StorageKey(bot_id=1, chat_id=0, user_id=0)) == Form.b.state  # from the DB
