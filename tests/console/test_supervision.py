"""Procurators and deputies on the console: the supervision items they may see with their
deadlines; a deputy rates their own closed item through the service the chat's buttons use, and
nobody else is offered the rating."""
from __future__ import annotations

from backend.core.db import session_scope
from backend.supervision import service as sup
from backend.supervision.models import SupervisionItem
from backend.users import service as users
from backend.users.models import Role, User
from tests.console.conftest import as_role


async def _closed_item(site, deputy_browser, procurator_browser) -> SupervisionItem:
    async with session_scope(site.ctx.sm) as s:
        deputy = await s.get(User, int((await deputy_browser.get("/api/me")).json()["id"]))
        proc = await s.get(User, int((await procurator_browser.get("/api/me")).json()["id"]))
        place = await users.find_jurisdiction(s, "白云街道")
        item = await sup.propose(s, deputy, sup.Draft(title="白云街道河道长期排污", area="生态环境",
                                                      description="白云街道某河道长期有工厂排污，气味很大，附近居民反映多次无果。",
                                                      place_id=place.id))
        await sup.accept(s, proc, item.id)
        await sup.close(s, proc, item.id, "已督促整改完毕")
        return item


async def test_a_deputy_rates_their_own_closed_item_and_the_procurator_sees_it(site):
    deputy = await as_role(site, Role.deputy)
    procurator = await as_role(site, Role.procurator)
    item = await _closed_item(site, deputy, procurator)
    page = (await deputy.get("/console/supervision")).text
    assert item.number in page and f'data-item="{item.number}"' in page
    other = await as_role(site, Role.deputy)
    assert f'data-item="{item.number}"' not in (await other.get("/console/supervision")).text
    refused = await other.post(f"/console/api/supervision/{item.id}/rate", json={"rating": "satisfied"})
    assert refused.status_code in (403, 404)
    r = await deputy.post(f"/console/api/supervision/{item.id}/rate", json={"rating": "basic", "comment": "基本解决"})
    assert r.status_code == 200 and r.json()["rating"] == "basic"
    assert "基本满意" in (await procurator.get("/console/supervision")).text
    again = await deputy.post(f"/console/api/supervision/{item.id}/rate", json={"rating": "satisfied"})
    assert again.status_code == 409
