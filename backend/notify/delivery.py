"""Deliver the outbox: one worker per channel, never blocking anyone, never silently dropping.

* **Per channel.** Each channel (Telegram, the offline web/terminal channel) is delivered by its
  own task with its own lock, so a hanging Telegram never holds up the web chat, and a channel
  without a bot never heads anyone's queue (rows are selected per channel).
* **Claimed rows, short transactions.** A worker claims a batch (``claimed_until`` lease;
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas never take the same row), commits, and
  records each send's outcome in a transaction of its own. A worker that dies mid-send loses
  only its lease: the row is taken again when the lease runs out.
* **Bounded.** Every send has a short timeout (``HEHE_OUTBOX_SEND_TIMEOUT``, 10 s), at most
  ``HEHE_OUTBOX_CONCURRENCY`` sends run at once per channel, and Telegram's limits are kept
  (about 30 messages a second per bot, one a second per chat).
* **Telegram's answers.** 429 ``retry_after`` pauses the channel for that long; 403 (the person
  blocked the bot) marks the person unreachable on that channel and tells the admins; any other
  400 is final. Final failures and messages out of attempts become dead letters, kept and
  listed (``hehe outbox list --dead``, ``hehe outbox retry``) and announced to admins.
* **Long texts** are split at line breaks into Telegram-sized parts (buttons on the last);
  ``parts_sent`` makes a retry resume after the parts already delivered.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest, TelegramForbiddenError, TelegramNotFound, TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.clock import now
from backend.core.storage import ObjectStore
from backend.notify.models import Outbox, Unreachable
from backend.users.models import User

# The outbox row part being sent now ("outbox:<id>:<part>"): a channel that stores what it
# delivers (the web chat) keeps one line per key, so a retry after a crash does not repeat it.
DELIVERY_KEY: ContextVar[str | None] = ContextVar("hehe_delivery_key", default=None)

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
TEXT_LIMIT = 4096  # Telegram's limit for a message's text
CAPTION_LIMIT = 1024  # ... and for a photo's caption
LEASE = timedelta(minutes=2)
PER_BOT_INTERVAL = 1 / 30  # about 30 messages a second per bot
PER_CHAT_INTERVAL = 1.0  # about one message a second per chat


def markup(buttons: list | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=l, callback_data=d) for l, d in row] for row in buttons]
    )


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut at a line break where there is one
    in the second half of a part (else at a sentence end, else hard), nothing lost."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            cut = max(window.rfind(p) for p in "。！？；.!?;")
            cut = cut + 1 if cut >= limit // 2 else limit
        parts.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:].lstrip("\n")
    parts.append(rest)
    return [p for p in parts if p] or [""]


class _Pace:
    """Telegram's flood limits for one bot: spacing between any two sends and per chat."""

    def __init__(self, per_bot: float, per_chat: float):
        self.per_bot, self.per_chat = per_bot, per_chat
        self._next_any = 0.0
        self._next_chat: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self.paused_until = 0.0  # a 429 pauses the whole bot

    async def wait(self, chat_id: int) -> None:
        async with self._lock:
            t = time.monotonic()
            at = max(t, self._next_any, self._next_chat.get(chat_id, 0.0), self.paused_until)
            self._next_any = at + self.per_bot
            self._next_chat[chat_id] = at + self.per_chat
            if len(self._next_chat) > 10000:  # forget chats whose spacing has passed
                self._next_chat = {c: v for c, v in self._next_chat.items() if v > t}
        if at > t:
            await asyncio.sleep(at - t)


