"""SQLAlchemy 2 async engine, sessions and the declarative base.

SQLite (WAL) is the embedded default; the same models run on PostgreSQL.
"""
from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util.concurrency import await_only, in_greenlet

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Stores aware datetimes as UTC and always returns aware UTC datetimes.

    SQLite drops tzinfo; PostgreSQL keeps it. This type hides the difference.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def make_engine(url: str, **kw) -> AsyncEngine:
    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"timeout": 30})
    engine = create_async_engine(url, **kw)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _rec):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        _queue_sqlite_writers(engine)
    return engine


_WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_HOLDS_WRITE_LOCK = "hehe_holds_write_lock"


def _queue_sqlite_writers(engine: AsyncEngine, timeout: float = 30.0) -> None:
    """SQLite has one writer at a time. When two write transactions meet, the second one polls
    with sleeps (1, 2, 5, 10 … 100 ms) until the first commits — under load most of the time is
    spent sleeping (docs/benchmarks.md). Writers of this engine therefore queue on an asyncio
    lock instead: taken just before a transaction's first write statement (where SQLite takes its
    own write lock: pysqlite begins a transaction there) and released right after its commit or
    rollback. Readers are not affected (WAL). Other processes still meet ``busy_timeout``."""
    locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
    sync = engine.sync_engine
    dialect = sync.dialect

    def lock() -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop not in locks:
            locks[loop] = asyncio.Lock()
        return locks[loop]

    async def acquire() -> asyncio.Lock:
        held = lock()
        try:
            await asyncio.wait_for(held.acquire(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"database busy: no write slot within {timeout:.0f} s") from None
        return held

    def release(conn) -> None:
        try:
            info = conn.info
        except (AttributeError, NotImplementedError):  # a bare DBAPI connection (first connect)
            return
        held = info.pop(_HOLDS_WRITE_LOCK, None)
        if held is not None:
            held.release()

    @event.listens_for(sync, "before_cursor_execute")
    def _before_write(conn, _cursor, statement, _params, _context, _many):
        if _HOLDS_WRITE_LOCK in conn.info or not _WRITE_SQL.match(statement) or not in_greenlet():
            return  # (outside SQLAlchemy's async bridge there is no loop to queue on)
        conn.info[_HOLDS_WRITE_LOCK] = await_only(acquire())

    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def commit_then_release(dbapi_conn) -> None:
        try:
            do_commit(dbapi_conn)
        finally:
            release(dbapi_conn)

    def rollback_then_release(dbapi_conn) -> None:
        try:
            do_rollback(dbapi_conn)
        finally:
            release(dbapi_conn)

    dialect.do_commit = commit_then_release
    dialect.do_rollback = rollback_then_release

    @event.listens_for(sync, "checkin")
    def _checkin(_dbapi_conn, record):  # a connection never returns to the pool holding it
        release(record)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(sm: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sm() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
