"""The HTTP API with the application's lifespan running (database, scheduler, outbox,
models): health, OpenAPI, bearer tokens, admin-only routes, JSON errors, the Telegram webhook."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import httpx
import pytest
from aiogram import Bot
from sqlalchemy import select

from backend.app import create_app
from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import AuditLog, Role, User
from bot.offline import OfflineSession
from bot.telegram import WEBHOOK_PATH
from tests.conftest import bearer, make_settings

WEBHOOK_SECRET = "webhook-secret-for-tests"
TG_TOKEN = "654321:TEST-token-never-sent-anywhere"


class Api:
    """An httpx client over ASGI with the app's lifespan running (ASGITransport alone does
    not run the lifespan)."""

    def __init__(self, app, client: httpx.AsyncClient):
        self.app = app
        self.client = client

    @property
    def ctx(self):
        return self.app.state.ctx

    async def user(self, telegram_id: int, role: Role = Role.citizen, place: str | None = None) -> User:
        async with session_scope(self.ctx.sm) as s:
            u, _ = await users.get_or_create_user(s, telegram_id, name=f"u{telegram_id}", channel="local")
            if role != Role.citizen:
                j = await users.find_jurisdiction(s, place) if place else None
                await users.set_role(s, u, role, j, actor="test")
        await bearer(self.ctx, u.id)
        return u

    def auth(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ctx._test_tokens[user.id]}"}


async def _open(settings, **start_kw):
    app = create_app(settings, **start_kw)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hehe.test")
    return app, lifespan, client


@pytest.fixture
async def api(settings):
    app, lifespan, client = await _open(settings)
    try:
        await asyncio.wait_for(app.state.ctx.models_ready.wait(), 30)
        yield Api(app, client)
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


# ---------------------------------------------------------------- ops
async def test_lifespan_starts_and_stops_everything(settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        assert ctx.scheduler is not None and ctx.scheduler.running
        assert any(t.get_name() == "outbox" and not t.done() for t in ctx.tasks)
        sched = ctx.scheduler
    for _ in range(100):  # AsyncIOScheduler.shutdown runs its work on the next loop iteration
        if not sched.running:
            break
        await asyncio.sleep(0.01)
    assert not sched.running
    assert all(t.done() for t in ctx.tasks)


async def test_healthz_and_readyz(api):
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True
    assert body["checks"]["database"] == "ok" and body["checks"]["models"] == "ok"
    assert body["checks"]["scheduler"] == "ok"


async def test_readyz_is_503_while_models_load_and_when_db_is_gone(api):
    api.ctx.models_ready.clear()
    r = await api.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["models"] == "loading"
    api.ctx.models_ready.set()
    api.ctx.model_errors["faces"] = "model folder missing"
    r = await api.client.get("/readyz")
    assert r.status_code == 503 and "model folder missing" in r.json()["checks"]["faces"]
    api.ctx.model_errors.clear()
    assert (await api.client.get("/readyz")).status_code == 200


async def test_openapi_and_docs(api):
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["info"]["title"].startswith("Hehe")
    paths = spec["paths"]
    for p in ("/healthz", "/readyz", "/api/me", "/api/admin/users", "/api/admin/invites", "/api/admin/audit",
              "/api/admin/users/{user_id}/role"):
        assert p in paths, p
    assert WEBHOOK_PATH not in paths  # not part of the public API
    r = await api.client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()


# ---------------------------------------------------------------- tokens
async def test_bearer_token(api):
    u = await api.user(3001)
    r = await api.client.get("/api/me", headers=api.auth(u))
    assert r.status_code == 200
    assert r.json()["telegram_id"] == 3001 and r.json()["role"] == "citizen"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer 1.deadbeef", "Basic abc", "Bearer garbage",
                                    "Bearer 99999.0123456789abcdef0123456789abcdef"])
async def test_missing_or_bad_token_is_401_json(api, header):
    headers = {"Authorization": header} if header else {}
    r = await api.client.get("/api/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "unauthorized" and r.json()["message"]


async def test_token_of_deactivated_user_is_refused(api):
    u = await api.user(3002)
    async with session_scope(api.ctx.sm) as s:
        (await s.get(User, u.id)).active = False
    assert (await api.client.get("/api/me", headers=api.auth(u))).status_code == 401


async def test_a_token_with_a_wrong_secret_part_is_refused(api):
    u = await api.user(3003)
    token_id = api.ctx._test_tokens[u.id].split("_")[1]
    forged = f"hh_{token_id}_{'A' * 43}"
    r = await api.client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


# ---------------------------------------------------------------- admin-only routes
ADMIN_ROUTES = [
    ("GET", "/api/admin/users", None),
    ("POST", "/api/admin/invites", {"role": "deputy", "jurisdiction": "椒江区", "expires": "7d"}),
    ("GET", "/api/admin/audit", None),
    ("POST", "/api/admin/users/{id}/role", {"role": "mediator", "jurisdiction": "椒江区"}),
]
NON_ADMIN = [r for r in Role if r != Role.admin]


@pytest.mark.parametrize("role", NON_ADMIN, ids=lambda r: r.value)
async def test_admin_routes_refuse_every_other_role(api, role):
    caller = await api.user(3100, role, None if role == Role.citizen else "椒江区")
    victim = await api.user(3101)
    for method, path, body in ADMIN_ROUTES:
        r = await api.client.request(method, path.format(id=victim.id), json=body, headers=api.auth(caller))
        assert r.status_code == 403, (role, path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == "forbidden" and r.json()["message"]
    async with api.ctx.sm() as s:
        v = await s.get(User, victim.id)
        assert v.role == "citizen"  # nothing changed
        assert not list(await s.scalars(select(AuditLog).where(AuditLog.action == "invite.created")))


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES, ids=[p for _, p, _ in ADMIN_ROUTES])
async def test_admin_routes_need_a_token(api, method, path, body):
    r = await api.client.request(method, path.format(id=1), json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


async def test_admin_can_use_admin_routes(api):
    admin = await api.user(3200, Role.admin)
    victim = await api.user(3201)
    h = api.auth(admin)
    r = await api.client.get("/api/admin/users", headers=h)
    assert r.status_code == 200 and {u["telegram_id"] for u in r.json()} >= {3200, 3201}

    r = await api.client.post("/api/admin/invites", json={"role": "deputy", "jurisdiction": "椒江区"}, headers=h)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert r.json()["jurisdiction"] == "椒江区"
    assert datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00")) > datetime.now(timezone.utc)

    r = await api.client.post(f"/api/admin/users/{victim.id}/role",
                              json={"role": "mediator", "jurisdiction": "椒江区/海门街道", "note": "任命"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "mediator" and r.json()["jurisdiction"] == "海门街道"

    r = await api.client.get("/api/admin/audit", headers=h)
    actions = [a["action"] for a in r.json()]
    assert "invite.created" in actions and "user.role_changed" in actions
    changed = next(a for a in r.json() if a["action"] == "user.role_changed" and a["subject"] == f"user:{victim.id}")
    assert changed["actor"] == f"user:{admin.id}" and changed["detail"]["role"] == "mediator"

    # The code the API issued is redeemable in chat.
    await api.ctx.channel.send_text(3202, f"/join {code}")
    assert "人大代表" in api.ctx.channel.out[3202][-1].text


async def test_admin_route_errors_are_json(api):
    admin = await api.user(3300, Role.admin)
    h = api.auth(admin)
    r = await api.client.post("/api/admin/invites", json={"role": "king"}, headers=h)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error" and body["message"] and body["detail"]
    r = await api.client.post("/api/admin/invites", json={"role": "deputy", "jurisdiction": "火星区"}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await api.client.post("/api/admin/invites", json={"role": "deputy", "jurisdiction": "椒江区",
                                                          "expires": "forever"}, headers=h)
    assert r.status_code == 400 and r.json()["key"] == "users.err_duration"
    r = await api.client.post("/api/admin/users/999999/role", json={"role": "deputy"}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await api.client.get("/api/admin/users?limit=100000", headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await api.client.post("/api/admin/invites", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_errors_in_english_on_request(api):
    r = await api.client.get("/api/me", headers={"Accept-Language": "en-US"})
    assert r.status_code == 401 and r.json()["message"].isascii()


# ---------------------------------------------------------------- Telegram webhook
def _update(update_id: int, uid: int, text: str) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": int(datetime.now(timezone.utc).timestamp()),
        "chat": {"id": uid, "type": "private"},
        "from": {"id": uid, "is_bot": False, "first_name": "张三", "language_code": "zh-hans"},
        "text": text}}


@pytest.fixture
async def webhook_api(tmp_path, template_db):
    import shutil

    s = make_settings(tmp_path, webhook_secret=WEBHOOK_SECRET)
    s.ensure_dirs()
    shutil.copyfile(template_db, s.data_dir / "hehe.db")
    app, lifespan, client = await _open(s)
    ctx = app.state.ctx
    # A Telegram bot whose Bot API calls stay on this machine (the offline session records them).
    bot = Bot(TG_TOKEN, session=OfflineSession(ctx.channel))
    ctx.telegram_bot = bot
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.mark.parametrize("secret", [None, "", "wrong", WEBHOOK_SECRET + "x", WEBHOOK_SECRET[:-1]])
async def test_webhook_refuses_wrong_or_missing_secret(webhook_api, secret):
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    r = await webhook_api.client.post(WEBHOOK_PATH, json=_update(1, 3400, "/start"), headers=headers)
    assert r.status_code == 403
    assert not webhook_api.ctx.channel.out.get(3400)
    async with webhook_api.ctx.sm() as s:
        assert await s.scalar(select(User).where(User.telegram_id == 3400)) is None


async def test_webhook_with_right_secret_processes_the_update(webhook_api):
    h = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    r = await webhook_api.client.post(WEBHOOK_PATH, json=_update(10, 3401, "/start"), headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True}
    out = webhook_api.ctx.channel.out[3401]
    assert len(out) == 1 and "和合" in out[0].text and out[0].inline  # the menu
    async with webhook_api.ctx.sm() as s:
        u = await s.scalar(select(User).where(User.telegram_id == 3401))
    assert u is not None and u.role == "citizen"
    # Telegram re-delivers after a timeout: the same update_id is ignored.
    r = await webhook_api.client.post(WEBHOOK_PATH, json=_update(10, 3401, "/start"), headers=h)
    assert r.status_code == 200 and len(webhook_api.ctx.channel.out[3401]) == 1


async def test_without_token_there_is_no_telegram_at_all(api):
    ctx = api.ctx
    assert ctx.settings.telegram_token is None
    assert ctx.telegram_bot is None
    assert set(ctx.bots) == {"local"} and set(ctx.deliverer.bots) == {"local", "web"}  # the offline channels
    assert not any("telegram" in t.get_name() for t in ctx.tasks)
    # The webhook is closed: even a caller who guesses a secret gets 403.
    r = await api.client.post(WEBHOOK_PATH, json=_update(20, 3402, "/start"),
                              headers={"X-Telegram-Bot-Api-Secret-Token": ""})
    assert r.status_code == 403
