"""SQLAlchemy 2 async engine, sessions and the declarative base.

SQLite (WAL) is the embedded default; the same models run on PostgreSQL.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
BUSY_TIMEOUT_MS = 30_000

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
    """The application's async engine (aiosqlite or asyncpg), configured as their documentation says.

    SQLite: WAL journal (readers never wait for the writer), ``synchronous=NORMAL`` (safe in WAL
    mode), foreign keys on, and a busy timeout: a second writer — another update, a scheduler job,
    another process — waits for the lock in its connection's worker thread, never on the event
    loop. The driver begins a transaction at the first write statement, so a transaction never
    has to upgrade a read snapshot to a write lock."""
    # Enough connections for the updates in flight (an update may hold two: its own session and
    # a cache miss of the FSM storage).
    kw.setdefault("pool_size", 20)
    kw.setdefault("max_overflow", 20)
    engine = create_async_engine(url, **kw)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    for pragma in (*SQLITE_PRAGMAS, f"busy_timeout={BUSY_TIMEOUT_MS}"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


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
