"""Real Telegram: long polling by default, a webhook when HEHE_WEBHOOK_URL is set."""
from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiogram import Bot

log = logging.getLogger("hehe.telegram")
WEBHOOK_PATH = "/telegram/webhook"


async def start_telegram(ctx: Any) -> Bot:
    s = ctx.settings
    bot = Bot(s.telegram_token)
    ctx.telegram_bot = bot
    ctx.bots["telegram"] = bot
    ctx.deliverer.bots["telegram"] = bot
    if s.webhook_url:
        if not s.webhook_secret:
            raise RuntimeError("HEHE_WEBHOOK_SECRET is required with HEHE_WEBHOOK_URL")
        await bot.set_webhook(s.webhook_url.rstrip("/") + WEBHOOK_PATH, secret_token=s.webhook_secret,
                              drop_pending_updates=False)
        log.info("telegram webhook registered")
    else:
        await bot.delete_webhook(drop_pending_updates=False)
        ctx.tasks.append(asyncio.create_task(
            ctx.dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False),
            name="telegram-polling"))
        log.info("telegram long polling started")
    return bot


def secret_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time compare of the X-Telegram-Bot-Api-Secret-Token header."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
