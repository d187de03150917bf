"""Reads of personal data are audited (who, what, when, which channel) and the admin searches
them by actor, action, target and time, with readable actors."""
from __future__ import annotations

from datetime import timedelta

from backend.core.clock import now
from tests.disputes.conftest import DAY, api, daytime  # noqa: F401  (fixtures)


async def _case(api, owner):
    r = await api.client.post("/api/disputes", headers=api.auth(owner), json={
        "category": "neighbor", "description": "楼上漏水把我家天花板泡坏了，找他好几次都不理，电话13912345678",
        "address": "椒江区海门街道东山路12号", "phone": "13912345678"})
    assert r.status_code == 201
    return r.json()


async def test_case_views_are_audited_and_searchable_by_actor_action_target_and_time(api):
    owner = await api.user(9401)
    official = await api.user(9402, "official", "椒江区")
    admin = await api.user(9403, "admin")
    case = await _case(api, owner)
    for _ in range(2):
        assert (await api.client.get(f"/api/disputes/{case['id']}", headers=api.auth(official))).status_code == 200
    assert (await api.client.get("/api/disputes", headers=api.auth(official))).status_code == 200
    h = api.auth(admin)
    rows = (await api.client.get("/api/admin/audit", headers=h, params={"actor": official.id})).json()
    assert [r["action"] for r in rows] == ["dispute.list", "dispute.read", "dispute.read"]
    read = rows[-1]
    assert read["subject"] == f"dispute:{case['number']}" and read["detail"]["channel"] == "api"
    assert read["who"] == {"key": f"user:{official.id}", "name": "u9402", "role": "official",
                           "jurisdiction": "椒江区"}
    # by name, by action prefix, by target, by time
    assert len((await api.client.get("/api/admin/audit", headers=h, params={"actor": "u9402"})).json()) == 3
    by_target = (await api.client.get("/api/admin/audit", headers=h,
                                      params={"target": f"dispute:{case['number']}", "action": "dispute."})).json()
    assert {r["action"] for r in by_target} == {"dispute.read"} and len(by_target) == 2
    later = (now() + timedelta(minutes=5)).isoformat()
    assert (await api.client.get("/api/admin/audit", headers=h, params={"since": later})).json() == []
    earlier = (now() - timedelta(minutes=5)).isoformat()
    assert len((await api.client.get("/api/admin/audit", headers=h,
                                      params={"since": earlier, "actor": official.id})).json()) == 3
    # the audit is for admins only
    assert (await api.client.get("/api/admin/audit", headers=api.auth(official))).status_code == 403


async def test_a_refused_read_is_not_recorded_as_a_read(api):
    owner = await api.user(9411)
    stranger = await api.user(9412, "official", "温岭市")
    admin = await api.user(9413, "admin")
    case = await _case(api, owner)
    assert (await api.client.get(f"/api/disputes/{case['id']}", headers=api.auth(stranger))).status_code == 404
    rows = (await api.client.get("/api/admin/audit", headers=api.auth(admin),
                                 params={"actor": stranger.id, "action": "dispute.read"})).json()
    assert rows == []


async def test_chat_views_of_an_item_are_audited_with_the_chat_channel(chat, ctx):
    import time_machine
    from sqlalchemy import select

    from backend.users.models import AuditLog
    from tests.supervision.helpers import OFFICIAL, local, people, propose

    with time_machine.travel(local(2026, 11, 3, 10, 0), tick=True):
        await people(chat)
        number = await propose(chat)
        await chat.send(OFFICIAL, f"/item {number}")
    async with ctx.sm() as s:
        row = await s.scalar(select(AuditLog).where(AuditLog.action == "supervision.read"))
    assert row.subject == f"supervision:{number}" and row.detail["channel"] == "chat"
    assert row.detail["actor_name"] == "周主任" and row.detail["actor_role"] == "official"
