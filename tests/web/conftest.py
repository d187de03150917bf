"""A real application (lifespan running) over ASGI, and browser-like clients: each keeps its
own cookies and sends the CSRF header the page sends."""
from __future__ import annotations

import asyncio
import logging
import re
import shutil
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest

from backend.app import create_app
from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import Role
from tests.conftest import make_settings

HOST = "http://hehe.test"
# Tests of fixed-window limits run at this time, far from the turn of an hour.
MID_HOUR = datetime.now(UTC).replace(minute=20, second=0, microsecond=0)


class Browser:
    """One browser: a cookie jar, the CSRF header from the hehe_csrf cookie on unsafe requests."""

    def __init__(self, app, client: httpx.AsyncClient):
        self.app = app
        self.c = client

    @property
    def ctx(self):
        return self.app.state.ctx

    def _headers(self, kw):
        h = dict(kw.pop("headers", {}) or {})
        csrf = self.c.cookies.get("hehe_csrf")
        if csrf and "x-csrf-token" not in {k.lower() for k in h}:
            h["X-CSRF-Token"] = csrf
        return h

    async def get(self, url, **kw):
        return await self.c.get(url, **kw)

    async def post(self, url, **kw):
        return await self.c.post(url, headers=self._headers(kw), **kw)

    async def delete(self, url, **kw):
        return await self.c.delete(url, headers=self._headers(kw), **kw)

    async def aclose(self):
        await self.c.aclose()


class Site:
    def __init__(self, app):
        self.app = app
        self.browsers: list[Browser] = []

    @property
    def ctx(self):
        return self.app.state.ctx

    def browser(self, client_ip: str = "203.0.113.7") -> Browser:
        transport = httpx.ASGITransport(app=self.app, client=(client_ip, 50000))
        b = Browser(self.app, httpx.AsyncClient(transport=transport, base_url=HOST))
        self.browsers.append(b)
        return b

    async def staff_invite(self, role: Role = Role.mediator, place: str | None = "椒江区") -> str:
        from datetime import timedelta
        async with session_scope(self.ctx.sm) as s:
            j = await users.find_jurisdiction(s, place) if place else None
            inv = await users.create_invite(s, role, j, timedelta(days=1), actor="test")
            return inv.code


def code_from_log(caplog, phone_tail: str) -> str:
    for rec in reversed(caplog.records):
        m = re.search(r"SMS sign-in code for (\S+): (\d{6})", rec.getMessage())
        if m and m.group(1).endswith(phone_tail):
            return m.group(2)
    raise AssertionError("no code in the log")


@asynccontextmanager
async def running(settings, app=None):
    """The application with its lifespan running; its browsers closed at the end."""
    app = app or create_app(settings)
    async with app.router.lifespan_context(app):
        site = Site(app)
        try:
            yield site
        finally:
            for b in site.browsers:
                await b.aclose()


def site_settings(tmp_path, template_db, **kw):
    """Settings of a server without demo mode, with the console SMS provider, on a copy of the
    template database."""
    settings = make_settings(tmp_path, **{"demo": False, "sms_provider": "console", **kw})
    settings.ensure_dirs()
    shutil.copyfile(template_db, settings.data_dir / "hehe.db")
    return settings


@pytest.fixture
async def site(tmp_path, template_db, caplog):
    caplog.set_level(logging.WARNING, logger="hehe.sms")
    async with running(site_settings(tmp_path, template_db)) as s:
        yield s


async def phone_sign_in(site: Site, b: Browser, caplog, phone: str = "13912345678", name: str = "张三") -> dict:
    r = await b.post("/auth/api/phone/code", json={"phone": phone})
    assert r.status_code == 200, r.text
    code = code_from_log(caplog, phone[-4:])
    r = await b.post("/auth/api/phone/verify", json={"phone": phone, "code": code, "name": name})
    assert r.status_code == 200, r.text
    return r.json()


async def wait_for(pred, timeout: float = 10.0):
    for _ in range(int(timeout / 0.05)):
        if await pred():
            return True
        await asyncio.sleep(0.05)
    return False
