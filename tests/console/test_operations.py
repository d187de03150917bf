"""The console's operations beyond reading: bulk assignment to another mediator and bulk replies from
templates (each through the disputes workflow, a result and an audit entry per case, the reply in
the timeline and the citizen's outbox); reply templates kept by supervisors only; the supervision
item page and its workflow steps; admin role changes, deactivation and the jurisdictions import;
officers' cross-region help requests. Each wrong role is refused."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from backend.auth.models import WebSession
from backend.core.clock import now
from backend.core.db import session_scope
from backend.disputes.models import Dispute, DisputeEvent
from backend.notify.models import Outbox
from backend.supervision import service as sup
from backend.supervision.models import SupervisionItem
from backend.users import service as users
from backend.users.models import AuditLog, Jurisdiction, Role, User
from tests.console.conftest import as_role, file_cases


async def me(site, b) -> User:
    async with site.ctx.sm() as s:
        return await s.get(User, int((await b.get("/api/me")).json()["id"]))


async def place_person(site, b, role: Role, place: str, title: str | None = None) -> User:
    """Move the signed-in person of ``b`` to ``place`` (and give them ``title``)."""
    async with session_scope(site.ctx.sm) as s:
        u = await s.get(User, int((await b.get("/api/me")).json()["id"]))
        await users.set_role(s, u, role, await users.find_jurisdiction(s, place), actor="test", title=title)
        return u


# ---------------------------------------------------------------- templates and bulk
async def test_a_supervisor_keeps_templates_and_a_plain_mediator_may_only_read_them(site):
    boss = await as_role(site, Role.mediator)
    await place_person(site, boss, Role.mediator, "椒江区", title="supervisor")
    r = await boss.post("/console/api/templates", json={"name": "已收悉", "body": "您的纠纷 {number} 已收悉，我们将尽快联系您。"})
    assert r.status_code == 201, r.text
    assert (await boss.post("/console/api/templates", json={"name": "已收悉", "body": "x"})).status_code == 409
    plain = await as_role(site, Role.mediator)
    page = await plain.get("/console/templates")
    assert page.status_code == 200 and "已收悉" in page.text and 'id="new-template"' not in page.text
    refused = await plain.post("/console/api/templates", json={"name": "自己写的", "body": "不行"})
    assert refused.status_code == 403
    edit = await plain.post(f"/console/api/templates/{r.json()['id']}", json={"name": "改名", "body": "不行"})
    assert edit.status_code == 403
    for role in (Role.official, Role.officer, Role.procurator, Role.deputy):
        other = await as_role(site, role)
        assert (await other.get("/console/templates")).status_code == 403, role
        assert (await other.post("/console/api/templates", json={"name": "n", "body": "b"})).status_code == 403, role


async def test_a_supervisor_bulk_replies_from_a_template_to_each_citizen_through_the_outbox_and_the_timeline(site):
    ids = await file_cases(site, 3)
    [outside] = await file_cases(site, 1, place="路桥区")
    boss = await as_role(site, Role.mediator)
    await place_person(site, boss, Role.mediator, "椒江区", title="supervisor")
    tpl = (await boss.post("/console/api/templates", json={"name": "受理告知", "body": "您的纠纷 {number} 已收到，调解员将在三个工作日内联系您。"})).json()
    assert "受理告知" in (await boss.get("/console/cases?tab=open")).text  # offered in the bulk form
    r = await boss.post("/console/api/bulk", json={"ids": [*ids, outside], "action": "reply", "template_id": tpl["id"]})
    assert r.status_code == 200, r.text
    res = {x["id"]: x for x in r.json()["results"]}
    assert r.json()["done"] == 3 and r.json()["failed"] == 1
    assert not res[outside]["ok"] and res[outside]["error"]
    async with site.ctx.sm() as s:
        cases = {d.id: d for d in await s.scalars(select(Dispute).where(Dispute.id.in_([*ids, outside])))}
        for cid in ids:
            ev = await s.scalar(select(DisputeEvent).where(DisputeEvent.dispute_id == cid, DisputeEvent.action == "reply"))
            assert ev is not None and cases[cid].number in ev.note and "三个工作日" in ev.note
            assert cases[cid].status == "new"  # a reply does not move the case
        texts = [o.text for o in await s.scalars(select(Outbox).where(Outbox.user_id == cases[ids[0]].citizen_id))]
        assert any(cases[ids[0]].number in t and "三个工作日" in t for t in texts)
        assert not any(cases[outside].number in t and "三个工作日" in t for t in texts)
        audited = list(await s.scalars(select(AuditLog).where(AuditLog.action == "console.bulk")))
    assert sorted(int(a.subject.split(":")[1]) for a in audited) == sorted([*ids, outside])
    assert all(a.detail["bulk_action"] == "reply" and a.detail["template"] == tpl["id"] for a in audited)
    page = (await boss.get(f"/console/cases/{ids[0]}")).text
    assert "答复当事人" in page and "三个工作日" in page
    no_tpl = await boss.post("/console/api/bulk", json={"ids": ids, "action": "reply", "template_id": 9999})
    assert no_tpl.status_code == 400 and "答复模板" in no_tpl.json()["message"]


async def test_bulk_assignment_hands_cases_to_a_mediator_who_may_handle_them_and_refuses_anyone_else(site):
    ids = await file_cases(site, 2)
    boss = await as_role(site, Role.mediator)
    for cid in ids:
        assert (await boss.post(f"/api/disputes/{cid}/accept")).status_code == 200
    colleague = await as_role(site, Role.mediator)
    colleague_user = await place_person(site, colleague, Role.mediator, "椒江区")
    elsewhere = await as_role(site, Role.mediator)
    far = await place_person(site, elsewhere, Role.mediator, "路桥区")
    official = await me(site, await as_role(site, Role.official))
    page = (await boss.get("/console/cases?tab=open")).text
    assert f'<option value="{colleague_user.id}">' in page and f'<option value="{far.id}">' not in page
    r = await boss.post("/console/api/bulk", json={"ids": ids, "action": "assign", "mediator_id": colleague_user.id,
                                                   "reason": "工作量调整"})
    assert r.json()["done"] == 2, r.text
    async with site.ctx.sm() as s:
        assert {d.mediator_id for d in await s.scalars(select(Dispute).where(Dispute.id.in_(ids)))} == {colleague_user.id}
        told = await s.scalar(select(func.count(Outbox.id)).where(Outbox.user_id == colleague_user.id,
                                                                   Outbox.dedupe_key.like(f"d{ids[0]}-assign-%")))
    assert told == 1
    assert "改由" in (await colleague.get(f"/console/cases/{ids[0]}")).text
    for target in (far, official):
        bad = await boss.post("/console/api/bulk", json={"ids": ids, "action": "assign", "mediator_id": target.id})
        assert bad.json()["done"] == 0 and all("不是可以办理" in x["error"] for x in bad.json()["results"])
    official_b = await as_role(site, Role.official)
    assert (await official_b.post("/console/api/bulk", json={"ids": ids, "action": "assign",
                                                             "mediator_id": colleague_user.id})).json()["done"] == 0


# ---------------------------------------------------------------- supervision item page
async def _item(site, deputy_b) -> SupervisionItem:
    async with session_scope(site.ctx.sm) as s:
        deputy = await s.get(User, int((await deputy_b.get("/api/me")).json()["id"]))
        place = await users.find_jurisdiction(s, "白云街道")
        return await sup.propose(s, deputy, sup.Draft(title="白云街道河道长期排污", area="生态环境",
                                                      description="白云街道某河道长期有工厂排污，气味很大，附近居民反映多次无果。",
                                                      place_id=place.id))


async def test_a_procurator_opens_an_item_and_takes_the_steps_the_workflow_offers(site):
    deputy = await as_role(site, Role.deputy)
    item = await _item(site, deputy)
    proc = await as_role(site, Role.procurator)
    assert f'href="/console/supervision/{item.id}"' in (await proc.get("/console/supervision")).text
    page = (await proc.get(f"/console/supervision/{item.id}")).text
    assert "白云街道河道长期排污" in page
    assert 'data-action="accept"' in page and 'data-action="decline"' in page and 'data-action="close"' not in page
    assert (await deputy.post(f"/console/api/supervision/{item.id}/step/accept", json={})).status_code == 403
    r = await proc.post(f"/console/api/supervision/{item.id}/step/accept", json={"note": "已受理，开展调查"})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    stale = await proc.post(f"/console/api/supervision/{item.id}/step/accept", json={})
    assert stale.status_code == 409
    r = await proc.post(f"/console/api/supervision/{item.id}/step/suggest",
                        json={"agency": "椒江区生态环境分局", "content": "责令排污企业限期整改。"})
    assert r.status_code == 200 and r.json()["status"] == "suggested"
    page = (await proc.get(f"/console/supervision/{item.id}")).text
    assert "椒江区生态环境分局" in page and "等待回复" in page and "已受理，开展调查" in page
    assert 'data-action="reply"' in page and 'data-action="accept"' not in page
    assert "椒江区生态环境分局" in (await proc.get("/console/supervision")).text  # awaiting a reply
    async with site.ctx.sm() as s:
        assert await s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "supervision.read", AuditLog.subject == f"supervision:{item.number}")) >= 1
    # the deputy sees their item and may urge it; another deputy does not see it at all
    own = (await deputy.get(f"/console/supervision/{item.id}")).text
    assert 'data-action="urge"' in own and 'data-action="reply"' not in own
    stranger = await as_role(site, Role.deputy)
    assert (await stranger.get(f"/console/supervision/{item.id}")).status_code == 404
    assert (await stranger.post(f"/console/api/supervision/{item.id}/step/urge", json={})).status_code == 404
    for role in (Role.mediator, Role.official, Role.officer):
        other = await as_role(site, role)
        assert (await other.get(f"/console/supervision/{item.id}")).status_code == 403, role


# ---------------------------------------------------------------- admin
async def test_an_admin_changes_a_role_and_deactivates_a_person_from_the_console_and_others_cannot(site):
    admin = await as_role(site, Role.admin)
    mediator_b = await as_role(site, Role.mediator)
    person = await me(site, mediator_b)
    page = (await admin.get("/console/admin")).text
    assert f'data-api="/api/admin/users/{person.id}/role"' in page
    assert f'data-post="/api/admin/users/{person.id}/deactivate"' in page
    r = await admin.post(f"/api/admin/users/{person.id}/role", json={"role": "official", "jurisdiction": "椒江区"})
    assert r.status_code == 200 and r.json()["role"] == "official"
    assert (await mediator_b.get("/console/board")).status_code == 200  # now an official
    assert (await admin.post(f"/api/admin/users/{person.id}/deactivate")).status_code == 200
    assert (await mediator_b.get("/console/board")).status_code in (401, 403)
    page = (await admin.get("/console/admin")).text
    assert f'data-post="/api/admin/users/{person.id}/reactivate"' in page
    assert (await admin.post(f"/api/admin/users/{person.id}/reactivate")).status_code == 200
    async with site.ctx.sm() as s:
        actions = set(await s.scalars(select(AuditLog.action).where(AuditLog.subject == f"user:{person.id}")))
    assert {"user.role_changed", "user.deactivated", "user.reactivated"} <= actions
    mediator = await as_role(site, Role.mediator)
    assert (await mediator.post(f"/api/admin/users/{person.id}/role", json={"role": "admin"})).status_code == 403


GOOD_CSV = "county,township,village,grid\n椒江区,白云街道,测试新村,第一网格\n椒江区,白云街道,测试新村,第二网格\n"


async def test_jurisdictions_import_takes_the_cli_file_refuses_a_bad_one_whole_and_needs_a_fresh_second_factor(site):
    admin = await as_role(site, Role.admin)
    async with site.ctx.sm() as s:
        before = await s.scalar(select(func.count(Jurisdiction.id)))
    r = await admin.post("/console/api/jurisdictions/import", json={"csv": "\ufeff" + GOOD_CSV, "filename": "a.csv"})
    assert r.status_code == 200 and r.json()["added"] == 3, r.text
    again = await admin.post("/console/api/jurisdictions/import", json={"csv": GOOD_CSV})
    assert again.json()["added"] == 0  # idempotent, as the CLI
    bad = "county,township,village\n椒江区,白云街道,另一个村\n火星区,某街道,某村\n"
    r = await admin.post("/console/api/jurisdictions/import", json={"csv": bad})
    assert r.status_code == 400 and "第 2 行" in r.json()["message"] and "火星区" in r.json()["message"]
    r = await admin.post("/console/api/jurisdictions/import", json={"csv": "name,code\n椒江,JJ\n"})
    assert r.status_code == 400 and "county" in r.json()["message"]
    r = await admin.post("/console/api/jurisdictions/import", json={"csv": "county,township\n\ufffd\ufffd,x\n"})
    assert r.status_code == 400 and "UTF-8" in r.json()["message"]
    r = await admin.post("/console/api/jurisdictions/import", json={"csv": "  "})
    assert r.status_code == 400 and "空" in r.json()["message"]
    async with site.ctx.sm() as s:
        assert await s.scalar(select(func.count(Jurisdiction.id))) == before + 3  # 另一个村 not half-imported
        assert await s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "jurisdictions.imported")) == 2
        await s.execute(update(WebSession).values(second_factor_at=now() - timedelta(hours=3)))
        await s.commit()
    stale = await admin.post("/console/api/jurisdictions/import", json={"csv": GOOD_CSV})
    assert stale.status_code == 403 and stale.json()["error"] == "step_up_required"
    mediator = await as_role(site, Role.mediator)
    assert (await mediator.post("/console/api/jurisdictions/import", json={"csv": GOOD_CSV})).status_code == 403


# ---------------------------------------------------------------- help requests
async def _help_request(site, requester: User, target: str | None) -> int:
    from backend.core.files import store_file
    from backend.missing.models import AssistRequest
    from tests.console.conftest import FACES

    photo = sorted((FACES / "obama").iterdir())[0]
    async with session_scope(site.ctx.sm) as s:
        f = await store_file(s, site.ctx.files, photo.read_bytes(), mime="image/jpeg",
                             filename="assist-card.jpg", owner_kind="missing_assist", owner_id=None)
        t = await users.find_jurisdiction(s, target) if target else None
        req = AssistRequest(requester_id=requester.id, jurisdiction_id=requester.jurisdiction_id, photo_id=f.id,
                            marked_photo_id=f.id, note="火车站附近发现一名老人，无法说清住址", status="open",
                            target_id=t.id if t else None)
        s.add(req)
        await s.flush()
        return req.id


async def test_officers_see_the_help_requests_sent_to_their_county_with_the_marked_face_and_answer_them(site):
    asker_b = await as_role(site, Role.officer)  # 椒江区
    asker = await me(site, asker_b)
    to_luqiao = await _help_request(site, asker, "路桥区")
    broadcast = await _help_request(site, asker, None)
    luqiao_b = await as_role(site, Role.officer)
    await place_person(site, luqiao_b, Role.officer, "路桥区")
    huangyan_b = await as_role(site, Role.officer)
    await place_person(site, huangyan_b, Role.officer, "黄岩区")
    colleague_b = await as_role(site, Role.officer)  # 椒江区 too: nothing is sent to the asker's county
    page = (await luqiao_b.get("/console/assist")).text
    assert f'data-request="{to_luqiao}"' in page and f'data-request="{broadcast}"' in page
    assert "火车站附近发现一名老人" in page
    img = await luqiao_b.get(f"/console/assist/{to_luqiao}/image")
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    page = (await huangyan_b.get("/console/assist")).text
    assert f'data-request="{broadcast}"' in page and f'data-request="{to_luqiao}"' not in page
    assert (await huangyan_b.get(f"/console/assist/{to_luqiao}/image")).status_code == 404
    assert f'data-request="{broadcast}"' not in (await colleague_b.get("/console/assist")).text
    assert (await colleague_b.post(f"/console/api/assist/{broadcast}/answer", json={})).status_code == 404
    r = await luqiao_b.post(f"/console/api/assist/{to_luqiao}/answer", json={"note": "本区无此人走失报案"})
    assert r.status_code == 200 and r.json()["case_id"] is None
    assert (await luqiao_b.post(f"/console/api/assist/{to_luqiao}/answer", json={})).status_code == 400
    mine = (await asker_b.get("/console/assist")).text
    assert f'data-mine="{to_luqiao}"' in mine and "本区无此人走失报案" in mine and "不认识此人" in mine
    async with site.ctx.sm() as s:
        assert await s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "assist.download", AuditLog.subject == f"assist:{to_luqiao}")) == 1
    for role in (Role.mediator, Role.official, Role.procurator, Role.deputy):
        other = await as_role(site, role)
        assert (await other.get("/console/assist")).status_code == 403, role
        assert (await other.get(f"/console/assist/{to_luqiao}/image")).status_code == 403, role
