"""Sign-in and the web transcript on SQLite and PostgreSQL: counters that hold under
concurrency, codes that cannot be tried more than five times, history after a restart."""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from backend.auth import ratelimit
from backend.auth.models import OneTimeCode
from backend.core.db import session_scope
from tests.web.conftest import code_from_log, open_site, phone_sign_in


async def _open(db_settings, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    settings = db_settings.model_copy(update={"demo": False, "sms_provider": "console"})
    return settings, *(await open_site(settings))


async def _close(site, lifespan):
    for b in site.browsers:
        await b.aclose()
    await lifespan.__aexit__(None, None, None)


async def test_concurrent_counting_never_passes_the_limit(db_settings, caplog):
    _, site, lifespan = await _open(db_settings, caplog)
    try:
        async def one():
            async with session_scope(site.ctx.sm) as s:
                return await ratelimit.hit(s, "test:concurrent", ratelimit.HOUR, 5)

        results = await asyncio.gather(*(one() for _ in range(20)))
        assert results.count(True) == 5
    finally:
        await _close(site, lifespan)


async def test_concurrent_wrong_codes_are_counted_and_the_code_dies_after_five(db_settings, caplog):
    _, site, lifespan = await _open(db_settings, caplog)
    try:
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
    finally:
        await _close(site, lifespan)


async def test_sessions_and_the_transcript_survive_a_restart(db_settings, caplog):
    settings, site, lifespan = await _open(db_settings, caplog)
    try:
        b = site.browser()
        await phone_sign_in(site, b, caplog)
        await b.post("/chat/api/send", json={"text": "/start"})
        before = (await b.get("/chat/api/messages")).json()["messages"]
        cookies = dict(b.c.cookies)
    finally:
        await _close(site, lifespan)
    site, lifespan = await open_site(settings)
    try:
        b = site.browser()
        for k, v in cookies.items():
            b.c.cookies.set(k, v)
        after = (await b.get("/chat/api/messages")).json()["messages"]
        assert [(m["mine"], m["text"]) for m in after] == [(m["mine"], m["text"]) for m in before]
        assert (await b.post("/chat/api/send", json={"text": "/help"})).status_code == 200
    finally:
        await _close(site, lifespan)
