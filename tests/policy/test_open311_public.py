"""Open311 GET is a public view: only what a city would publish. Plus the conformance items:
XML, jurisdiction_id, UTF-8 form bodies, non-ASCII api_key."""
from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from tests.disputes.conftest import DAY, api, daytime  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("daytime")
V2 = "/open311/v2"
ADDRESS = "东山路88号3单元502室"
SECRET_TEXT = "楼上602住户王某天天半夜装修，身份证330102197001011234，电话13912345678"


async def _chat_case(api, *, lat=28.67312, lon=121.44187):
    """A case filed by a named citizen through the service (as the chat does), with an address,
    an exact position, an other party and a description full of personal data."""
    from backend.core.db import session_scope
    from backend.disputes import service
    from backend.users import service as users

    owner = await api.user(9101)
    async with session_scope(api.ctx.sm) as s:
        place = await users.find_jurisdiction(s, "椒江区/海门街道")
        u = await users.get_user(s, owner.id)
        d = await service.create_case(s, citizen=u, category="neighbor", description=SECRET_TEXT, place=place,
                                      address=ADDRESS, lat=lat, lon=lon, phone="13912345678",
                                      other_party="陈大富 13700001111", store=api.ctx.files)
        return d.number


def _leaks(body: str) -> list[str]:
    return [x for x in (ADDRESS, "东山路", "13912345678", "139****5678", "3301021970", "陈大富", "王某", "u9101",
                        "28.67312", "121.44187", "28.673", "121.441") if x in body]


async def test_the_public_list_carries_no_address_name_phone_description_or_exact_position(api):
    number = await _chat_case(api)
    r = await api.client.get(f"{V2}/requests.json")
    assert r.status_code == 200
    [req] = r.json()
    assert req["service_request_id"] == number and req["status"] == "open"
    assert _leaks(r.text) == []
    assert req["description"] is None and req["media_url"] is None
    assert req["address"] == "椒江区海门街道"  # township-level place only
    assert (req["lat"], req["long"]) == (28.67, 121.44)  # a ~1 km grid, never the shared point
    single = await api.client.get(f"{V2}/requests/{number}.json")
    assert single.status_code == 200 and _leaks(single.text) == []


async def test_the_public_view_can_be_turned_off(api):
    number = await _chat_case(api)
    api.ctx.settings.open311_public = False
    for path in (f"{V2}/requests.json", f"{V2}/requests/{number}.json", f"{V2}/requests.xml"):
        r = await api.client.get(path)
        assert r.status_code == 404 and number not in r.text
    assert (await api.client.get(f"{V2}/services.json")).status_code == 200


async def test_every_endpoint_answers_in_xml(api):
    number = await _chat_case(api)
    r = await api.client.get(f"{V2}/services.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "services" and {s.findtext("service_code") for s in root} >= {"neighbor", "labor"}
    root = ET.fromstring((await api.client.get(f"{V2}/services/labor.xml")).content)
    assert root.tag == "service_definition" and root.findtext("service_code") == "labor"
    root = ET.fromstring((await api.client.get(f"{V2}/requests.xml")).content)
    assert root.tag == "service_requests" and root[0].tag == "request"
    assert root[0].findtext("service_request_id") == number and root[0].findtext("address") == "椒江区海门街道"
    root = ET.fromstring((await api.client.get(f"{V2}/requests/{number}.xml")).content)
    assert root[0].findtext("status") == "open"
    r = await api.client.get(f"{V2}/requests/TZ-XX-0.xml")
    err = ET.fromstring(r.content)
    assert r.status_code == 404 and err.tag == "errors" and err[0].findtext("code") == "404"
    r = await api.client.post(f"{V2}/requests.xml", data={
        "api_key": "test-key-1", "service_code": "labor", "address_string": "临海市古城街道",
        "description": "工地拖欠三个月工资，老板电话打不通"})
    assert r.status_code == 201 and ET.fromstring(r.content)[0].findtext("service_request_id").startswith("TZ-LH-")
    assert (await api.client.get(f"{V2}/requests.yaml")).status_code == 404


async def test_a_foreign_jurisdiction_id_is_refused_and_ours_is_accepted(api):
    await _chat_case(api)
    r = await api.client.get(f"{V2}/requests.json", params={"jurisdiction_id": "beijing"})
    assert r.status_code == 404 and "jurisdiction_id" in r.json()[0]["description"]
    r = await api.client.get(f"{V2}/services.json", params={"jurisdiction_id": "beijing"})
    assert r.status_code == 404
    r = await api.client.post(f"{V2}/requests.json", data={
        "jurisdiction_id": "beijing", "api_key": "test-key-1", "service_code": "labor",
        "address_string": "临海市古城街道", "description": "工地拖欠三个月工资，老板电话打不通"})
    assert r.status_code == 404
    r = await api.client.get(f"{V2}/requests.json", params={"jurisdiction_id": "taizhou.gov.cn"})
    assert r.status_code == 200 and len(r.json()) == 1


async def test_a_raw_utf8_form_body_is_stored_as_written_not_as_mojibake(api):
    from tests.disputes.conftest import case

    text = "小区门口菜市场占道经营，噪音扰民，多次反映无人处理"
    body = "&".join(f"{k}={v}" for k, v in {
        "api_key": "test-key-1", "service_code": "neighbor", "address_string": "椒江区白云街道",
        "description": text}.items()).encode("utf-8")
    r = await api.client.post(f"{V2}/requests.json", content=body,
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 201, r.text
    d = await case(api.ctx, r.json()[0]["service_request_id"])
    assert d.description == text
    r = await api.client.post(f"{V2}/requests.json", content=b"api_key=test-key-1&description=\xff\xfe",
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "UTF-8" in r.json()[0]["description"]


async def test_a_non_ascii_api_key_is_refused_politely_not_a_server_error(api):
    r = await api.client.post(f"{V2}/requests.json", data={
        "api_key": "钥匙", "service_code": "labor", "address_string": "临海市古城街道",
        "description": "工地拖欠三个月工资，老板电话打不通"})
    assert r.status_code == 403 and r.json()[0]["code"] == 403
