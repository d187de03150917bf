"""Persistent FSM storage in the application database.

A half-finished report survives a restart: the conversation state and its draft data
live in ``fsm_state`` (same database, SQLite or PostgreSQL).
"""
from __future__ import annotations

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
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]):
        self.sm = sessionmaker

    async def close(self) -> None:
        return None

    async def _row(self, s: AsyncSession, key: StorageKey) -> FsmState:
        row = await s.get(FsmState, _key(key))
        if row is None:
            row = FsmState(key=_key(key), state=None, data={})
            s.add(row)
        return row

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        async with self.sm() as s:
            row = await self._row(s, key)
            row.state = state.state if isinstance(state, State) else state
            await s.commit()

    async def get_state(self, key: StorageKey) -> str | None:
        async with self.sm() as s:
            return await s.scalar(select(FsmState.state).where(FsmState.key == _key(key)))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self.sm() as s:
            row = await self._row(s, key)
            row.data = dict(data)
            await s.commit()

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self.sm() as s:
            data = await s.scalar(select(FsmState.data).where(FsmState.key == _key(key)))
            return dict(data or {})
