"""Demo mode keeps the user switcher and role setter (and only demo mode); the web channel's
memory stays bounded and old history is deleted after the retention period."""
from __future__ import annotations

import logging
from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.auth.models import WebFile, WebMessage
from backend.core.clock import now
from backend.core.db import session_scope
from backend.demo import seed_users
from tests.web.conftest import phone_sign_in, running, site_settings
from tests.web.test_web_surface import jpeg


async def test_demo_mode_switches_people_and_sets_roles(tmp_path, template_db):
    async with running(site_settings(tmp_path, template_db, demo=True)) as site:
        async with session_scope(site.ctx.sm) as s:
            await seed_users(s)
        b = site.browser()
        people = (await b.get("/auth/api/demo/users")).json()["users"]
        mediator = next(p for p in people if p["name"] == "李调解")
        r = await b.post("/auth/api/demo/login", json={"user": mediator["id"]})
        assert r.status_code == 200 and r.json()["user"]["role"] == "mediator"
        assert (await b.get("/auth/api/me")).json()["user"]["name"] == "李调解"
        r = await b.post("/auth/api/demo/new", json={"name": "新人"})
        assert r.status_code == 200 and r.json()["user"]["channel"] == "web"
        r = await b.post("/auth/api/demo/role", json={"role": "officer", "jurisdiction": "椒江区"})
        assert r.status_code == 200 and r.json()["user"]["role"] == "officer"
        assert (await b.post("/auth/api/demo/role", json={"role": "emperor"})).status_code == 400


async def test_the_web_channel_keeps_only_recent_people_in_memory(tmp_path, template_db, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    async with running(site_settings(tmp_path, template_db, web_cache_users=3)) as site:
        browsers = []
        for i in range(6):
            b = site.browser(f"192.0.2.{i + 1}")
            await phone_sign_in(site, b, caplog, phone=f"1350000{i:04d}", name=f"人{i}")
            await b.post("/chat/api/send", json={"text": "/start"})
            await b.post("/chat/api/photo", files={"file": ("p.jpg", jpeg((i * 40, 10, 10)), "image/jpeg")})
            browsers.append(b)
        web = site.ctx.web
        assert len(web.out) <= 3 and len(web.profiles) <= 3  # what people sent is not kept at all
        assert not web.files  # file bytes live on disk, not in memory
        # The first person was evicted; their history comes back from the database.
        msgs = (await browsers[0].get("/chat/api/messages")).json()["messages"]
        assert any(m["mine"] and m["text"] == "/start" for m in msgs) and any(m.get("photo_id") for m in msgs)


async def test_history_and_files_older_than_the_retention_period_are_deleted(tmp_path, template_db, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    async with running(site_settings(tmp_path, template_db, web_retention_days=30)) as site:
        b = site.browser()
        with time_machine.travel(now() - timedelta(days=40), tick=False):
            await phone_sign_in(site, b, caplog)
            await b.post("/chat/api/photo", files={"file": ("p.jpg", jpeg(), "image/jpeg")})
        await site.ctx.web.persist()
        files = list((site.ctx.settings.data_dir / "web-files").rglob("off-*"))
        assert files
        assert await site.ctx.web.prune() == 1
        async with site.ctx.sm() as s:
            assert await s.scalar(select(func.count(WebMessage.id))) == 0
            assert await s.scalar(select(func.count(WebFile.id))) == 0
        assert not any(p.exists() for p in files)
