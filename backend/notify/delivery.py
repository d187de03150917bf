"""Deliver the outbox: retries with backoff, never loses a message."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiogram import Bot
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.clock import now
from backend.notify.models import Outbox
from backend.users.models import User

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


def markup(buttons: list | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=l, callback_data=d) for l, d in row] for row in buttons]
    )


class Deliverer:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bots: dict[str, Bot]):
        self.sm = sessionmaker
        self.bots = bots
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def deliver_due(self, limit: int = 200) -> int:
        """Send every message that is due. Returns how many were sent."""
        async with self._lock:
            sent = 0
            async with self.sm() as session:
                rows = (
                    await session.execute(
                        select(Outbox, User)
                        .join(User, User.id == Outbox.user_id)
                        .where(Outbox.sent_at.is_(None), Outbox.not_before <= now(),
                               Outbox.attempts < MAX_ATTEMPTS)
                        .order_by(Outbox.not_before, Outbox.id)
                        .limit(limit)
                    )
                ).all()
                for msg, user in rows:
                    bot = self.bots.get(user.channel)
                    if bot is None:
                        continue
                    try:
                        await self._send(bot, user, msg)
                        msg.sent_at = now()
                        sent += 1
                    except Exception as e:  # noqa: BLE001 - a bad message must not stop the rest
                        msg.attempts += 1
                        msg.last_error = str(e)[:500]
                        msg.not_before = now() + timedelta(seconds=min(3600, 5 * 2 ** msg.attempts))
                        log.warning("outbox %s delivery failed (attempt %s): %s", msg.id, msg.attempts, e)
                    await session.commit()
            return sent

    async def _send(self, bot: Bot, user: User, msg: Outbox) -> None:
        kb = markup(msg.buttons)
        if msg.photo_path:
            with open(msg.photo_path, "rb") as fh:
                data = fh.read()
            await bot.send_photo(user.telegram_id, BufferedInputFile(data, "photo.jpg"),
                                 caption=msg.text[:1024], reply_markup=kb)
        else:
            await bot.send_message(user.telegram_id, msg.text, reply_markup=kb)

    async def run(self, interval: float = 2.0) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # noqa: BLE001
                log.exception("outbox worker error")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives while wake is set, and shutdown would then wait for this loop forever.
            try:
                async with asyncio.timeout(interval):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
