"""Persistent FSM storage in the application database.

A half-finished report survives a restart: the conversation state and its draft data
live in ``fsm_state`` (same database, SQLite or PostgreSQL).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from sqlalchemy import JSON, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.db import Base


class FsmState(Base):
    __tablename__ = "fsm_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict] = mapped_column(JSON, default=dict)


def _key(k: StorageKey) -> str:
    return f"{k.bot_id}:{k.chat_id}:{k.user_id}:{k.thread_id or 0}:{k.destiny}"


class SQLStorage(BaseStorage):
    """Writes go to the database at once; reads are served from a write-through cache after
    the first load (aiogram reads the state of every update, most updates change nothing).
    The process that runs the Dispatcher owns the conversations, so the cache cannot go stale;
    after a restart it starts empty and reads the database."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cache_size: int = 20000):
        self.sm = sessionmaker
        self._cache: OrderedDict[str, tuple[str | None, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size

    async def close(self) -> None:
        return None

    async def _row(self, s: AsyncSession, key: StorageKey) -> FsmState:
        row = await s.get(FsmState, _key(key))
        if row is None:
            row = FsmState(key=_key(key), state=None, data={})
            s.add(row)
        return row

    def _remember(self, k: str, state: str | None, data: dict[str, Any]) -> None:
        self._cache[k] = (state, data)
        self._cache.move_to_end(k)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _load(self, key: StorageKey) -> tuple[str | None, dict[str, Any]]:
        k = _key(key)
        hit = self._cache.get(k)
        if hit is not None:
            return hit
        async with self.sm() as s:
            row = (await s.execute(select(FsmState.state, FsmState.data).where(FsmState.key == k))).first()
        value = (row.state, dict(row.data or {})) if row else (None, {})
        self._remember(k, *value)
        return value

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self.sm() as s:
            row = await self._row(s, key)
            row.state = value
            data = dict(row.data or {})
            await s.commit()
        self._remember(_key(key), value, data)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._load(key))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self.sm() as s:
            row = await self._row(s, key)
            row.data = dict(data)
            value = row.state
            await s.commit()
        self._remember(_key(key), value, dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return dict((await self._load(key))[1])
