"""Two updates of one person are never handled at once, even on two replicas (issue #19).

aiogram takes ``events_isolation.lock(key)`` around each update before it reads the
conversation's state (FSMContextMiddleware), so a lock here covers the whole update. On
PostgreSQL :class:`ReplicaIsolation` holds, per person, an in-process lock and a session-level
advisory lock on one dedicated connection of this process (``pg_try_advisory_lock``, retried
while another replica holds it: the connection is never blocked, so other people's updates pass).
A replica that dies releases its locks with its session.

Once the lock is held, ``on_acquire(key)`` drops what this process cached about the person (the
conversation state, the user row): another replica may have changed it since.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager

from aiogram.fsm.storage.base import BaseEventIsolation, StorageKey

log = logging.getLogger("hehe.bot")
WAIT_LIMIT = 60.0  # seconds; past this an update goes ahead (a hung replica must not stall a person)


def person_key(chat_id: int, user_id: int) -> int:
    """A signed 64-bit advisory-lock key of one person's conversation (its own name space)."""
    h = hashlib.blake2b(f"hehe-person:{chat_id}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


class ReplicaIsolation(BaseEventIsolation):
    def __init__(self, dsn: str, on_acquire: Callable[[StorageKey], None] = lambda _k: None,
                 *, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.on_acquire = on_acquire
        self.timeout = timeout
        self._local: dict[int, tuple[asyncio.Lock, int]] = {}  # key → (lock, users)
        self._conn = None
        self._io = asyncio.Lock()  # one query at a time on the connection

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        k = person_key(key.chat_id, key.user_id)
        local, users = self._local.get(k, (asyncio.Lock(), 0))
        self._local[k] = (local, users + 1)
        try:
            async with local:  # one update of the person in this process …
                conn = await self._acquire(k)  # … and in every replica
                try:
                    self.on_acquire(key)
                    yield
                finally:
                    if conn is not None:
                        await self._release(conn, k)
        finally:
            local, users = self._local[k]
            if users <= 1:
                del self._local[k]
            else:
                self._local[k] = (local, users - 1)

    async def _acquire(self, k: int):
        """The connection now holding ``k`` (None: going ahead without the replica lock)."""
        import asyncpg

        loop = asyncio.get_running_loop()
        start, pause = loop.time(), 0.01
        while True:
            try:
                async with self._io:
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
                    conn = self._conn
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", k, timeout=self.timeout):
                        return conn
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the database is away: the update itself will fail or pass
                log.warning("person lock unavailable (%r); handling the update without it", e)
                await self._drop()
                return None
            if loop.time() - start > WAIT_LIMIT:
                log.warning("person lock still held elsewhere after %s s; handling the update anyway", WAIT_LIMIT)
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def _release(self, conn, k: int) -> None:
        try:
            async with self._io:
                if conn is self._conn and not conn.is_closed():
                    await conn.fetchval("SELECT pg_advisory_unlock($1::bigint)", k, timeout=self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken connection released every lock anyway
            log.warning("releasing a person lock failed (%r)", e)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        async with self._io:
            conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self.timeout)
            except Exception:  # noqa: BLE001
                conn.terminate()
