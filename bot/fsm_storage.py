"""Persistent FSM storage in the application database.

A half-finished report survives a restart: the conversation state and its draft data
live in ``fsm_state`` (same database, SQLite or PostgreSQL).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from sqlalchemy import JSON, String, bindparam, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.core.db import Base


class FsmState(Base):
    __tablename__ = "fsm_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict] = mapped_column(JSON, default=dict)


# One statement per write, the same on SQLite (≥ 3.24) and PostgreSQL.
_UPSERT = text("INSERT INTO fsm_state (key, state, data) VALUES (:k, :s, :d) "
               "ON CONFLICT (key) DO UPDATE SET state = excluded.state, data = excluded.data"
               ).bindparams(bindparam("d", type_=JSON))
_DELETE = text("DELETE FROM fsm_state WHERE key = :k")


def storage_key(k: StorageKey) -> str:
    return f"{k.bot_id}:{k.chat_id}:{k.user_id}:{k.thread_id or 0}:{k.destiny}"


_key = storage_key


class UpdateWrites:
    """The FSM changes made while one update is handled. They are written by the update's own
    session at its next commit (a ``before_commit`` hook), so a step of a conversation commits
    together with what the handler saved — or, when the handler fails, not at all (the person
    stays at the step they were at, and nothing is half-written)."""

    def __init__(self, storage: "SQLStorage"):
        self.storage = storage
        self.changes: dict[str, tuple[str | None, dict[str, Any]]] = {}  # not yet written
        self.touched: set[str] = set()  # every key changed during the update
        self.connected = False  # has the update's session run anything on a connection yet?

    def add(self, k: str, state: str | None, data: dict[str, Any]) -> None:
        self.changes[k] = (state, data)
        self.touched.add(k)

    def bind(self, session: AsyncSession) -> None:
        """Write the pending changes whenever ``session`` commits (also mid-handler)."""
        event.listen(session.sync_session, "before_commit", self.write)
        event.listen(session.sync_session, "after_begin", self._connected)

    def _connected(self, *_: Any) -> None:
        self.connected = True

    def only_write(self, session: AsyncSession) -> bool:
        """Is the conversation step — one statement — all the update writes, with nothing run on
        the database before it (no read, no statement of the handler's, no pending object)?"""
        return (not self.connected and len(self.changes) == 1
                and not (session.new or session.dirty or session.deleted))

    def write(self, sync_session: Session) -> None:
        if not self.changes:
            return
        changes, self.changes = self.changes, {}
        for k, (state, data) in changes.items():
            if state is None and not data:  # a finished conversation leaves no row behind
                sync_session.execute(_DELETE, {"k": k})
            else:
                sync_session.execute(_UPSERT, {"k": k, "s": state, "d": data})

    def forget(self) -> None:
        """A transaction of the update rolled back: the cache must not keep what may not have
        committed (the next read goes to the database)."""
        for k in self.touched:
            self.storage.forget(k)
        self.changes.clear()
        self.touched.clear()


_update_writes: ContextVar[UpdateWrites | None] = ContextVar("hehe_fsm_update_writes", default=None)


class SQLStorage(BaseStorage):
    """Persistent FSM storage with a write-through cache.

    * Reads are served from the cache after the first load (aiogram reads the state of every
      update; most updates change nothing). The process that runs the Dispatcher owns the
      conversations, so the cache cannot go stale; after a restart it starts empty. With
      replicas on PostgreSQL each update first takes the person's lock and drops their entry
      (bot/isolation.py): another replica may have moved the conversation on.
    * Writes made while an update is handled (inside :meth:`update_writes`) are collected and
      written by the update's session when it commits, one statement per conversation key; writes made
      elsewhere (a scheduler job, the API) are written at once in their own transaction.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cache_size: int = 20000):
        self.sm = sessionmaker
        self._cache: OrderedDict[str, tuple[str | None, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size

    async def close(self) -> None:
        return None

    @contextmanager
    def update_writes(self) -> Iterator[UpdateWrites]:
        uw = UpdateWrites(self)
        token = _update_writes.set(uw)
        try:
            yield uw
        finally:
            _update_writes.reset(token)

    def forget(self, k: str) -> None:
        self._cache.pop(k, None)

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

    async def _store(self, key: StorageKey, state: str | None, data: dict[str, Any]) -> None:
        k = _key(key)
        uw = _update_writes.get()
        if uw is not None and uw.storage is not self:
            uw = None
        if self._cache.get(k) == (state, data) and (uw is None or k not in uw.changes):
            return  # no change (e.g. /start clearing a conversation that was not there): no write
        self._remember(k, state, data)
        if uw is not None:
            uw.add(k, state, data)
            return
        try:
            async with self.sm() as s:  # outside an update: a transaction of its own
                uw = UpdateWrites(self)
                uw.bind(s)
                uw.add(k, state, data)
                await s.commit()
        except BaseException:
            self.forget(k)
            raise

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        _, data = await self._load(key)
        await self._store(key, value, dict(data))

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._load(key))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        state, _ = await self._load(key)
        await self._store(key, state, dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return dict((await self._load(key))[1])
