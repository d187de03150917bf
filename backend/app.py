"""The FastAPI application. Its lifespan starts the bot, the outbox worker, the scheduler
and model loading; every slice's ``backend/<slice>/api.py`` router is mounted."""
from __future__ import annotations

import importlib
import logging
import pkgutil
from contextlib import asynccontextmanager

from aiogram.types import Update
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text

import backend
from backend.context import start_context
from backend.core.config import Settings, get_settings
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from bot.telegram import WEBHOOK_PATH, secret_ok

log = logging.getLogger("hehe")


def slice_routers() -> list:
    routers = []
    for info in pkgutil.iter_modules(backend.__path__):
        if not info.ispkg:
            continue
        try:
            mod = importlib.import_module(f"backend.{info.name}.api")
        except ModuleNotFoundError as e:
            if e.name != f"backend.{info.name}.api":
                raise
            continue
        for name in ("router", "extra_router"):
            if hasattr(mod, name):
                routers.append(getattr(mod, name))
    return routers


def create_app(settings: Settings | None = None, **start_kw) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = await start_context(settings, **start_kw)
        app.state.ctx = ctx
        if settings.demo and getattr(app.state, "demo_web_bridge", False):
            # `hehe demo`/`serve` in demo mode: the seeded "local" demo people chat on the web
            # page, so their notifications go to the web channel (backend.web, docs/security.md).
            ctx.deliverer.bots["local"] = ctx.web.bot
        try:
            yield
        finally:
            await ctx.stop()

    app = FastAPI(title="Hehe 和合 API", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Taizhou digital rule-of-law assistant: disputes (五环智控), missing persons "
                              "(灯塔工程), deputies' and procurators' supervision (人大·检察智联督办).")

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError):
        lang = "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"
        return JSONResponse(status_code=exc.status, content={
            "error": exc.code, "message": gettext(lang, exc.key, **exc.params), "key": exc.key})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={
            "error": "validation_error", "message": gettext("zh", "common.err_validation"),
            "detail": [{"loc": list(e.get("loc", [])), "msg": e.get("msg")} for e in exc.errors()]})

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request):
        ctx = request.app.state.ctx
        checks: dict[str, str] = {}
        try:
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as e:  # noqa: BLE001
            checks["database"] = f"error: {e}"
        checks["models"] = "ok" if ctx.models_ready.is_set() else "loading"
        for name, err in ctx.model_errors.items():
            checks[name] = f"error: {err}"
        checks["scheduler"] = "ok" if ctx.scheduler is None or ctx.scheduler.running else "stopped"
        ok = all(v == "ok" for v in checks.values())
        from backend.core.workdays import readiness_warnings  # warnings never fail readiness

        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks,
                                                                    "warnings": readiness_warnings(),
                                                                    "leader": ctx.leader is None or ctx.leader.is_leader})

    @app.post(WEBHOOK_PATH, include_in_schema=False)
    async def telegram_webhook(request: Request):
        ctx = request.app.state.ctx
        if ctx.telegram_bot is None or not secret_ok(
                settings.webhook_secret, request.headers.get("x-telegram-bot-api-secret-token")):
            return JSONResponse(status_code=403, content={"error": "forbidden"})
        update = Update.model_validate(await request.json(), context={"bot": ctx.telegram_bot})
        await ctx.dispatcher.feed_update(ctx.telegram_bot, update)
        return {"ok": True}

    for r in slice_routers():
        app.include_router(r)
    from backend.web.hardening import install

    install(app, settings)  # allowed hosts, CSRF, security headers, web sessions
    from backend.sso.api import install as install_sso

    install_sso(app, settings)  # 浙政钉 / 浙里办 / OIDC sign-in (app.state.sign_in_providers)
    return app
