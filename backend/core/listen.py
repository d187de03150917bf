"""PostgreSQL LISTEN/NOTIFY for replicas (docs/deploy.md): one dedicated asyncpg connection per
process listens on a channel and hands each notification's payload to a callback.

A writer notifies in the transaction that writes (``SELECT pg_notify('<channel>', payload)``):
PostgreSQL delivers the notification when — and only if — that transaction commits, to every
listening session, this process's own included. While the connection is down notifications are
missed, so after every (re)connect ``on_connect`` runs (the caller wakes everyone who waits: they
read the database again). Not used on SQLite: there is one process, it wakes its waiters itself.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("hehe.listen")


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel a background task and wait until it has ended."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class Listener:
    def __init__(self, dsn: str, channel: str, on_message: Callable[[str], None],
                 on_connect: Callable[[], None] = lambda: None, *, retry: float = 2.0, timeout: float = 5.0) -> None:
        self.dsn, self.channel = dsn, channel
        self.on_message, self.on_connect = on_message, on_connect
        self.retry, self.timeout = retry, timeout
        self.connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Listen from now on (returns once listening, or after one failed try: it keeps trying)."""
        self._task = asyncio.create_task(self._run(), name=f"listen-{self.channel}")
        try:
            await asyncio.wait_for(self.connected.wait(), self.timeout)
        except asyncio.TimeoutError:
            log.warning("not listening on %s yet; retrying in the background", self.channel)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def _deliver(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            self.on_message(payload)
        except Exception:  # noqa: BLE001 - one bad payload must not stop listening
            log.exception("handling a notification on %s failed", self.channel)

    async def _run(self) -> None:
        import asyncpg

        while True:
            conn = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
                conn.add_termination_listener(lambda _c, ended=lost: ended.set())
                await conn.add_listener(self.channel, self._deliver)
                self.connected.set()
                self.on_connect()
                while not lost.is_set():
                    try:  # a half-open connection (network cut) is found by a round trip
                        await asyncio.wait_for(lost.wait(), 30)
                    except asyncio.TimeoutError:
                        await conn.fetchval("SELECT 1", timeout=self.timeout)
                log.warning("listening connection for %s ended; reconnecting", self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - database away: waiters fall back to re-reading
                log.warning("listening on %s failed (%r); retrying in %s s", self.channel, e, self.retry)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(self.retry)
