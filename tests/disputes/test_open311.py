"""Open311 GeoReport v2 conformance: every endpoint, field names, statuses, errors, paging."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("daytime")
V2 = "/open311/v2"
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}


def _is_error(r, code):
    body = r.json()
    return (r.status_code == code and isinstance(body, list) and len(body) == 1
            and set(body[0]) == {"code", "description"} and body[0]["code"] == code and body[0]["description"])


async def _post(api, **kw):
    form = {"api_key": "test-key-2", "service_code": "neighbor", "lat": "28.6730", "long": "121.4420",
            "description": "楼下饭店油烟直排，熏得家里没法开窗，联系13812345678", "first_name": "三",
            "last_name": "张", "phone": "13812345678", "media_url": "https://example.org/p.jpg", **kw}
    form = {k: v for k, v in form.items() if v is not None}
    return await api.client.post(f"{V2}/requests.json", data=form)


async def test_services(api):
    r = await api.client.get(f"{V2}/services.json")
    assert r.status_code == 200
    services = r.json()
    assert {s["service_code"] for s in services} >= {"neighbor", "labor", "traffic", "other"}
    for s in services:
        assert set(s) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
        assert s["metadata"] is False and s["type"] == "realtime"
    r = await api.client.get(f"{V2}/services/labor.json")
    assert r.status_code == 200 and r.json() == {"service_code": "labor", "attributes": []}
    assert _is_error(await api.client.get(f"{V2}/services/nope.json"), 404)


async def test_post_request_enters_the_workflow(api):
    med = await api.user(8001, "mediator", "椒江区")
    r = await _post(api)
    assert r.status_code == 201, r.text
    body = r.json()
    assert isinstance(body, list) and set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    sid = body[0]["service_request_id"]
    assert sid.startswith("TZ-JJ-")
    r = await api.client.get(f"{V2}/requests/{sid}.json")
    assert r.status_code == 200
    [req] = r.json()
    assert set(req) == REQUEST_FIELDS
    assert req["status"] == "open" and req["service_code"] == "neighbor" and req["agency_responsible"] == "椒江区"
    assert req["description"] is None and req["media_url"] is None  # the public view (tests/policy)
    assert req["requested_datetime"].endswith("Z")
    # same workflow: the unit's mediator was told and can act; closing shows "closed"
    from backend.disputes import service

    async with api.ctx.sm() as s:
        d = await service.get_by_number(s, sid)
        assert d.source == "open311" and d.citizen_id is None and d.accept_due is not None
        from backend.users.models import User

        m = await s.get(User, med.id)
        await service.accept(s, d, m)
        await service.record_outcome(s, d, m, False, referral="administrative")
        await s.commit()
    [req] = (await api.client.get(f"{V2}/requests/{sid}.json")).json()
    assert req["status"] == "closed" and "行政处理" in req["status_notes"]


async def test_post_errors(api):
    assert _is_error(await _post(api, api_key=None), 403)
    assert _is_error(await _post(api, api_key="wrong"), 403)
    assert _is_error(await _post(api, service_code=None), 400)
    assert _is_error(await _post(api, service_code="nope"), 404)
    assert _is_error(await _post(api, lat="31.23", long="121.47"), 400)  # Shanghai
    assert _is_error(await _post(api, lat="abc"), 400)
    assert _is_error(await _post(api, lat=None, long=None), 400)  # no location at all
    assert _is_error(await _post(api, description="太短"), 400)
    assert _is_error(await _post(api, phone="123"), 400)
    r = await _post(api, lat=None, long=None, address_string="临海市古城街道紫阳街")
    assert r.status_code == 201 and r.json()[0]["service_request_id"].startswith("TZ-LH-")
    r = await api.client.post(f"{V2}/requests.json", json={"api_key": "test-key-1", "service_code": "consumer",
                                                           "address_string": "椒江区白云街道",
                                                           "description": "买的预付卡商家跑路了，三千块钱退不回来"})
    assert r.status_code == 201  # JSON bodies are accepted too
    assert len((await api.client.get(f"{V2}/requests.json")).json()) == 2  # nothing half-written


async def test_get_requests_filters_and_paging(api):
    ids = []
    for code in ("neighbor", "neighbor", "labor", "traffic", "neighbor"):
        ids.append((await _post(api, service_code=code)).json()[0]["service_request_id"])
    r = await api.client.get(f"{V2}/requests.json")
    assert r.status_code == 200 and len(r.json()) == 5 and r.headers["X-Total-Count"] == "5"
    assert all(set(x) == REQUEST_FIELDS for x in r.json())
    r = await api.client.get(f"{V2}/requests.json", params={"service_code": "neighbor"})
    assert len(r.json()) == 3
    r = await api.client.get(f"{V2}/requests.json", params={"service_code": "labor,traffic"})
    assert len(r.json()) == 2
    r = await api.client.get(f"{V2}/requests.json", params={"service_request_id": f"{ids[0]},{ids[3]}"})
    assert {x["service_request_id"] for x in r.json()} == {ids[0], ids[3]}
    r = await api.client.get(f"{V2}/requests.json", params={"status": "open"})
    assert len(r.json()) == 5
    r = await api.client.get(f"{V2}/requests.json", params={"status": "closed"})
    assert r.json() == []
    r = await api.client.get(f"{V2}/requests.json", params={"start_date": "2026-12-02T00:00:00Z"})
    assert r.json() == []
    r = await api.client.get(f"{V2}/requests.json", params={"start_date": "2026-11-30T00:00:00Z",
                                                            "end_date": "2026-12-01T23:59:59+08:00"})
    assert len(r.json()) == 5
    p1 = (await api.client.get(f"{V2}/requests.json", params={"page_size": 2, "page": 1})).json()
    p3 = (await api.client.get(f"{V2}/requests.json", params={"page_size": 2, "page": 3})).json()
    assert len(p1) == 2 and len(p3) == 1
    assert _is_error(await api.client.get(f"{V2}/requests.json", params={"status": "pending"}), 400)
    assert _is_error(await api.client.get(f"{V2}/requests.json", params={"start_date": "yesterday"}), 400)
    assert _is_error(await api.client.get(f"{V2}/requests/TZ-XX-00000000-0000.json"), 404)
