"""The web surface's guards, installed on the app by :func:`install`: allowed hosts
(HEHE_ALLOWED_HOSTS), CSRF for every cookie-authenticated unsafe request (multipart too),
security headers, and the web-session resolver ``backend.core.deps.current_user`` consults.
Pure ASGI middleware: bodies stream through untouched (uploads are capped by their route)."""
from __future__ import annotations

import json
import logging
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from backend.auth.sessions import COOKIE, CSRF_HEADER, cookie_user, csrf_ok
from backend.auth.sms import provider_for
from backend.core.config import Settings
from backend.core.i18n import gettext

log = logging.getLogger("hehe.web")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(self), geolocation=(self), microphone=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def allowed_hosts(settings: Settings) -> list[str]:
    return [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def _refuse(status: int, code: str, key: str):
    body = json.dumps({"error": code, "message": gettext("zh", key), "key": key}, ensure_ascii=False).encode()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": body})

    return app


class CsrfMiddleware:
    """An unsafe request that carries the session cookie and no bearer token must carry the
    session's CSRF token in ``X-CSRF-Token``; any unsafe request whose Origin is another site
    is refused whatever it carries."""

    def __init__(self, app, get_secret):
        self.app = app
        self.get_secret = get_secret

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        origin = _header(scope, b"origin")
        host = _header(scope, b"host") or ""
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            return await _refuse(403, "csrf", "auth.err_csrf")(scope, receive, send)
        if origin == "null":
            return await _refuse(403, "csrf", "auth.err_csrf")(scope, receive, send)
        cookies = SimpleCookie()
        try:
            cookies.load(_header(scope, b"cookie") or "")
        except Exception:  # noqa: BLE001 - a malformed cookie header carries no session
            cookies = SimpleCookie()
        token = cookies[COOKIE].value if COOKIE in cookies else None
        if (token and not _header(scope, b"authorization")
                and not csrf_ok(self.get_secret(), token, _header(scope, CSRF_HEADER.encode()))):
            return await _refuse(403, "csrf", "auth.err_csrf")(scope, receive, send)
        return await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in HEADERS if k not in present]
            await send(message)

        return await self.app(scope, receive, with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Raises SmsConfigError when the SMS provider may not be used here (the server does not start)."""
    app.state.web_session_user = cookie_user
    app.state.sms = provider_for(settings)
    if app.state.sms is None:
        log.warning("no SMS provider (HEHE_SMS_PROVIDER): citizen sign-in by phone is off")
    app.add_middleware(CsrfMiddleware, get_secret=lambda: app.state.ctx.secret)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
