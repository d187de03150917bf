"""The FastAPI application. Its lifespan starts the bot, the outbox worker, the scheduler
and model loading; every slice's ``backend/<slice>/api.py`` router is mounted."""
from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from contextlib import asynccontextmanager

from aiogram.types import Update
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

import backend
from backend.context import start_context
from backend.core.config import Settings, get_settings
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from bot.telegram import WEBHOOK_PATH, secret_ok

log = logging.getLogger("hehe")


async def _release_long_polls_on_exit(app: FastAPI, ctx) -> None:
    """When the server is told to stop (SIGTERM; ``hehe serve`` sets ``app.state.stopping``),
    answer every open long poll at once, so the connections close before uvicorn's graceful
    timeout and the page simply polls again (another replica, or this one after its restart)."""
    stopping = getattr(app.state, "stopping", None)
    if stopping is None:
        return
    while not stopping():
        await asyncio.sleep(0.2)
    ctx.web.release_waiters()


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
        watch = asyncio.create_task(_release_long_polls_on_exit(app, ctx))
        try:
            yield
        finally:
            watch.cancel()
            await ctx.stop()

    app = FastAPI(title="Hehe 和合 API", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Taizhou digital rule-of-law assistant: disputes (五环智控), missing persons "
                              "(灯塔工程), deputies' and procurators' supervision (人大·检察智联督办).")

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError):
        lang = "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"
        return JSONResponse(status_code=exc.status, content={
            "error": exc.code, "message": gettext(lang, exc.key, **exc.params), "key": exc.key})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """Starlette's own refusals (an unknown path, a body that cannot be parsed, a wrong method)
        in the same JSON shape as every other error."""
        return JSONResponse(status_code=exc.status_code, headers=getattr(exc, "headers", None), content={
            "error": f"http_{exc.status_code}", "message": str(exc.detail)})

    @app.exception_handler(OverflowError)
    async def id_out_of_range(request: Request, exc: OverflowError):
        """An id past the database's 64-bit integers (``/api/disputes/4479…0/evidence``): no such
        record can exist, so 404 like any unknown id (the driver would otherwise fail with 500)."""
        return JSONResponse(status_code=404, content={
            "error": "not_found", "message": gettext("zh", "common.err_not_found"), "key": "common.err_not_found"})

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError):
        if "out of int64 range" in str(exc.orig) or "out of range" in str(exc.orig):  # asyncpg's overflow
            return await id_out_of_range(request, OverflowError(str(exc.orig)))
        log.exception("database error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"error": "server_error", "message": gettext("zh", "common.error",
                                                                                                   cid="-")})

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

        warnings = readiness_warnings()
        if ctx.telegram_error:  # Telegram is optional: the web and the API serve meanwhile
            warnings.append(f"telegram not connected: {ctx.telegram_error}")
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks,
                                                                    "warnings": warnings,
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
    from backend.console.api import install as install_console

    install_console(app)  # 工作台: console pages answer 401/403/404 with a page
    document_errors(app)
    return app


ERROR_BODY = {"type": "object", "required": ["error", "message"], "properties": {
    "error": {"type": "string", "description": "machine-readable code, e.g. not_found, forbidden"},
    "message": {"type": "string", "description": "the person's language (Accept-Language: en, else Chinese)"},
    "key": {"type": "string", "description": "the message's i18n key"}}}
OPEN311_ERRORS = {"type": "array", "description": "GeoReport v2 errors", "items": {"type": "object", "properties": {
    "code": {"type": "integer"}, "description": {"type": "string"}}}}
VALIDATION_BODY = {"type": "object", "required": ["error", "message", "detail"], "properties": {
    "error": {"type": "string", "enum": ["validation_error"]},
    "message": {"type": "string"},
    "detail": {"type": "array", "items": {"type": "object", "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"}}}}}}


def document_errors(app: FastAPI) -> None:
    """The OpenAPI schema describes every answer Hehe sends: the 422 body the validation handler
    really writes (not FastAPI's default shape), and, as each operation's ``default`` response,
    the JSON error of a DomainError (400 bad input, 401, 403, 404, 409, 503 while a model loads)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps["ErrorBody"], comps["ValidationErrorBody"] = ERROR_BODY, VALIDATION_BODY
            comps["Open311Errors"] = OPEN311_ERRORS
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    responses = op.setdefault("responses", {})
                    if "422" in responses:
                        responses["422"] = {"description": "Validation error", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}}}
                    body = "Open311Errors" if path.startswith("/open311/") else "ErrorBody"
                    responses.setdefault("default", {"description": "Error", "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{body}"}}}})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
