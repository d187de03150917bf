"""REST API: the whole workflow over HTTP and the authorization matrix (role × route)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("daytime")


async def _people(api):
    return {
        "owner": await api.user(7001),
        "citizen2": await api.user(7002),
        "med": await api.user(7003, "mediator", "椒江区/海门街道"),
        "med_other": await api.user(7004, "mediator", "椒江区/白云街道"),
        "sup": await api.user(7005, "mediator", "椒江区", title="supervisor"),
        "off": await api.user(7006, "official", "椒江区"),
        "off_other": await api.user(7007, "official", "黄岩区"),
        "deputy": await api.user(7008, "deputy", "椒江区"),
        "admin": await api.user(7009, "admin"),
    }


async def _create(api, who, **kw):
    body = {"category": "neighbor", "description": "楼上漏水把我家天花板泡坏了，找他好几次都不理",
            "address": "椒江区海门街道东山路12号", "phone": "13912345678", **kw}
    return await api.client.post("/api/disputes", json=body, headers=api.auth(who))


async def test_create_and_work_a_case_over_http(api):
    p = await _people(api)
    r = await _create(api, p["owner"])
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["number"].startswith("TZ-JJ-") and case["status"] == "new" and case["unit"] == "海门街道"
    assert case["phone"] == "139****5678"
    cid = case["id"]
    h = api.auth(p["med"])
    r = await api.client.post(f"/api/disputes/{cid}/accept", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["phone"] == "13912345678"
    r = await api.client.post(f"/api/disputes/{cid}/note", json={"note": "已电话联系双方"}, headers=h)
    assert r.json()["timeline"][-1]["note"] == "已电话联系双方"
    r = await api.client.post(f"/api/disputes/{cid}/schedule", json={"at": "2026-12-03T14:30:00+08:00",
                                                                    "place": "海门街道调解室"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "mediating"
    r = await api.client.post(f"/api/disputes/{cid}/outcome", json={"success": False}, headers=h)
    assert r.status_code == 400  # referral required
    r = await api.client.post(f"/api/disputes/{cid}/outcome", json={"success": True, "agreement": "楼上赔偿维修费"},
                              headers=h)
    assert r.json()["status"] == "resolved"
    r = await api.client.post(f"/api/disputes/{cid}/accept", headers=h)
    assert r.status_code == 409 and r.json()["key"] == "disputes.err_bad_state"
    r = await api.client.post(f"/api/disputes/{cid}/close", headers=h)
    assert r.status_code == 200
    r = await api.client.post(f"/api/disputes/{cid}/rating", json={"value": "satisfied"}, headers=api.auth(p["owner"]))
    assert r.status_code == 200 and r.json()["status"] == "archived"
    r = await api.client.get("/api/stats/disputes", headers=api.auth(p["off"]))
    assert r.status_code == 200
    s = r.json()["summary"]
    assert s["total"] == 1 and s["local_resolution_rate"] == 1.0 and s["satisfaction_rate"] == 1.0
    assert r.json()["rows"][0]["jurisdiction"] == "海门街道"
    r = await api.client.get("/api/stats/disputes?format=png", headers=api.auth(p["off"]))
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


async def test_bad_input_over_http(api):
    p = await _people(api)
    for kw, key in [({"description": ""}, "disputes.err_description_short"),
                    ({"description": "短"}, "disputes.err_description_short"),
                    ({"description": "字" * 2001}, "disputes.err_description_long"),
                    ({"phone": "12345"}, "disputes.err_phone"),
                    ({"category": "nope"}, "disputes.err_category"),
                    ({"address": None, "lat": 31.23, "lon": 121.47}, "disputes.err_place_outside"),
                    ({"address": "火星基地"}, "disputes.err_place_unknown")]:
        r = await _create(api, p["owner"], **kw)
        assert r.status_code == 400 and r.json()["key"] == key, (kw, r.text)
    r = await _create(api, p["owner"], description="字" * 10_001)
    assert r.status_code == 422
    r = await api.client.get("/api/disputes", headers=api.auth(p["admin"]))
    assert r.json() == []  # nothing half-written


# role × route: expected status codes (case handled by 海门街道, in 椒江区)
MATRIX = {
    #            owner citizen2 med  med_other sup  off  off_other deputy admin
    "detail":   (200, 404, 200, 404, 200, 200, 404, 404, 200),  # 404: existence is not revealed
    "note":     (403, 404, 200, 404, 200, 403, 404, 404, 200),
    "escalate": (403, 403, 403, 403, 403, 403, 403, 403, 403),  # checked with a valid reason below
    "overdue":  (403, 403, 200, 200, 200, 200, 200, 403, 200),
    "stats":    (403, 403, 403, 403, 403, 200, 200, 403, 200),
    "stats_jj": (403, 403, 403, 403, 403, 200, 404, 403, 200),
    "rating":   (409, 404, 403, 404, 403, 403, 404, 404, 403),
}
WHO = ("owner", "citizen2", "med", "med_other", "sup", "off", "off_other", "deputy", "admin")


async def test_authorization_matrix(api):
    p = await _people(api)
    cid = (await _create(api, p["owner"])).json()["id"]
    jj = None
    async with api.ctx.sm() as s:
        from backend.users import service as users

        jj = (await users.find_jurisdiction(s, "椒江区")).id
    calls = {
        "detail": lambda h: api.client.get(f"/api/disputes/{cid}", headers=h),
        "note": lambda h: api.client.post(f"/api/disputes/{cid}/note", json={"note": "进展"}, headers=h),
        "overdue": lambda h: api.client.get("/api/disputes/overdue", headers=h),
        "stats": lambda h: api.client.get("/api/stats/disputes", headers=h),
        "stats_jj": lambda h: api.client.get(f"/api/stats/disputes?jurisdiction_id={jj}", headers=h),
        "rating": lambda h: api.client.post(f"/api/disputes/{cid}/rating", json={"value": "satisfied"}, headers=h),
    }
    for route, call in calls.items():
        for who, expected in zip(WHO, MATRIX[route]):
            r = await call(api.auth(p[who]))
            assert r.status_code == expected, (route, who, r.status_code, r.text)
        r = await call({})
        assert r.status_code == 401, route
    # list: each sees only what they are entitled to
    for who, sees in zip(WHO, (True, False, True, False, True, True, False, False, True)):
        r = await api.client.get("/api/disputes", headers=api.auth(p[who]))
        assert (cid in [c["id"] for c in r.json()]) == sees, who
    # mutating routes: every wrong role is refused before the right one acts
    for route, body in [("accept", None), ("transfer", {"target_id": jj, "reason": "x"}),
                        ("escalate", {"reason": "复杂"}), ("schedule", {"at": "2026-12-05T10:00:00+08:00", "place": "x"}),
                        ("outcome", {"success": True, "agreement": "x"}), ("close", None)]:
        for who in ("owner", "citizen2", "med_other", "off", "off_other", "deputy"):
            r = await api.client.post(f"/api/disputes/{cid}/{route}", json=body, headers=api.auth(p[who]))
            # who may see the case is refused (403); who may not is told it does not exist (404)
            assert r.status_code == (403 if who in ("owner", "off") else 404), (route, who, r.text)
    r = await api.client.post(f"/api/disputes/{cid}/escalate", json={"reason": "涉及多个部门"},
                              headers=api.auth(p["med"]))
    assert r.status_code == 200 and r.json()["unit"] == "椒江区" and r.json()["status"] == "escalated"
    # now the township mediator no longer handles it; the county supervisor does
    r = await api.client.post(f"/api/disputes/{cid}/accept", headers=api.auth(p["med"]))
    assert r.status_code == 404  # nor sees it any more (the unit is the county now)
    r = await api.client.post(f"/api/disputes/{cid}/accept", headers=api.auth(p["sup"]))
    assert r.status_code == 200


async def test_a_change_is_in_the_database_when_its_answer_is_sent(api):
    """A client told "done" finds the change on its next request (on any replica): the request's
    transaction commits before the answer goes out — never after it, where a failed commit would
    lose a change the client was told had been made."""
    import httpx
    from sqlalchemy import create_engine, text

    owner, med = await api.user(7101), await api.user(7102, "mediator", "椒江区/海门街道")
    cid = (await _create(api, owner)).json()["id"]
    db = create_engine(api.ctx.settings.sync_db_url)
    at_answer: list[str] = []

    async def watched(scope, receive, send):
        async def send_watching(message):
            if message["type"] == "http.response.start":  # what another request would read now
                with db.connect() as c:
                    at_answer.append(c.execute(text("SELECT status FROM disputes WHERE id = :i"), {"i": cid}).scalar())
            await send(message)
        await api.app(scope, receive, send_watching)

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=watched), base_url="http://hehe.test") as c:
            r = await c.post(f"/api/disputes/{cid}/accept", headers=api.auth(med))
    finally:
        db.dispose()
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert at_answer == ["accepted"]
