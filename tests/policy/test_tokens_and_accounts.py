"""API tokens with ids, expiry and revocation; deactivation that takes effect at once."""
from __future__ import annotations

from datetime import timedelta

import time_machine

from backend.core.clock import now
from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import Role, User
from tests.foundation.test_api import api  # noqa: F401  (fixture: the app with its lifespan)
from tests.foundation.test_cli import data_dir, run_hehe, _ctx  # noqa: F401


def _h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_hehe_token_create_twice_gives_two_tokens_listed_and_revoked_one_by_one(data_dir):
    ctx = await _ctx(data_dir)
    try:
        async with session_scope(ctx.sm) as s:
            await users.get_or_create_user(s, 4401, name="李主任", channel="local")
    finally:
        await ctx.stop()
    a = run_hehe(data_dir, "token", "create", "--user", "4401")
    b = run_hehe(data_dir, "token", "create", "--user", "4401", "--label", "dashboard")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ta, tb = a.stdout.strip(), b.stdout.strip()
    assert ta != tb and ta.startswith("hh_") and tb.startswith("hh_")
    listed = run_hehe(data_dir, "token", "list").stdout
    assert "李主任" in listed and "dashboard" in listed and listed.count("active") == 2
    assert ta.split("_")[2] not in listed  # the secret is never shown again
    id_a = ta.split("_")[1]
    revoked = run_hehe(data_dir, "token", "revoke", id_a)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    listed = run_hehe(data_dir, "token", "list").stdout
    assert "revoked" in listed and listed.count("\tactive") == 1, listed
    unknown = run_hehe(data_dir, "token", "revoke", "999")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr

    import httpx

    from backend.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(data_dir.parent, data_dir=data_dir), models=False, telegram=False)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    app.state.ctx.scheduler.pause()  # the CLI below writes the same SQLite file; no sweep in between
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            async def me(token: str) -> int:
                r = await c.get("/api/me", headers=_h(token))
                return r.status_code

            assert await me(ta) == 401  # revoked
            assert await me(tb) == 200
            # 90 days later the other one has expired too
            with time_machine.travel(now() + timedelta(days=91), tick=False):
                assert await me(tb) == 401
            # hehe users deactivate: refused on the next request; reactivate: back
            off = run_hehe(data_dir, "users", "deactivate", "4401", "--note", "调离")
            assert off.returncode == 0, off.stdout + off.stderr
            assert await me(tb) == 401
            on = run_hehe(data_dir, "users", "reactivate", "4401")
            assert on.returncode == 0, on.stdout + on.stderr
            assert await me(tb) == 200
    finally:
        await lifespan.__aexit__(None, None, None)


async def test_an_admin_deactivates_a_person_and_their_next_chat_message_and_request_are_refused(api):
    from tests.conftest import ChatDriver

    admin = await api.user(4501, Role.admin)
    official = await api.user(4502, Role.official, "椒江区")
    chat = ChatDriver(api.ctx)
    assert "停用" not in "\n".join(m.text for m in await chat.send(4502, "/me"))  # the bot now caches them
    r = await api.client.post(f"/api/admin/users/{official.id}/deactivate", json={"note": "离职"},
                              headers=api.auth(admin))
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await api.client.get("/api/me", headers=api.auth(official))).status_code == 401
    msgs = await chat.send(4502, "/me")
    assert [m.text for m in msgs] == ["您的账号已被停用，暂时无法使用本服务。如有疑问请联系管理员。"]
    r = await api.client.post(f"/api/admin/users/{official.id}/reactivate", headers=api.auth(admin))
    assert r.status_code == 200 and r.json()["active"] is True
    assert (await api.client.get("/api/me", headers=api.auth(official))).status_code == 200
    assert "停用" not in "\n".join(m.text for m in await chat.send(4502, "/me"))
    # tokens are listed and revoked one by one over the API too
    r = await api.client.get("/api/admin/tokens", params={"user_id": official.id}, headers=api.auth(admin))
    [tok] = r.json()
    assert tok["expires_at"] and tok["revoked_at"] is None and tok["last_used_at"]
    r = await api.client.post(f"/api/admin/tokens/{tok['id']}/revoke", headers=api.auth(admin))
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert (await api.client.get("/api/me", headers=api.auth(official))).status_code == 401
    async with api.ctx.sm() as s:
        assert (await s.get(User, official.id)).active is True


async def test_only_admins_list_or_revoke_tokens_and_deactivate_people(api):
    admin = await api.user(4601, Role.admin)
    target = await api.user(4602, Role.citizen)
    for role, place in ((Role.citizen, None), (Role.official, "椒江区"), (Role.mediator, "椒江区"),
                        (Role.officer, "椒江区"), (Role.procurator, "椒江区"), (Role.deputy, "椒江区")):
        who = await api.user(4610 + list(Role).index(role), role, place)
        h = api.auth(who)
        assert (await api.client.get("/api/admin/tokens", headers=h)).status_code == 403, role
        assert (await api.client.post("/api/admin/tokens/1/revoke", headers=h)).status_code == 403, role
        for act in ("deactivate", "reactivate"):
            r = await api.client.post(f"/api/admin/users/{target.id}/{act}", headers=h)
            assert r.status_code == 403, (role, act)
    assert (await api.client.get("/api/admin/tokens", headers=api.auth(admin))).status_code == 200
    assert (await api.client.post("/api/admin/tokens/99999/revoke", headers=api.auth(admin))).status_code == 404
