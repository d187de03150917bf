"""The officer's face-review page (灯塔): the missing slice's evidence — the matched crops side by
side, every photo of both cases, the consistency flags — and its two-step decision: one officer
confirms with the checklist, another confirms a second time, then the family is told; a reject
needs a reason. The buttons come from the slice's own actions_for."""
from __future__ import annotations

from sqlalchemy import select

from backend.core.db import session_scope
from backend.missing.models import MatchCandidate, PersonCase
from backend.notify.models import Outbox
from backend.users.models import AuditLog, Role
from tests.console.conftest import as_role, make_candidate


async def _candidate(site) -> int:
    async with session_scope(site.ctx.sm) as s:
        return await make_candidate(s, site.ctx.files)


async def test_an_officer_sees_the_queue_and_the_evidence_with_the_matched_crops_photos_and_flags(site):
    cid = await _candidate(site)
    b = await as_role(site, Role.officer)
    queue = await b.get("/console/faces")
    assert queue.status_code == 200 and f'data-candidate="{cid}"' in queue.text
    page = await b.get(f"/console/faces/{cid}")
    assert page.status_code == 200
    html = page.text
    assert f'src="/api/missing/reviews/{cid}/image"' in html  # the review card: the crops side by side
    img = await b.get(f"/api/missing/reviews/{cid}/image")
    assert img.status_code == 200 and img.content[:3] == b"\xff\xd8\xff"
    async with site.ctx.sm() as s:
        c = await s.get(MatchCandidate, cid)
        m, f = c.missing, c.found
    for case in (m, f):
        for n in range(2):
            assert f'href="/api/missing/cases/{case.id}/photos/{n}"' in html
    assert "性别一致" in html and "年龄相符" in html
    assert 'id="confirm"' in html and 'id="reject"' in html and 'id="second"' not in html
    async with site.ctx.sm() as s:
        assert await s.scalar(select(AuditLog).where(AuditLog.action == "missing.evidence_read",
                                                     AuditLog.subject == f"candidate:{cid}"))


async def test_a_match_needs_two_officers_and_then_the_family_is_told(site):
    cid = await _candidate(site)
    first = await as_role(site, Role.officer)
    no_face = await first.post(f"/api/missing/reviews/{cid}/confirm", json={"checklist": ["age"]})
    assert no_face.status_code == 400  # the face must be checked
    r = await first.post(f"/api/missing/reviews/{cid}/confirm", json={"checklist": ["face", "age", "sex"]})
    assert r.status_code == 200 and r.json()["status"] == "checked"
    page = (await first.get(f"/console/faces/{cid}")).text
    assert "待第二人确认" in page and 'id="second"' not in page  # not by the same officer
    second = await as_role(site, Role.officer)
    page = (await second.get(f"/console/faces/{cid}")).text
    assert 'id="second"' in page and "面部特征一致" in page
    r = await second.post(f"/api/missing/reviews/{cid}/second", json={})
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    async with site.ctx.sm() as s:
        c = await s.get(MatchCandidate, cid)
        told = await s.scalar(select(Outbox).where(Outbox.dedupe_key == f"missing:found:{c.missing_id}:{cid}"))
        assert told is not None and told.user_id == c.missing.reporter_id
        assert (await s.get(PersonCase, c.missing_id)).status != "open"


async def test_a_reject_needs_a_reason_from_the_list(site):
    cid = await _candidate(site)
    b = await as_role(site, Role.officer)
    assert (await b.post(f"/api/missing/reviews/{cid}/reject", json={"reason": "looks odd"})).status_code == 400
    r = await b.post(f"/api/missing/reviews/{cid}/reject", json={"reason": "age", "note": "年龄差太多"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    page = (await b.get(f"/console/faces/{cid}")).text
    assert "已排除" in page and 'id="undo"' in page and 'id="confirm"' not in page


async def test_an_officer_elsewhere_and_other_roles_cannot_open_the_review(site):
    cid = await _candidate(site)
    mediator = await as_role(site, Role.mediator)
    assert (await mediator.get(f"/console/faces/{cid}")).status_code == 403
    async with session_scope(site.ctx.sm) as s:
        other = await make_candidate(s, site.ctx.files, place="路桥区")
    officer = await as_role(site, Role.officer)  # at 椒江区
    assert (await officer.get(f"/console/faces/{other}")).status_code == 404
    assert f'data-candidate="{other}"' not in (await officer.get("/console/faces")).text


async def test_the_help_requests_page_lists_the_officers_own_requests_with_their_answers(site):
    from backend.missing.models import AssistAnswer, AssistRequest

    b = await as_role(site, Role.officer)
    me = (await b.get("/api/me")).json()["id"]
    async with session_scope(site.ctx.sm) as s:
        other = await as_role(site, Role.officer)
        other_id = (await other.get("/api/me")).json()["id"]
        req = AssistRequest(requester_id=me, note="火车站发现一名老人，说不清住址", status="answered")
        s.add(req)
        await s.flush()
        s.add(AssistAnswer(request_id=req.id, officer_id=other_id, case_id=None, note="本地无此人"))
    assert 'href="/console/assist"' in (await b.get("/console/faces")).text
    page = (await b.get("/console/assist")).text
    assert "火车站发现一名老人" in page and "已有回复" in page and "本地无此人" in page
    assert "火车站发现一名老人" not in (await other.get("/console/assist")).text


async def test_revealing_a_face_match_needs_a_fresh_second_factor(site):
    from datetime import timedelta

    from sqlalchemy import update

    from backend.auth.models import WebSession
    from backend.core.clock import now

    cid = await _candidate(site)
    b = await as_role(site, Role.officer)
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor_at=now() - timedelta(hours=2)))
        await s.commit()
    page = await b.get(f"/console/faces/{cid}")
    assert page.status_code == 403 and "data-stepup-reload" in page.text and "/image" not in page.text
    assert (await b.get(f"/api/missing/reviews/{cid}/image")).status_code == 403
    assert (await b.get(f"/api/missing/reviews/{cid}/evidence")).json()["error"] == "step_up_required"
    async with site.ctx.sm() as s:
        await s.execute(update(WebSession).values(second_factor_at=now()))
        await s.commit()
    assert (await b.get(f"/console/faces/{cid}")).status_code == 200
    assert (await b.get(f"/api/missing/reviews/{cid}/image")).status_code == 200
