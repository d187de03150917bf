from __future__ import annotations

import pytest

from tests.reliability.fake_telegram import FakeTelegram


@pytest.fixture
async def fake_tg():
    tg = await FakeTelegram().start()
    try:
        yield tg
    finally:
        await tg.stop()


@pytest.fixture
def tg_settings(settings, fake_tg):
    """Settings of a Hehe with a Telegram bot pointed at the fake Bot API server."""
    return settings.model_copy(update={
        "telegram_token": "123456:TEST-fake-telegram-token", "telegram_api_url": fake_tg.url,
        "telegram_request_timeout": 1.0, "outbox_send_timeout": 1.0})