class Deliverer:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bots: dict[str, Bot], *,
                 send_timeout: float = 10.0, concurrency: int = 4, paced: Iterable[str] = ("telegram",),
                 store: ObjectStore | None = None, lease: timedelta = LEASE, leader: Any = None):
        self.sm = sessionmaker
        # backend.core.leader.Leadership (None: this process sends everything). Telegram's flood
        # limits (PER_BOT_INTERVAL, PER_CHAT_INTERVAL) count per bot across all replicas, so the
        # paced channels are sent by one process only, the leader; every replica sends the rest.
        self.leader = leader
        self.store = store  # where photo_path keys are (backend/core/storage.py)
        self.lease = lease  # a dead worker's claimed rows are taken again after this
        self.bots = bots
        self.wake = asyncio.Event()
        self.send_timeout = send_timeout
        self.concurrency = concurrency
        self.paced = set(paced)
        self._locks: dict[str, asyncio.Lock] = {}
        self._paces: dict[str, _Pace] = {}
        self._running: dict[str, asyncio.Task] = {}

    # ------------------------------------------------------------------ entry points
    async def deliver_due(self, channels: Iterable[str] | None = None, limit: int = 200) -> int:
        """Send what is due on ``channels`` (default: every channel with a bot), each channel
        independently. Returns how many messages were delivered."""
        names = [c for c in (self.bots if channels is None else channels) if c in self.bots]
        counts = await asyncio.gather(*(self._deliver_channel(c, limit) for c in names))
        return sum(counts)

    async def run(self, interval: float = 2.0) -> None:
        """The worker: every tick (or when woken) start a delivery for each channel that has
        none running, so one slow channel never delays another."""
        try:
            while True:
                for name in list(self.bots):
                    task = self._running.get(name)
                    if task is None or task.done():
                        self._running[name] = asyncio.create_task(self._guarded(name), name=f"outbox-{name}")
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
                # arrives while wake is set, and shutdown would then wait for this loop forever.
                try:
                    async with asyncio.timeout(interval):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                self.wake.clear()
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _guarded(self, channel: str) -> None:
        try:
            await self._deliver_channel(channel)
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.exception("outbox worker error on %s", channel)

    # ------------------------------------------------------------------ one channel
    async def _deliver_channel(self, channel: str, limit: int = 200) -> int:
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            bot = self.bots.get(channel)
            if bot is None or not self.sends(channel):
                return 0
            pace = self._paces.setdefault(
                channel, _Pace(PER_BOT_INTERVAL, PER_CHAT_INTERVAL) if channel in self.paced else _Pace(0, 0))
            if pace.paused_until > time.monotonic():
                return 0
            batch = await self._claim(channel, limit)
            if not batch:
                return 0
            gate = asyncio.Semaphore(self.concurrency)

            async def one(msg_id: int, chat_id: int) -> bool:
                async with gate:
                    if pace.paused_until > time.monotonic():
                        await self._release(msg_id)
                        return False
                    return await self._send_one(channel, bot, pace, msg_id, chat_id)

            results = await asyncio.gather(*(one(mid, chat) for mid, chat in batch))
            return sum(results)

    def sends(self, channel: str) -> bool:
        """Whether this process delivers ``channel`` now: a paced channel on the leader only."""
        return channel not in self.paced or self.leader is None or self.leader.is_leader

    async def _claim(self, channel: str, limit: int) -> list[tuple[int, int]]:
        """Take up to ``limit`` due rows of ``channel`` (a lease), oldest first; commit at once."""
        t = now()
        async with self.sm() as session:
            stmt = (
                select(Outbox.id, User.telegram_id)
                .join(User, User.id == Outbox.user_id)
                .outerjoin(Unreachable, (Unreachable.user_id == User.id) & (Unreachable.channel == channel))
                .where(User.channel == channel, Unreachable.user_id.is_(None),
                       Outbox.sent_at.is_(None), Outbox.dead_at.is_(None), Outbox.not_before <= t,
                       or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < t))
                .order_by(Outbox.not_before, Outbox.id)
                .limit(limit)
            )
            if session.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update(of=Outbox, skip_locked=True)
            rows = (await session.execute(stmt)).all()
            if not rows:
                return []  # nothing written: the read's transaction just ends
            await session.execute(update(Outbox).where(Outbox.id.in_([r[0] for r in rows]))
                                  .values(claimed_until=t + self.lease))
            await session.commit()
        return [(r[0], r[1]) for r in rows]

    async def _release(self, msg_id: int) -> None:
        async with self.sm() as session:
            await session.execute(update(Outbox).where(Outbox.id == msg_id).values(claimed_until=None))
            await session.commit()

    async def _send_one(self, channel: str, bot: Bot, pace: _Pace, msg_id: int, chat_id: int) -> bool:
        async with self.sm() as session:
            msg = await session.get(Outbox, msg_id)
            if msg is None or msg.sent_at is not None or msg.dead_at is not None:
                return False
            try:
                await self._send(bot, pace, chat_id, msg, session)
            except TelegramRetryAfter as e:
                pace.paused_until = time.monotonic() + e.retry_after
                msg.not_before = now() + timedelta(seconds=e.retry_after)
                msg.claimed_until = None
                msg.last_error = f"429 retry after {e.retry_after} s"
                log.warning("outbox %s: %s asks to wait %s s", msg.id, channel, e.retry_after)
            except TelegramForbiddenError as e:
                await self._unreachable(session, msg, channel, str(e))
            except (TelegramBadRequest, TelegramNotFound, TelegramUnauthorizedError) as e:
                await self._dead(session, msg, f"refused: {e}")
            except Exception as e:  # noqa: BLE001 - network errors, timeouts, 5xx: try again later
                msg.attempts += 1
                msg.last_error = (str(e) or type(e).__name__)[:500]
                msg.claimed_until = None
                if msg.attempts >= MAX_ATTEMPTS:
                    await self._dead(session, msg, f"gave up after {msg.attempts} attempts: {msg.last_error}")
                else:
                    msg.not_before = now() + timedelta(seconds=min(3600, 5 * 2 ** msg.attempts))
                    log.warning("outbox %s delivery failed (attempt %s): %s", msg.id, msg.attempts, msg.last_error)
            else:
                msg.sent_at = now()
                msg.claimed_until = None
            await session.commit()
            return msg.sent_at is not None

    async def _send(self, bot: Bot, pace: _Pace, chat_id: int, msg: Outbox, session: AsyncSession) -> None:
        """Send ``msg`` (resuming after ``parts_sent``), each call bounded by the send timeout."""
        kb = markup(msg.buttons)
        text = msg.text or ""
        if msg.photo_path:
            caption, rest = (text, "") if len(text) <= CAPTION_LIMIT else ("", text)
            parts = [None, *split_text(rest)] if rest else [None]
        else:
            caption, parts = "", split_text(text)
        for i, part in enumerate(parts):
            if i < msg.parts_sent:
                continue
            last = i == len(parts) - 1
            await pace.wait(chat_id)
            key = DELIVERY_KEY.set(f"outbox:{msg.id}:{i}")
            try:
                await self._send_part(bot, chat_id, msg, part, caption, kb if last else None)
            finally:
                DELIVERY_KEY.reset(key)
            msg.parts_sent = i + 1
            if not last:
                await session.commit()  # a retry resumes after this part

    async def _send_part(self, bot: Bot, chat_id: int, msg: Outbox, part: str | None, caption: str,
                         kb: InlineKeyboardMarkup | None) -> None:
        async with asyncio.timeout(self.send_timeout):
            if part is None:
                data = await _photo_of(self.store, msg.photo_path)
                await bot.send_photo(chat_id, BufferedInputFile(data, "photo.jpg"), caption=caption or None,
                                     reply_markup=kb)
            else:
                await bot.send_message(chat_id, part, reply_markup=kb)

    async def _dead(self, session: AsyncSession, msg: Outbox, why: str) -> None:
        msg.dead_at = now()
        msg.claimed_until = None
        msg.last_error = why[:500]
        log.error("outbox %s is a dead letter: %s", msg.id, why)
        await _tell_admins(session, "notify.dead_letter", dedupe=f"dead:{msg.id}", about=msg.user_id, id=msg.id)

    async def _unreachable(self, session: AsyncSession, msg: Outbox, channel: str, why: str) -> None:
        if await session.get(Unreachable, (msg.user_id, channel)) is None:
            session.add(Unreachable(user_id=msg.user_id, channel=channel, reason=why[:500]))
        await self._dead(session, msg, f"unreachable on {channel}: {why}")
        user = await session.get(User, msg.user_id)
        await _tell_admins(session, "notify.unreachable", dedupe=f"unreachable:{msg.user_id}:{channel}:{msg.id}",
                           about=msg.user_id, name=(user.name if user else "") or f"#{msg.user_id}", channel=channel)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


async def _photo_of(store: ObjectStore | None, path: str) -> bytes:
    """A message's picture: an object-store key (``files/ab/…``), or a file path (rows written
    before the object store)."""
    if store is None or os.path.isabs(path):
        return await asyncio.to_thread(_read, path)
    data = await store.get(path)
    if data is None:
        raise FileNotFoundError(path)
    return data


async def _tell_admins(session: AsyncSession, key: str, *, dedupe: str, about: int, **params) -> None:
    """Admins are told on their own channel; an admin is never told about a message to
    themselves (it could not reach them either: the log has it)."""
    from backend.notify.service import notify
    from backend.users.models import Role

    admins = (await session.scalars(select(User).where(User.role == Role.admin.value, User.active.is_(True)))).all()
    for admin in admins:
        if dedupe.endswith(f":{admin.id}") or params.get("user") == admin.id:
            continue
        await notify(session, admin, key, dedupe_key=f"{dedupe}:{admin.id}", urgent=True, **params)

