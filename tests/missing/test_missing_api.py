"""REST API of 灯塔工程 and the faces API: who may see what."""
from __future__ import annotations

from sqlalchemy import select

from backend.missing.models import PersonCase
from backend.users.models import User
from tests.conftest import bearer
from tests.missing.conftest import photo
from tests.missing.test_missing_journey import register_found, report_missing

A, B, JJ, WL, JJ2 = 5501, 5502, 5601, 5602, 5603


async def auth(ctx, telegram_id: int) -> dict:
    async with ctx.sm() as s:
        u = await s.scalar(select(User).where(User.telegram_id == telegram_id))
    return await bearer(ctx, u.id)


def upload(rel: str, **form):
    return {"files": {"file": ("p.jpg", photo(rel).read_bytes(), "image/jpeg")}, "data": form}


async def test_cases_reviews_and_faces_api(chat, ctx, faces, api):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await report_missing(chat, A)
    await chat.send(B, "/start")
    ha, hb, hjj, hwl = [await auth(ctx, u) for u in (A, B, JJ, WL)]
    async with ctx.sm() as s:
        case = await s.scalar(select(PersonCase))

    assert (await api.get("/api/missing/cases")).status_code == 401
    # the reporter sees the own case, with the own phone and photo
    r = await api.get("/api/missing/cases", headers=ha)
    assert r.status_code == 200 and [c["case_no"] for c in r.json()] == [case.case_no]
    assert r.json()[0]["phone"] == "13812345678" and "face_key" not in r.json()[0]
    assert (await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=ha)).status_code == 200
    # another citizen: nothing, not even that it exists; never the photo
    assert (await api.get("/api/missing/cases", headers=hb)).json() == []
    assert (await api.get(f"/api/missing/cases/{case.id}", headers=hb)).status_code == 404
    assert (await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=hb)).status_code == 404
    # officers: their jurisdiction only
    assert [c["id"] for c in (await api.get("/api/missing/cases", headers=hjj)).json()] == [case.id]
    assert (await api.get("/api/missing/cases", headers=hwl)).json() == []
    assert (await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=hwl)).status_code == 404
    assert (await api.get(f"/api/missing/cases/{case.id}/photos/0", headers=hjj)).status_code == 200

    # faces API: citizens refused, officers served
    for path in ("/api/faces/detect", "/api/faces/search"):
        r = await api.post(path, headers=ha, **upload("identities/obama/2.jpg"))
        assert r.status_code == 403, path
    r = await api.post("/api/faces/detect", headers=hjj, **upload("groups/two_people.jpg"))
    assert r.status_code == 200 and len(r.json()["faces"]) == 2
    assert {"box", "det_score", "size"} <= set(r.json()["faces"][0])
    r = await api.post("/api/faces/search", headers=hjj, **upload("identities/obama/2.jpg", gallery="missing", k="3"))
    top = r.json()["candidates"][0]
    assert top["case_no"] == case.case_no and top["above_threshold"] and top["score"] >= faces.threshold
    r = await api.post("/api/faces/search", headers=hjj, **upload("groups/two_people.jpg", gallery="missing"))
    assert r.status_code == 422 and r.json()["error"] == "multiple_faces"
    r = await api.post("/api/faces/search", headers=hjj, **upload("groups/two_people.jpg", gallery="missing",
                                                                  choose="1"))
    assert r.status_code == 200
    r = await api.post("/api/faces/detect", headers=hjj,
                       files={"file": ("x.jpg", b"not an image at all", "image/jpeg")})
    assert r.status_code == 422 and "不是可识别的照片" in r.json()["message"]
    r = await api.post("/api/faces/detect", headers=hjj,
                       files={"file": ("x.jpg", b"\xff" * (10 * 1024 * 1024 + 1), "image/jpeg")})
    assert r.status_code == 413

    # review queue
    await register_found(chat, JJ)
    assert (await api.get("/api/missing/reviews", headers=ha)).status_code == 403
    reviews = (await api.get("/api/missing/reviews", headers=hjj)).json()
    assert len(reviews) == 1 and reviews[0]["missing"]["case_no"] == case.case_no
    assert {f["code"] for f in reviews[0]["flags"]} >= {"sex_match", "age_ok", "time_ok"}
    cid = reviews[0]["id"]
    img = await api.get(f"/api/missing/reviews/{cid}/image", headers=hjj)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert (await api.get("/api/missing/reviews", headers=hwl)).json() == []
    assert (await api.post(f"/api/missing/reviews/{cid}/confirm", headers=ha)).status_code == 403
    assert (await api.post(f"/api/missing/reviews/{cid}/confirm", headers=hwl)).status_code == 404
    ev = (await api.get(f"/api/missing/reviews/{cid}/evidence", headers=hjj)).json()
    assert ev["missing"]["matched_photo"] == 0 and ev["missing"]["photos"][0]["face"]["box"]
    assert ev["actions"] == ["confirm", "reject"]
    assert (await api.get(f"/api/missing/reviews/{cid}/evidence", headers=hwl)).status_code == 404
    r = await api.post(f"/api/missing/reviews/{cid}/confirm", headers=hjj,
                       json={"note": "家属到场确认", "checklist": ["age"]})
    assert r.status_code == 400  # the face must be checked
    r = await api.post(f"/api/missing/reviews/{cid}/confirm", headers=hjj, json={"note": "家属到场确认"})
    assert r.status_code == 200 and r.json()["status"] == "checked"
    # the same officer cannot give the second confirmation; another officer of the place can
    assert (await api.post(f"/api/missing/reviews/{cid}/second", headers=hjj)).status_code == 403
    await chat.as_role(JJ2, "officer", "椒江区")
    r = await api.post(f"/api/missing/reviews/{cid}/second", headers=await auth(ctx, JJ2))
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert (await api.post(f"/api/missing/reviews/{cid}/reject", headers=hjj)).status_code == 400
    mine = (await api.get(f"/api/missing/cases/{case.id}", headers=ha)).json()
    assert mine["status"] == "found" and "candidates" not in mine and "score" not in str(mine)


