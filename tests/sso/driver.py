"""A running Hehe (the real app under uvicorn, on a migrated database) beside the provider
mocks, and a browser-like HTTP client that follows each sign-in step by step."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx

from backend.app import create_app
from backend.core.db import make_engine, make_sessionmaker, session_scope
from tests.sso.mocks import serve


@contextmanager
def running_hehe(settings):
    app = create_app(settings, scheduler=False, models=False, workers=False, telegram=False)
    with serve(app, lifespan="on", timeout=60) as base:
        yield base


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def browser(base: str, lang: str = "zh-CN,zh;q=0.9") -> httpx.Client:
    return httpx.Client(base_url=base, follow_redirects=False, timeout=20,
                        headers={"accept-language": lang, "user-agent": "pytest-sso"})


def sign_in_through(c: httpx.Client, provider: str, confirm_url: str, form) -> httpx.Response:
    """Click the provider's sign-in, see its page, confirm there (``form(query of the
    provider URL)`` is what the page posts), come back: the callback's response."""
    r = c.get(f"/sso/{provider}/login")
    assert r.status_code == 302, r.text
    to_provider = r.headers["location"]
    assert c.get(to_provider).status_code == 200  # the provider's page
    back = c.post(confirm_url, data=form(query(to_provider)))
    assert back.status_code == 302
    return c.get(back.headers["location"])


def zzd_sign_in(c: httpx.Client, mock, account: str = "wangfang") -> httpx.Response:
    """Scan the QR code and confirm on the phone."""
    return sign_in_through(c, "zzd", mock.base + "/oauth2/mock_scan", lambda q: {
        "redirect_uri": q["redirect_uri"], "state": q["state"], "account": account})


def zlb_sign_in(c: httpx.Client, mock, citizen: str = "chenjm") -> httpx.Response:
    return sign_in_through(c, "zlb", mock.base + "/sso/mock_login", lambda q: {
        "redirectUrl": q["redirectUrl"], "citizen": citizen})


def oidc_sign_in(c: httpx.Client, mock, person: str = "zhoum") -> httpx.Response:
    return sign_in_through(c, "oidc", mock.base + "/authorize/confirm", lambda q: {
        "redirect_uri": q["redirect_uri"], "state": q["state"], "nonce": q["nonce"],
        "code_challenge": q["code_challenge"], "person": person})


def in_db(settings, fn):
    """Run ``await fn(session)`` against the app's database from the test's own loop."""
    async def go():
        engine = make_engine(settings.db_url)
        try:
            async with session_scope(make_sessionmaker(engine)) as session:
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())
