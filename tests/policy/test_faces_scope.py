"""The faces API answers within the officer's jurisdiction (plus the photos of cross-region
requests sent to them), and every search is audited."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from backend.app import create_app
from backend.missing.models import AssistRequest, PersonCase
from backend.users.models import AuditLog, User
from tests.conftest import bearer, texts
from tests.missing.conftest import daytime, face_engine, faces, photo  # noqa: F401  (fixtures)
from tests.missing.test_missing_journey import report_missing

A, JJ, WL, HY = 5701, 5702, 5703, 5704


def upload(rel: str, **form):
    return {"files": {"file": ("p.jpg", photo(rel).read_bytes(), "image/jpeg")}, "data": form}


@pytest.fixture
async def api(ctx):
    app = create_app(ctx.settings)
    app.state.ctx = ctx
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def _h(ctx, tg):
    async with ctx.sm() as s:
        return await bearer(ctx, (await s.scalar(select(User).where(User.telegram_id == tg))).id)


async def test_an_officer_elsewhere_finds_no_case_of_another_county_and_the_search_is_audited(chat, ctx, faces, api):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await report_missing(chat, A)  # a 椒江 case
    async with ctx.sm() as s:
        case = await s.scalar(select(PersonCase))
    r = await api.post("/api/faces/search", headers=await _h(ctx, JJ), **upload("identities/obama/2.jpg"))
    assert [c["case_no"] for c in r.json()["candidates"]][:1] == [case.case_no]
    r = await api.post("/api/faces/search", headers=await _h(ctx, WL), **upload("identities/obama/2.jpg"))
    assert r.status_code == 200 and case.case_no not in r.text and r.json()["candidates"] == []
    async with ctx.sm() as s:
        rows = list(await s.scalars(select(AuditLog).where(AuditLog.action == "missing.search").order_by(AuditLog.id)))
    assert [r.detail["results"] for r in rows] == [[case.case_no], []]
    assert rows[1].detail["actor_role"] == "officer" and rows[1].detail["actor_jurisdiction"] == "温岭市"
    assert rows[1].detail["channel"] == "faces"


async def test_a_cross_region_request_photo_is_searchable_by_the_officers_it_was_sent_to_only(chat, ctx, faces, api):
    from tests.missing.test_missing_journey import register_found

    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await chat.as_role(HY + 10, "officer", "椒江区/海门街道")
    await register_found(chat, WL, pic="identities/kit_harington/1.jpg", county="温岭市")
    await chat.send(JJ, "/missing_assist")
    await chat.photo(JJ, photo("identities/kit_harington/2.jpg"))
    await chat.press(JJ, "全部其他区县")
    assert "民警" in texts(await chat.send(JJ, "椒江火车站发现一名男子"))
    async with ctx.sm() as s:
        req = await s.scalar(select(AssistRequest))
    # 温岭 was asked: it searches its own gallery with the request's photo and finds its case
    r = await api.post("/api/faces/search", headers=await _h(ctx, WL),
                       data={"assist_request_id": str(req.id), "gallery": "found"})
    assert r.status_code == 200 and r.json()["candidates"][0]["case_no"].startswith("ZL-WL-")
    # an officer of the requester's own county was not asked: the request does not exist for them
    r = await api.post("/api/faces/search", headers=await _h(ctx, HY + 10),
                       data={"assist_request_id": str(req.id), "gallery": "found"})
    assert r.status_code == 404


async def test_a_request_sent_to_one_county_is_not_searchable_by_an_officer_of_another(chat, ctx, faces, api):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await chat.as_role(HY, "officer", "黄岩区")
    await chat.send(JJ, "/missing_assist")
    await chat.photo(JJ, photo("identities/kit_harington/2.jpg"))
    await chat.press(JJ, "黄岩区")
    await chat.send(JJ, "椒江火车站发现一名男子")
    async with ctx.sm() as s:
        req = await s.scalar(select(AssistRequest))
    form = {"assist_request_id": str(req.id), "gallery": "found"}
    assert (await api.post("/api/faces/search", headers=await _h(ctx, HY), data=form)).status_code == 200
    assert (await api.post("/api/faces/search", headers=await _h(ctx, WL), data=form)).status_code == 404
    assert (await api.post("/api/faces/search", headers=await _h(ctx, JJ), data=form)).status_code == 200
