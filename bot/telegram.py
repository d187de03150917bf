"""Real Telegram: long polling by default, a webhook when HEHE_WEBHOOK_URL is set.

Telegram is optional at start-up: Hehe serves the web chat and the API at once and connects to
Telegram in the background, retrying with backoff while Telegram fails or hangs (each call
bounded by a timeout). ``HEHE_TELEGRAM_API_URL`` points the bot at a local Bot API server.

Replies a handler sends while Telegram is failing are not lost: :class:`QueueWhenDown` (an aiogram
request middleware, public API) puts a text reply that fails with a network error, a timeout or
a server error into the outbox, which delivers it once Telegram is back.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, InlineKeyboardMarkup, Message

log = logging.getLogger("hehe.telegram")
WEBHOOK_PATH = "/telegram/webhook"

MAX_BACKOFF = 60.0


def make_bot(settings: Any) -> Bot:
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url) if settings.telegram_api_url else None,
        timeout=settings.telegram_request_timeout)
    return Bot(settings.telegram_token, session=session)


async def start_telegram(ctx: Any) -> Bot:
    """Create the bot and connect in the background; returns at once."""
    if ctx.settings.webhook_url and not ctx.settings.webhook_secret:
        raise RuntimeError("HEHE_WEBHOOK_SECRET is required with HEHE_WEBHOOK_URL")
    bot = make_bot(ctx.settings)
    bot.session.middleware(QueueWhenDown(ctx))
    ctx.telegram_bot = bot
    ctx.bots["telegram"] = bot
    ctx.tasks.append(asyncio.create_task(connect_forever(ctx, bot), name="telegram-connect"))
    return bot


async def connect_forever(ctx: Any, bot: Bot) -> None:
    """Register the webhook (or drop it and start polling), retrying until Telegram answers.
    The outbox delivers to Telegram only once this has succeeded."""
    s = ctx.settings
    delay = 1.0
    while True:
        try:
            async with asyncio.timeout(s.telegram_request_timeout):
                if s.webhook_url:
                    await bot.set_webhook(s.webhook_url.rstrip("/") + WEBHOOK_PATH, secret_token=s.webhook_secret,
                                          drop_pending_updates=False)
                else:
                    await bot.delete_webhook(drop_pending_updates=False)
            break
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - Telegram down, hanging or refusing: try again later
            ctx.telegram_error = f"{type(e).__name__}: {e}"[:300]
            log.warning("telegram not reachable (%s); retrying in %.0f s", ctx.telegram_error, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)
    ctx.telegram_error = None
    # The outbox sends through a bot of its own, without QueueWhenDown: its failures are retried
    # from the row it already has, never queued a second time.
    ctx.deliverer.bots["telegram"] = make_bot(s)
    ctx.deliverer.wake.set()
    if s.webhook_url:
        log.info("telegram webhook registered")
        return
    await poll_while_leading(ctx, bot)


async def poll_while_leading(ctx: Any, bot: Bot) -> None:
    """Long polling is a singleton (two pollers would steal each other's updates): with several
    replicas only the leader polls (backend.core.leader), and it stops when it stops leading."""
    leader = ctx.leader
    while True:
        if leader is not None:
            await leader.wait_leading()
        log.info("telegram long polling started")
        # aiogram's polling retries network errors itself, with backoff.
        polling = asyncio.create_task(ctx.dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False))
        if leader is None:
            await polling
            return
        lost = asyncio.create_task(leader.wait_following())
        try:
            await asyncio.wait({polling, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            polling.cancel()
            raise
        finally:
            lost.cancel()
        if polling.done():
            return polling.result()
        log.info("no longer the leader: telegram long polling stops")
        await ctx.dispatcher.stop_polling()
        await polling


class QueueWhenDown(BaseRequestMiddleware):
    """A text reply that Telegram could not take (network error, timeout, 5xx) goes to the outbox
    instead of being lost; the handler gets a placeholder message and its transaction commits."""

    def __init__(self, ctx: Any):
        self.ctx = ctx

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Any:
        try:
            return await make_request(bot, method)
        except (TelegramNetworkError, TelegramServerError, TimeoutError) as e:
            if not isinstance(method, SendMessage) or not isinstance(method.chat_id, int):
                raise
            if not await self._enqueue(method):
                raise
            log.warning("telegram failed (%s); reply to chat %s queued in the outbox", e, method.chat_id)
            return Message(message_id=0, date=0, chat=Chat(id=method.chat_id, type="private"), text=method.text)

    async def _enqueue(self, method: SendMessage) -> bool:
        from sqlalchemy import select

        from backend.core.db import session_scope
        from backend.notify.models import Outbox
        from backend.users.models import User

        markup = method.reply_markup
        buttons = ([[[b.text, b.callback_data or ""] for b in row] for row in markup.inline_keyboard]
                   if isinstance(markup, InlineKeyboardMarkup) else None)
        async with session_scope(self.ctx.sm) as session:
            uid = await session.scalar(select(User.id).where(User.telegram_id == method.chat_id,
                                                             User.channel == "telegram"))
            if uid is None:
                return False
            session.add(Outbox(user_id=uid, text=method.text, buttons=buttons, urgent=True))
        self.ctx.deliverer.wake.set()
        return True


def secret_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time compare of the X-Telegram-Bot-Api-Secret-Token header."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
