"""An authorization test generated from the route table: every route of the application ×
anonymous and every role. A route's rule is read from the route itself — a signed-in identity
dependency (``CurrentUser``, ``require_roles(...)``, ``WebUser`` …), or the ``PUBLIC`` /
``DEMO_ONLY`` markers of backend.auth.guards — or from the short list below of routes that
authenticate some other way. A route with none of these fails the test."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import iter_route_contexts

from backend.auth.accounts import new_web_user
from backend.auth.guards import (
    PUBLIC,
    demo_route,
    public_route,
    require_fresh_second_factor,
)
from backend.auth.models import WebSession
from backend.auth.sessions import (
    COOKIE,
    CSRF_COOKIE,
    csrf_for,
    current_web_user,
    current_web_user_in_setup,
    token_hash,
)
from backend.core.clock import now
from backend.core.db import session_scope
from backend.core.deps import CurrentUser, current_user, require_roles
from backend.users import service as users
from backend.users.models import Role, User
from bot.telegram import WEBHOOK_PATH

IDENTITY = {current_user, current_web_user, current_web_user_in_setup, require_fresh_second_factor}
# Routes that authenticate another way, each with the reason (docs/security.md, the matrix).
OTHER_RULES = {
    ("GET", "/openapi.json"): "the API's schema, public like /docs",
    ("GET", "/healthz"): "liveness probe, says nothing",
    ("GET", "/readyz"): "readiness probe, component states only",
    ("POST", WEBHOOK_PATH): "Telegram's secret header (HEHE_WEBHOOK_SECRET)",
    # Open311 answers .json and .xml from one route each ({fmt})
    ("GET", "/open311/v2/services.{fmt}"): "Open311 service list, public",
    ("GET", "/open311/v2/services/{service_code}.{fmt}"): "Open311 service definition, public",
    ("POST", "/open311/v2/requests.{fmt}"): "Open311 api_key",
    ("GET", "/open311/v2/requests.{fmt}"): "Open311 public view (docs/access-policy.md)",
    ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"): "Open311 public view (docs/access-policy.md)",
}
ROLES = list(Role)
Officer = Annotated[User, Depends(require_roles(Role.officer))]


def _calls(dependant) -> list:
    out = []
    for d in dependant.dependencies:
        out.append(d.call)
        out.extend(_calls(d))
    return out


def _fill(path: str, params: dict) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: params.get(m.group(1), "1"), path)


def route_table(app) -> list[dict]:
    rows = []
    for rc in iter_route_contexts(app.routes):
        dependant = getattr(rc, "dependant", None)
        calls = _calls(dependant) if dependant is not None else []
        allowed = None
        for c in calls:
            if getattr(c, "allowed_roles", None) is not None:
                allowed = c.allowed_roles if allowed is None else allowed & c.allowed_roles
        for method in sorted((rc.methods or set()) - {"HEAD"}):
            if public_route in calls:
                rule = "demo" if demo_route in calls else "public"
            elif any(c in IDENTITY for c in calls):
                rule = "demo-signed-in" if demo_route in calls else "signed-in"
            elif (method, rc.path) in OTHER_RULES:
                rule = "other"
            else:
                rule = None
            params = {}
            if dependant is not None:
                for p in dependant.path_params:
                    params[p.name] = "1" if p.field_info.annotation in (int, float) or "int" in str(p.field_info.annotation) else "x"
            rows.append({"method": method, "path": rc.path, "rule": rule, "allowed": allowed,
                         "url": _fill(rc.path, params)})
    return rows


def test_every_route_has_an_explicit_rule(site):
    missing = [f"{r['method']} {r['path']}" for r in route_table(site.app) if r["rule"] is None]
    assert not missing, ("routes without an authorization rule (use CurrentUser / require_roles / WebUser, or "
                         f"mark them PUBLIC in backend.auth.guards): {missing}")
    stale = set(OTHER_RULES) - {(r["method"], r["path"]) for r in route_table(site.app)}
    assert not stale, f"OTHER_RULES names routes that no longer exist: {stale}"


async def _request(b, method: str, url: str):
    kw = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    if url.startswith("/chat/api/messages"):
        url += "?wait=0"
    return await (b.post(url, **kw) if method == "POST" else b.delete(url) if method == "DELETE"
                  else b.c.request(method, url, **kw))


async def test_anonymous_gets_nothing_but_the_public_routes(site):
    anon = site.browser()
    rows = route_table(site.app)
    assert any(r["rule"] == "signed-in" for r in rows) and any(r["rule"] == "public" for r in rows)
    for r in rows:
        resp = await _request(anon, r["method"], r["url"])
        where = f"{r['method']} {r['path']} -> {resp.status_code} {resp.text[:200]}"
        assert resp.status_code < 500, where
        if r["rule"] in ("signed-in", "demo-signed-in", "demo"):
            assert resp.status_code in (401, 403, 404), where


async def signed_in(site, role: Role):
    """A browser signed in (second factor done) as a web person of ``role``."""
    async with session_scope(site.ctx.sm) as s:
        u = await new_web_user(s, name=f"{role.value}-user")
        if role != Role.citizen:
            place = None if role == Role.admin else await users.find_jurisdiction(s, "椒江区")
            await users.set_role(s, u, role, place, actor="test")
        token = secrets.token_urlsafe(32)
        s.add(WebSession(token_hash=token_hash(token), user_id=u.id, method="test", second_factor=True,
                         second_factor_at=now(), created_at=now(), last_seen_at=now(),
                         expires_at=now() + timedelta(hours=1), client="", user_agent=""))
    b = site.browser()
    b.c.cookies.set(COOKIE, token)
    b.c.cookies.set(CSRF_COOKIE, csrf_for(site.ctx.secret, token))
    return b


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
async def test_each_role_gets_exactly_what_the_route_rules_allow(site, role):
    b = await signed_in(site, role)
    for r in route_table(site.app):
        if r["path"] in ("/auth/api/logout",) or r["method"] == "DELETE":
            continue  # would end this very session (tested on their own)
        resp = await _request(b, r["method"], r["url"])
        where = f"{role.value}: {r['method']} {r['path']} -> {resp.status_code} {resp.text[:200]}"
        # a model still loading (faces_not_ready, 503) is the one server answer that is not an error
        assert resp.status_code < 500 or (resp.status_code == 503 and "not_ready" in resp.text), where
        if r["rule"] == "signed-in":
            assert resp.status_code != 401, where
            if r["allowed"] is not None and role not in r["allowed"]:
                assert resp.status_code in (403, 404), where
        if r["rule"] in ("demo", "demo-signed-in"):
            assert resp.status_code == 404, where  # the site runs without HEHE_DEMO


def test_the_rule_of_a_route_comes_from_its_dependencies():
    """The introspection itself: a new route with CurrentUser passes, one without a rule fails."""
    app = FastAPI()
    r = APIRouter()

    @r.get("/new/with-user")
    async def a(user: CurrentUser):
        return {}

    @r.get("/new/officers")
    async def b(user: Officer):
        return {}

    @r.get("/new/public", dependencies=[PUBLIC])
    async def c():
        return {}

    @r.get("/new/forgotten")
    async def d():
        return {}

    app.include_router(r)
    rules = {row["path"]: row for row in route_table(app)}
    assert rules["/new/with-user"]["rule"] == "signed-in"
    assert rules["/new/officers"]["rule"] == "signed-in"
    assert rules["/new/officers"]["allowed"] == {Role.officer, Role.admin}
    assert rules["/new/public"]["rule"] == "public"
    assert rules["/new/forgotten"]["rule"] is None


def test_every_console_route_names_the_roles_it_serves(site):
    """A console page or action is never merely "signed in": each names its roles (the console's
    page table), so the role sweep above refuses every other role on it."""
    loose = [f"{r['method']} {r['path']}" for r in route_table(site.app)
             if r["path"].startswith("/console") and r["rule"] == "signed-in" and r["allowed"] is None
             and r["path"] not in ("/console",)]
    assert not loose, f"console routes without a role rule: {loose}"
