"""SQLAlchemy 2 async engine, sessions and the declarative base.

SQLite (WAL) is the embedded default; the same models run on PostgreSQL.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import aiosqlite
from sqlalchemy import DateTime, MetaData, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util.concurrency import await_only, in_greenlet

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
BUSY_TIMEOUT_MS = 30_000
INLINE_COMMITS_PER_CHECKPOINT = 250  # a conversation step writes 2–4 pages; SQLite's own is 1,000 pages

log = logging.getLogger("hehe.db")

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


def pin_current_thread(cpu: int | None) -> set[int] | None:
    """Pin the calling thread (Linux) to ``cpu``; returns its previous CPU set (None: no change)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return before


def make_engine(url: str, loop_cpu: int | None = None, **kw) -> AsyncEngine:
    """``loop_cpu``: the CPU the event loop is pinned to (``HEHE_LOOP_CPU``); SQLite's worker
    threads are pinned there too, so a hand-off to them is a context switch on one core."""
    # Keep enough connections open for the updates in flight (an update may hold two: its own
    # session and a cache miss of the FSM storage). Beyond pool_size, SQLAlchemy opens and closes
    # an overflow connection per checkout — on SQLite a new thread plus the PRAGMAs each time,
    # which halved bot throughput with 8 updates in flight (docs/benchmarks.md).
    kw.setdefault("pool_size", 20)
    kw.setdefault("max_overflow", 20)
    path = make_url(url).database or ":memory:"
    if url.startswith("sqlite"):
        kw.setdefault("async_creator", _one_trip_connector(path, loop_cpu))
        kw.setdefault("pool_reset_on_return", None)  # see _rollback_only_if_open
    engine = create_async_engine(url, **kw)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _rec):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            for pragma in (*SQLITE_PRAGMAS, f"busy_timeout={BUSY_TIMEOUT_MS}"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        _queue_sqlite_writers(engine)

        @event.listens_for(engine.sync_engine, "engine_disposed")
        def _close_loop_connection(_engine) -> None:
            LOOP_COMMITS.close(path)

        @event.listens_for(engine.sync_engine, "reset")
        def _rollback_only_if_open(dbapi_conn, _record, state):
            """The pool's reset-on-return rolls back every connection it gets back, even right
            after a commit: one more trip to the worker thread per transaction. Roll back only
            a connection that really has a transaction open."""
            if state.asyncio_safe and not state.transaction_was_reset and dbapi_conn._connection.in_transaction:
                dbapi_conn.rollback()
    return engine


class _OneTripCursor:
    """An aiosqlite cursor that runs a statement and fetches its rows in ONE trip to the
    connection's worker thread. aiosqlite's own cursor makes four (create, execute, fetch,
    close); each trip is a thread hand-off and an event-loop wake-up, and they were most of the
    cost of a bot update's database work (docs/benchmarks.md). Results are fetched whole, as
    SQLAlchemy does anyway for non-streaming results."""

    arraysize = 1

    def __init__(self, conn: "_OneTripConnection"):
        self._conn = conn
        self._cursor: sqlite3.Cursor | None = None
        self._rows: collections.deque = collections.deque()

    async def __aenter__(self) -> "_OneTripCursor":
        return self

    async def __aexit__(self, *exc) -> None:
        self._rows.clear()

    def _run(self, method: str, sql: str, params):  # on the worker thread
        cur = self._conn._conn.cursor()
        getattr(cur, method)(sql, params)
        return cur, (cur.fetchall() if cur.description else [])

    async def execute(self, sql: str, parameters=None) -> "_OneTripCursor":
        self._cursor, rows = await self._conn._execute(self._run, "execute", sql, parameters or ())
        self._rows = collections.deque(rows)
        return self

    async def executemany(self, sql: str, seq_of_parameters) -> "_OneTripCursor":
        self._cursor, rows = await self._conn._execute(self._run, "executemany", sql, seq_of_parameters)
        self._rows = collections.deque(rows)
        return self

    async def fetchone(self):
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list:
        n = size or self.arraysize
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchall(self) -> list:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:  # the sqlite3 cursor is released with this object
        self._rows.clear()

    @property
    def description(self):
        return self._cursor.description if self._cursor is not None else None

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount if self._cursor is not None else -1

    @property
    def lastrowid(self):
        return self._cursor.lastrowid if self._cursor is not None else None


class _LoopCommits:
    """Small write transactions committed right on the event loop.

    A bot update's conversation step is one or two tiny writes. Committed on the event loop, a
    few writes to the WAL file (no fsync: ``synchronous=NORMAL``) cost less than the hand-off
    to a worker thread and the wake-ups they replace (docs/benchmarks.md). They run on a
    connection of their own per database file and thread, set up so that the loop never
    blocks: it tries SQLite's write lock without waiting (held by anyone else → the caller
    commits the usual way, on a worker thread, where waiting is harmless), and it never
    checkpoints the WAL (every ``INLINE_COMMITS_PER_CHECKPOINT`` such commits to a file, a
    checkpoint runs in a worker thread)."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], sqlite3.Connection] = {}
        self._since_checkpoint: collections.Counter = collections.Counter()
        self._checkpoints: set[asyncio.Future] = set()

    def _connection(self, path: str) -> sqlite3.Connection:
        key = (path, threading.get_ident())
        conn = self._conns.get(key)
        if conn is None:
            conn = sqlite3.connect(path, timeout=0, check_same_thread=False)
            try:
                for pragma in (*SQLITE_PRAGMAS, "wal_autocheckpoint=0"):
                    conn.execute(f"PRAGMA {pragma}")
            except sqlite3.Error:
                conn.close()
                raise
            self._conns[key] = conn
        return conn

    def commit(self, path: str, todo: list[tuple[str, tuple]]) -> bool:
        """Run ``todo`` (``?`` statements) as one transaction now; False (nothing written) when
        the write lock is busy or the file cannot be opened right now."""
        if path in ("", ":memory:"):
            return False
        try:
            conn = self._connection(path)
        except sqlite3.OperationalError:
            return False
        try:
            _execute_then_commit(conn, todo)
        except BaseException as e:
            conn.rollback()  # never leave this connection holding the write lock
            if isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                return False
            raise
        self._since_checkpoint[path] += 1
        if self._since_checkpoint[path] >= INLINE_COMMITS_PER_CHECKPOINT:
            self._since_checkpoint[path] = 0
            self._checkpoint_soon(path)
        return True

    def _checkpoint_soon(self, path: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to keep free: checkpoint right here
            _checkpoint(path)
            return
        job = loop.run_in_executor(None, _checkpoint, path)
        self._checkpoints.add(job)
        job.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, job: asyncio.Future) -> None:
        self._checkpoints.discard(job)
        if not job.cancelled() and job.exception() is not None:  # e.g. the file is gone: next time
            log.warning("WAL checkpoint failed: %s", job.exception())

    def close(self, path: str) -> None:
        """Close this thread's connection to ``path`` (an engine was disposed; reopened if used)."""
        conn = self._conns.pop((path, threading.get_ident()), None)
        if conn is not None:
            conn.close()


def _execute_then_commit(conn: sqlite3.Connection, todo: list[tuple[str, tuple]]) -> None:
    for sql, params in todo:
        conn.execute(sql, params)
    conn.commit()


def _checkpoint(path: str) -> None:  # in a worker thread
    with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


LOOP_COMMITS = _LoopCommits()


class _OneTripConnection(aiosqlite.Connection):
    """aiosqlite connection with one-trip cursors, and statements that can ride along with
    the commit (see :func:`execute_at_commit`). A transaction made only of such statements is
    committed on the event loop (:class:`_LoopCommits`) when it can be."""

    def __init__(self, connector, iter_chunk_size: int, path: str):
        super().__init__(connector, iter_chunk_size)
        self.at_commit: list[tuple[str, tuple]] = []
        self._path = path
        # Trips queued (counted on the loop) and finished (counted on the worker thread): equal
        # when the worker is idle. One writer each, so no lost updates. A trip whose caller was
        # cancelled still runs to its end.
        self._trips_queued = self._trips_done = 0

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or not self._connection:
            raise ValueError("Connection closed")  # as aiosqlite, before anything is queued

        def tracked():
            try:
                return fn(*args, **kwargs)
            finally:
                self._trips_done += 1

        self._trips_queued += 1
        return await super()._execute(tracked)

    def cursor(self) -> _OneTripCursor:  # type: ignore[override] - no trip to create it
        return _OneTripCursor(self)

    async def commit(self) -> None:
        todo, self.at_commit = self.at_commit, []
        idle = self._trips_queued == self._trips_done
        if todo and idle and not self._conn.in_transaction and LOOP_COMMITS.commit(self._path, todo):
            return
        await self._execute(lambda: _execute_then_commit(self._conn, todo))

    async def rollback(self) -> None:
        self.at_commit = []
        await super().rollback()


_USED_DB = "hehe_used_database"


@event.listens_for(Session, "after_begin")
def _mark_used(session: Session, _transaction, _connection) -> None:
    """A session's first statement (or flush) begins a transaction on a connection: from then
    on its work must be committed through it (see :func:`loop_commit_path`)."""
    session.info[_USED_DB] = True


def loop_commit_path(session: AsyncSession, *, ignore_info: tuple[str, ...] = ()) -> str | None:
    """The SQLite file ``session`` works on, if writes can be committed on the event loop
    without it (``LOOP_COMMITS.commit``): the session has not touched the database — no
    transaction begun on a connection, nothing to flush, no work waiting for its commit
    (``session.info`` holds only ``ignore_info`` keys). A bot update whose only write is its
    conversation step is committed this way: no pool checkout, no ORM commit. None: commit the
    session as usual (other databases, a session that did something)."""
    ss = session.sync_session
    if ss.new or ss.dirty or ss.deleted or any(k not in ignore_info for k in ss.info):
        return None  # (a session that began a transaction on a connection has _USED_DB in info)
    url = session.bind.url
    if url.get_backend_name() != "sqlite":
        return None
    return url.database or ":memory:"


def execute_at_commit(conn, sql: str, params: tuple) -> bool:
    """Run ``sql`` (SQLite ``?`` parameters) together with the commit of ``conn``'s transaction,
    instead of in a trip of its own to the database thread. A bot update's conversation step is
    written this way: its whole database work becomes one trip, or none when the step is all the
    transaction writes (:class:`_OneTripConnection` commits it on the loop; docs/benchmarks.md).
    Takes the engine's write slot like any write. Returns False on other databases: the
    caller then executes its statement normally."""
    driver = getattr(conn.connection.dbapi_connection, "_connection", None)
    take_slot = getattr(conn.engine, "_hehe_take_write_slot", None)
    if not isinstance(driver, _OneTripConnection) or take_slot is None or not in_greenlet():
        return False
    take_slot(conn)
    driver.at_commit.append((sql, params))
    return True


def _one_trip_connector(path: str, cpu: int | None = None):
    def open_here() -> sqlite3.Connection:  # runs on the connection's worker thread
        pin_current_thread(cpu)
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)

    async def connect() -> _OneTripConnection:
        conn = _OneTripConnection(open_here, 64, path)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite
        return await conn
    return connect


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
        if not held.locked():  # the common case: no queue, no timer
            await held.acquire()
            return held
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

    def take_slot(conn) -> None:
        if _HOLDS_WRITE_LOCK not in conn.info:
            conn.info[_HOLDS_WRITE_LOCK] = await_only(acquire())

    sync._hehe_take_write_slot = take_slot

    @event.listens_for(sync, "before_cursor_execute")
    def _before_write(conn, _cursor, statement, _params, _context, _many):
        if _WRITE_SQL.match(statement) and in_greenlet():  # (outside the async bridge: no loop)
            take_slot(conn)

    def then_release(end):  # the dialect's commit or rollback, then the slot is free again
        def run(dbapi_conn) -> None:
            try:
                end(dbapi_conn)
            finally:
                release(dbapi_conn)
        return run

    dialect.do_commit = then_release(dialect.do_commit)
    dialect.do_rollback = then_release(dialect.do_rollback)

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
