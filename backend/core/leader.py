"""Leader election among replicas on one PostgreSQL database (docs/deploy.md).

Most background work is safe on every replica: the due-date sweeps and the outbox claim their
rows (``FOR UPDATE SKIP LOCKED``). A few things are true singletons — the cron digests and
Telegram long polling — and run only on the *leader*: the replica holding a session-level
``pg_try_advisory_lock`` on a dedicated connection of its own (never a pooled one: a pooled
connection goes back to the pool, and a transaction-level lock ends with its transaction).

Followers try again every ``retry`` seconds. When the leader dies, PostgreSQL ends its session
and releases the lock, and the next follower to try takes over (within ``retry`` seconds plus
the time the server takes to notice a dead client; a SIGKILLed process closes its socket at once).
The leader checks its connection on every round too: a leader whose connection broke steps down
before another can have been elected for long (at most ``retry`` seconds of overlap).

On SQLite there is one server per data dir (backend.core.instance), so that process always leads.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import make_url

log = logging.getLogger("hehe.leader")

# One lock per database (advisory locks are per database): any fixed 64-bit number.
LOCK_KEY = 0x4865_6865_4C65_6164 & 0x7FFF_FFFF_FFFF_FFFF  # "HeheLead"
SEED_LOCK_KEY = 0x4865_6865_5365_6564  # "HeheSeed": start-up seeding, one replica at a time
Hook = Callable[[], Awaitable[None]]


async def one_at_a_time(session, key: int) -> None:
    """Make the rest of ``session``'s transaction exclusive among replicas (PostgreSQL: a
    transaction-level advisory lock, released at commit; SQLite has one writer anyway), e.g. for
    start-up seeding, which two replicas starting together would otherwise both do."""
    from sqlalchemy import text

    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


class Leadership:
    """Whether this process leads, and the hooks run when that changes."""

    def __init__(self, db_url: str | None = None, *, retry: float = 3.0, timeout: float = 5.0) -> None:
        # None: no election (SQLite, or no database server): this process leads.
        self.dsn = _asyncpg_dsn(db_url) if db_url and make_url(db_url).get_backend_name() == "postgresql" else None
        self.retry, self.timeout = retry, timeout
        self.on_gain: list[Hook] = []
        self.on_lose: list[Hook] = []
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self._conn = None
        self._task: asyncio.Task | None = None

    @property
    def elected(self) -> bool:
        """True when leadership is decided by an election (PostgreSQL)."""
        return self.dsn is not None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()

    async def start(self) -> None:
        """One attempt now (the first replica leads as soon as it serves), then keep trying."""
        await self._round()
        if self.elected:
            self._task = asyncio.create_task(self._loop(), name="leader-election")

    async def stop(self) -> None:
        from backend.core.listen import cancel

        await cancel(self._task)
        self._task = None
        await self._set(False)
        await self._close()  # closing the session releases the lock

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry)
            await self._round()

    async def _round(self) -> None:
        if not self.elected:
            await self._set(True)
            return
        import asyncpg

        try:
            if self._conn is None or self._conn.is_closed():
                if self.is_leader:  # the lock ended with the session that held it
                    raise ConnectionError("the leader's database session ended")
                self._conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
            assert self._conn is not None
            if self.is_leader:
                # The session is alive, so is its lock (only this session could unlock it).
                await self._conn.fetchval("SELECT 1", timeout=self.timeout)
            else:
                got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", LOCK_KEY,
                                                timeout=self.timeout)
                await self._set(bool(got))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - database unreachable: not the leader; retry next round
            if self.is_leader:
                log.warning("leader connection lost (%r): stepping down", e)
            else:
                log.debug("leader election round failed: %r", e)
            await self._set(False)
            await self._close()

    async def _set(self, leading: bool) -> None:
        """Leading starts once the gain hooks have run (the singletons are ready) and stops
        before the lose hooks run (nothing is served half-stopped)."""
        if leading == self.is_leader:
            return
        if not leading:
            self._following.set()
            self._leading.clear()
            if self.elected:
                log.info("this replica is a follower")
        for hook in (self.on_gain if leading else self.on_lose):
            try:
                await hook()
            except Exception:  # noqa: BLE001 - one singleton failing must not stop the others
                log.exception("leader hook %s failed", getattr(hook, "__name__", hook))
        if leading:
            self._leading.set()
            self._following.clear()
            log.info("this replica is the leader")

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self.timeout)
            except Exception:  # noqa: BLE001 - a dead connection: the server drops it anyway
                conn.terminate()


def asyncpg_dsn(db_url: str) -> str:
    """The SQLAlchemy URL of a PostgreSQL database as a DSN for a connection of asyncpg's own."""
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


_asyncpg_dsn = asyncpg_dsn