async def test_close_case_over_api_deletes_face_data(chat, ctx, faces, api):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await report_missing(chat, A)
    await chat.send(B, "/start")
    async with ctx.sm() as s:
        case = await s.scalar(select(PersonCase))
    assert case.face_key in faces.gallery("missing")
    for uid in (B, WL):  # another citizen, an officer of another county
        r = await api.post(f"/api/missing/cases/{case.id}/close", headers=await auth(ctx, uid))
        assert r.status_code in (403, 404), uid
    r = await api.post(f"/api/missing/cases/{case.id}/close", headers=await auth(ctx, JJ), json={"note": "家属已自行找回"})
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["face_state"] == "deleted"
    assert case.face_key not in faces.gallery("missing")
    r = await api.post(f"/api/missing/cases/{case.id}/close", headers=await auth(ctx, JJ))
    assert r.status_code == 400 and "已经关闭" in r.json()["message"]


async def test_a_reject_can_be_undone_in_its_window_and_an_admin_may_give_the_second_confirmation(chat, ctx, faces,
                                                                                                    api):
    """A reject's reason "other" needs words (API as chat). Rejecting was final: it can now be taken back by the officer who decided, while the undo
    window is open (timeline and audit say so; a late undo is refused like a confirmation's,
    test_missing_evidence); the second confirmation may come from an admin (a supervisor of no
    place) as well as from another officer."""
    from backend.missing.models import CaseEvent, MatchCandidate
    from backend.users.models import AuditLog

    admin = 5604
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(JJ2, "officer", "椒江区")
    await chat.as_role(admin, "admin")
    await report_missing(chat, A)
    await register_found(chat, JJ)
    hjj, hjj2, hadm = [await auth(ctx, u) for u in (JJ, JJ2, admin)]
    cid = (await api.get("/api/missing/reviews", headers=hjj)).json()[0]["id"]
    r = await api.post(f"/api/missing/reviews/{cid}/reject", headers=hjj, json={"reason": "other"})
    assert r.status_code == 400 and "写明原因" in r.json()["message"]  # "other" needs its words, here too
    r = await api.post(f"/api/missing/reviews/{cid}/reject", headers=hjj, json={"reason": "photo", "note": "照片太暗"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert (await api.get("/api/missing/reviews", headers=hjj)).json() == []  # out of the queue
    assert (await api.post(f"/api/missing/reviews/{cid}/undo", headers=hjj2)).status_code in (400, 403)  # not theirs
    r = await api.post(f"/api/missing/reviews/{cid}/undo", headers=hjj)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert [c["id"] for c in (await api.get("/api/missing/reviews", headers=hjj)).json()] == [cid]  # back
    async with ctx.sm() as s:
        notes = [e.note or "" for e in await s.scalars(select(CaseEvent).order_by(CaseEvent.id))]
        undone = await s.scalar(select(AuditLog).where(AuditLog.action == "missing.decision_undone"))
        c = await s.get(MatchCandidate, cid)
        assert c.reason is None and c.reviewer_id is None
    assert any("rejected (photo: 照片太暗)" in n for n in notes) and any("rejected undone" in n for n in notes)
    assert undone.detail["was"] == "rejected"

    # the second confirmation by an admin, who belongs to no place
    r = await api.post(f"/api/missing/reviews/{cid}/confirm", headers=hjj, json={"checklist": ["face", "age"]})
    assert r.status_code == 200 and r.json()["status"] == "checked"
    r = await api.post(f"/api/missing/reviews/{cid}/second", headers=hadm)
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
