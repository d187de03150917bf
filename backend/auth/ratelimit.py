"""Fixed-window counters in the database, so a limit holds across processes and restarts, and
the Telegram updates already handled (a re-delivery is ignored by every replica)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.auth.models import RateCounter, SeenUpdate
from backend.core.clock import now

MINUTE = 60
HOUR = 3600
DAY = 86400


def _window(seconds: int) -> int:
    t = int(now().timestamp())
    return t - t % seconds


async def hit(session: AsyncSession | AsyncConnection, key: str, seconds: int, limit: int) -> bool:
    """Count one event for ``key`` in the current window of ``seconds``; False (and nothing
    counted) once ``limit`` events are in it. A conditional UPDATE, so concurrent requests
    never count past the limit. ``session``: an ORM session or a plain connection."""
    window = _window(seconds)
    k = f"{key}/{seconds}"[:128]
    for _ in range(5):
        res = await session.execute(update(RateCounter).where(
            RateCounter.key == k, RateCounter.window == window, RateCounter.count < limit)
            .values(count=RateCounter.count + 1))
        if res.rowcount:
            return True
        count = await session.scalar(select(RateCounter.count).where(RateCounter.key == k, RateCounter.window == window))
        if limit < 1 or (count is not None and count >= limit):
            return False
        if count is not None:
            # below the limit: another request committed the row after this UPDATE's snapshot
            # was taken (PostgreSQL, READ COMMITTED) — update it now
            continue
        res = await session.execute(_insert(session)(RateCounter).values(key=k, window=window, count=1)
                                    .on_conflict_do_nothing(index_elements=["key", "window"]))
        if res.rowcount:
            return True
        # another request created the row first: count on it
    return False


class LocalCounters:
    """:func:`hit`'s fixed windows counted in this process's memory, for a database that only one
    process serves (SQLite: backend.core.instance refuses a second), where a write per event would
    share nothing and cost more than the rest of a bot update (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}  # key/seconds → (window end, count)
        self._sweep_at = 0

    async def hit(self, key: str, seconds: int, limit: int) -> bool:
        start = _window(seconds)
        if start >= self._sweep_at:  # at most once a window: drop the windows that have ended
            self.counts = {k: v for k, v in self.counts.items() if v[0] > start}
            self._sweep_at = start + seconds
        k = f"{key}/{seconds}"
        end, count = self.counts.get(k, (start + seconds, 0))
        if end <= start:
            end, count = start + seconds, 0
        if count >= limit:
            return False
        self.counts[k] = (end, count + 1)
        return True


async def hits(session: AsyncSession, rules: list[tuple[str, int, int]]) -> bool:
    """Every (key, seconds, limit) rule admits one more event (all are counted)."""
    ok = True
    for key, seconds, limit in rules:
        ok = await hit(session, key, seconds, limit) and ok
    return ok


def _insert(session: AsyncSession | AsyncConnection):
    dialect = session.dialect if isinstance(session, AsyncConnection) else session.get_bind().dialect
    return pg_insert if dialect.name == "postgresql" else sqlite_insert


async def seen_update(session: AsyncSession | AsyncConnection, bot_id: int, update_id: int) -> bool:
    """Has some process handled this Telegram update already?"""
    return bool(await session.scalar(select(exists().where(
        SeenUpdate.bot_id == bot_id, SeenUpdate.update_id == update_id))))


async def mark_update(session: AsyncSession | AsyncConnection, bot_id: int, update_id: int) -> None:
    """Remember a handled Telegram update (once, whoever writes it first)."""
    await session.execute(_insert(session)(SeenUpdate).values(bot_id=bot_id, update_id=update_id, seen_at=now())
                          .on_conflict_do_nothing(index_elements=["bot_id", "update_id"]))


async def prune(session: AsyncSession) -> None:
    """Drop counters of windows that ended more than a day ago (per-minute ones: a minute ago),
    and handled updates older than a day (Telegram keeps an undelivered update 24 h)."""
    await session.execute(delete(RateCounter).where(RateCounter.window < _window(1) - 2 * DAY))
    await session.execute(delete(RateCounter).where(RateCounter.key.like(f"%/{MINUTE}"),
                                                    RateCounter.window < _window(1) - 2 * MINUTE))
    await session.execute(delete(SeenUpdate).where(SeenUpdate.seen_at < now() - timedelta(days=1)))
