"""Sign-in and the web transcript on SQLite and PostgreSQL: counters that hold under
concurrency, codes that cannot be tried more than five times, history, files and buttons after
a restart."""
from __future__ import annotations

import asyncio
import logging

import pytest
import time_machine
from sqlalchemy import select

from backend.auth import ratelimit
from backend.auth.models import OneTimeCode
from backend.core.db import session_scope
from tests.web.conftest import MID_HOUR, code_from_log, phone_sign_in, running
from tests.web.test_web_surface import jpeg


@pytest.fixture
def web_settings(db_settings, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    return db_settings.model_copy(update={"demo": False, "sms_provider": "console"})


async def test_concurrent_counting_never_passes_the_limit(web_settings):
    async with running(web_settings) as site:
        async def one():
            async with session_scope(site.ctx.sm) as s:
                return await ratelimit.hit(s, "test:concurrent", ratelimit.HOUR, 5)

        with time_machine.travel(MID_HOUR, tick=True):
            results = await asyncio.gather(*(one() for _ in range(20)))
        assert results.count(True) == 5


async def test_concurrent_wrong_codes_are_counted_and_the_code_dies_after_five(web_settings, caplog):
    async with running(web_settings) as site:
        b = site.browser()
        assert (await b.post("/auth/api/phone/code", json={"phone": "13912345678"})).status_code == 200
        right = code_from_log(caplog, "5678")
        wrong = f"{(int(right) + 1) % 10 ** 6:06d}"
        tries = [site.browser(f"198.51.100.{i}") for i in range(1, 11)]
        answers = await asyncio.gather(*(t.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": wrong})
                                         for t in tries))
        assert all(r.status_code == 400 for r in answers)
        async with site.ctx.sm() as s:
            assert (await s.scalar(select(OneTimeCode))).attempts == 5
        r = await b.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": right})
        assert r.status_code == 400


async def test_history_with_timestamps_own_messages_files_and_buttons_survive_a_restart(web_settings, caplog):
    async with running(web_settings) as site:
        b = site.browser()
        await phone_sign_in(site, b, caplog)
        await b.post("/chat/api/send", json={"text": "/start"})
        await b.post("/chat/api/photo", files={"file": ("p.jpg", jpeg(), "image/jpeg")})
        before = (await b.get("/chat/api/messages")).json()["messages"]
        cookies = dict(b.c.cookies)
    async with running(web_settings) as site:
        b = site.browser()
        for k, v in cookies.items():
            b.c.cookies.set(k, v)
        after = (await b.get("/chat/api/messages")).json()["messages"]
        assert [(m["mine"], m["text"], m["seq"]) for m in after] == [(m["mine"], m["text"], m["seq"]) for m in before]
        assert all(m["at"] for m in after) and any(m["mine"] and m["text"] == "/start" for m in after)
        welcome = next(m for m in after if not m["mine"] and m["inline"])
        photo = next(m["photo_id"] for m in after if m.get("photo_id"))
        assert (await b.get(f"/chat/files/{photo}")).status_code == 200
        # Buttons from before the restart still work, and new messages continue the order.
        data = welcome["inline"][-1][-1]["data"]
        assert (await b.post("/chat/api/press", json={"message_id": welcome["message_id"], "data": data})).status_code == 200
        newer = (await b.get(f"/chat/api/messages?since={after[-1]['seq']}")).json()["messages"]
        assert newer and all(m["seq"] > after[-1]["seq"] for m in newer)


async def test_control_characters_in_a_name_never_break_the_sign_in(web_settings, caplog):
    async with running(web_settings) as site:
        b = site.browser()
        await b.post("/auth/api/phone/code", json={"phone": "13912345678"})
        r = await b.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": code_from_log(caplog, "5678"),
                                                         "name": "张\x00三\x07"})
        assert r.status_code == 200 and r.json()["user"]["name"] == "张三"
        for bad in ({"phone": "1391234567\x00"}, {"phone": "x" * 40}, {"phone": 12}):
            assert (await site.browser("192.0.2.77").post("/auth/api/phone/code", json=bad)).status_code in (400, 422)
        r = await b.post("/chat/api/send", json={"text": "你好\x00"})
        assert r.status_code == 200
        r = await b.post("/chat/api/press", json={"message_id": 2 ** 63 - 1, "data": "x"})
        assert r.status_code == 422
        r = await b.delete(f"/auth/api/sessions/{2 ** 63 - 1}")
        assert r.status_code == 404
