"""Officials get the same masked view everywhere: API, chat card and red-alert notifications;
parties' names are masked for roles that do not own the case. Statistics need a jurisdiction."""
from __future__ import annotations

from sqlalchemy import select

from backend.core.db import session_scope
from backend.notify.models import Outbox
from backend.users import service as users
from tests.disputes.conftest import api, daytime  # noqa: F401  (fixtures)

RAW = ["13912345678", "330102197001011234", "陈大富", "13700001111"]
TEXT = "对方扬言要同归于尽，还要堵路上访，身份证330102197001011234，我的电话13912345678"


async def _red_case(api, owner):
    from backend.disputes import service

    async with session_scope(api.ctx.sm) as s:
        place = await users.find_jurisdiction(s, "椒江区/海门街道")
        d = await service.create_case(s, citizen=await users.get_user(s, owner.id), category="neighbor",
                                      description=TEXT, place=place, phone="13912345678",
                                      other_party="陈大富 13700001111", store=api.ctx.files)
        return d.id, d.risk


async def test_an_official_sees_parties_phones_and_ids_masked_in_the_api_and_in_the_red_alert(api):
    owner = await api.user(9301)
    official = await api.user(9302, "official", "椒江区")
    mediator = await api.user(9303, "mediator", "椒江区/海门街道")
    cid, risk = await _red_case(api, owner)
    assert risk == "red"
    seen = (await api.client.get(f"/api/disputes/{cid}", headers=api.auth(official))).json()
    body = str(seen)
    assert [x for x in RAW if x in body] == []
    assert seen["other_party"] == "陈** 137****1111" and "139****5678" in seen["description"]
    async with api.ctx.sm() as s:
        alert = (await s.scalars(select(Outbox).where(Outbox.user_id == official.id))).all()
    assert alert and "红色预警" in alert[-1].text
    assert [x for x in RAW if x in alert[-1].text] == [] and "139****5678" in alert[-1].text
    # the owner and the handling mediator see what was written
    for who in (owner, mediator):
        full = (await api.client.get(f"/api/disputes/{cid}", headers=api.auth(who))).json()
        assert full["other_party"] == "陈大富 13700001111" and "330102197001011234" in full["description"]


async def test_staff_without_a_jurisdiction_get_no_statistics_anywhere(api):
    from tests.conftest import ChatDriver

    chat = ChatDriver(api.app.state.ctx)  # the same running Hehe (one server per data dir)
    nowhere = await api.user(9311, "official", None)
    city = await api.user(9312, "official", "台州市")
    for path in ("/api/stats/disputes", "/api/stats/supervision"):
        assert (await api.client.get(path, headers=api.auth(nowhere))).status_code == 404, path
        assert (await api.client.get(path, headers=api.auth(city))).status_code == 200, path
    await chat.as_role(9313, "procurator", None)
    assert "不在您的辖区" in (await chat.send(9313, "/supstats"))[-1].text
