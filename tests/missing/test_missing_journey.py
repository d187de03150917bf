"""The whole 灯塔工程 journey through the offline channel with the real face model and real photos:
a family reports a missing person (summary, then submit) → an officer registers a found person →
the match goes to officers for review (the matched face crops side by side, score, flags) →
confirmed in two steps (checklist, then a second officer) → the family is told when the undo
window closes, both cases 已找到, photos and face data deleted by the retention sweep."""
from __future__ import annotations

import logging
from datetime import timedelta

import time_machine

from sqlalchemy import func, select

from backend.core.files import StoredFile, blob_key
from backend.faces.service import FaceService
from backend.missing.models import CaseEvent, MatchCandidate, PersonCase
from backend.users.models import AuditLog
from tests.conftest import make_settings, texts
from tests.missing.conftest import DAYTIME, photo, run_due_jobs

CITIZEN, OFFICER_JJ, OFFICER_WL, OFFICER_JJ2 = 5001, 5101, 5102, 5103
CHECKS = ("面部特征一致", "年龄相符", "性别一致", "衣着/特征相符", "地点、时间合理")


async def report_missing(chat, uid: int, pic: str = "identities/obama/1.jpg", name: str = "王阿公"):
    await chat.send(uid, "/start")
    await chat.press(uid, "报告走失人员")
    assert "性别" in texts(await chat.send(uid, name))
    assert "年龄" in texts(await chat.press(uid, "男"))
    assert "身高" in texts(await chat.send(uid, "78"))
    assert "区县" in texts(await chat.send(uid, "165"))
    assert "什么时候" in texts(await chat.send(uid, "椒江区海门街道东山公园"))
    assert "衣着" in texts(await chat.send(uid, "今天 08:00"))
    assert "健康" in texts(await chat.send(uid, "深蓝色外套，灰色裤子"))
    assert "电话" in texts(await chat.send(uid, "阿尔茨海默症，需按时服药"))
    assert "照片" in texts(await chat.send(uid, "138 1234 5678"))
    msgs = await chat.photo(uid, photo(pic))
    assert "第 1 张" in texts(msgs), texts(msgs)
    summary = texts(await chat.press(uid, "下一步"))
    assert "请核对" in summary and "姓名：" + name in summary and "联系电话：13812345678" in summary
    return await chat.press(uid, "确认提交")


async def register_found(chat, uid: int, pic: str = "identities/obama/2.jpg", county: str = "椒江区"):
    await chat.send(uid, "/missing_found")
    msgs = await chat.photo(uid, photo(pic))
    assert "第 1 张" in texts(msgs), texts(msgs)
    assert "区县" in texts(await chat.press(uid, "下一步"))
    assert "具体地点" in texts(await chat.press(uid, county))
    assert "什么时候" in texts(await chat.send(uid, "海门街道救助站"))
    assert "估计年龄" in texts(await chat.press(uid, "刚刚"))
    assert "性别" in texts(await chat.send(uid, "80"))
    assert "身高" in texts(await chat.press(uid, "男"))
    assert "自称" in texts(await chat.press(uid, "跳过"))
    assert "衣着" in texts(await chat.send(uid, "老王"))
    assert "体貌特征" in texts(await chat.send(uid, "灰色棉袄"))
    assert "其他情况" in texts(await chat.press(uid, "跳过"))
    summary = texts(await chat.send(uid, "神志不太清楚，随身带着药盒"))
    assert "姓名：老王" in summary and "衣着：灰色棉袄" in summary and "其他情况：神志不太清楚" in summary
    return await chat.press(uid, "确认提交")


async def confirm_match(chat, first: int, second: int):
    """Step one (the checklist) by ``first``, step two by ``second``; returns step two's replies."""
    checklist = texts(await chat.press(first, "确认是同一人"))
    assert "逐项核对" in checklist
    for item in CHECKS:
        await chat.press(first, item)
    assert "另一位民警" in texts(await chat.press(first, "提交确认"))
    return await chat.press(second, "第二人确认")


async def test_whole_journey(chat, ctx, faces, caplog):
    caplog.set_level(logging.INFO)
    await chat.as_role(OFFICER_JJ, "officer", "椒江区")
    await chat.as_role(OFFICER_WL, "officer", "温岭市")
    await chat.as_role(OFFICER_JJ2, "officer", "椒江区")

    done = texts(await report_missing(chat, CITIZEN))
    assert "XR-JJ-20261128-0001" in done
    async with ctx.sm() as s:
        m = await s.scalar(select(PersonCase).where(PersonCase.kind == "missing"))
    assert m.face_state == "enrolled" and m.phone == "13812345678" and m.health.startswith("阿尔茨海默症")
    assert m.face_key in faces.gallery("missing")

    found_reply = texts(await register_found(chat, OFFICER_JJ))
    assert "ZL-JJ-20261128-0001" in found_reply and "1 位可能相符" in found_reply

    # the officer of the jurisdiction gets the review card with score and flags
    review = next(x for x in chat.inbox(OFFICER_JJ) if "待审核" in x.text)
    assert review.photo is not None
    assert "相似度" in review.text and "性别一致" in review.text and "年龄相符" in review.text
    assert "晚于最后出现时间" in review.text and "地点相近" in review.text
    assert "第 1/1 张照片" in review.text
    assert any("确认" in label for row in review.inline for label, _ in row)
    blob = ctx.channel.get_file(review.photo)
    from PIL import Image
    import io
    im = Image.open(io.BytesIO(blob.data))
    assert im.width > 700  # two large face crops side by side
    # an officer of another county does not see it
    assert not any("待审核" in x.text for x in chat.inbox(OFFICER_WL))

    async with ctx.sm() as s:
        cand = await s.scalar(select(MatchCandidate))
    assert cand.status == "pending" and cand.score >= faces.threshold

    # the family never sees a candidate (no score, no found person's photo, no found case number)
    citizen_box = chat.inbox(CITIZEN)
    assert not any(x.photo for x in citizen_box)
    assert not any("相似度" in x.text or "ZL-" in x.text for x in citizen_box)

    msgs = await confirm_match(chat, OFFICER_JJ, OFFICER_JJ2)
    assert "已确认" in texts(msgs) and "撤销" in chat.buttons(OFFICER_JJ2)[0]
    # nobody is told during the undo window
    assert not any("已经找到" in x.text for x in chat.inbox(CITIZEN))
    with time_machine.travel(DAYTIME + timedelta(minutes=11), tick=True):
        await ctx.flush()
    family = chat.last(CITIZEN)
    assert "已经找到" in family.text and "XR-JJ-20261128-0001" in family.text and family.photo is None

    async with ctx.sm() as s:
        cases = list(await s.scalars(select(PersonCase).order_by(PersonCase.id)))
        events = list(await s.scalars(select(CaseEvent).where(CaseEvent.to_status == "found")))
    assert [c.status for c in cases] == ["found", "found"]
    assert [c.face_state for c in cases] == ["scheduled", "scheduled"]
    assert len(events) == 2 and all(e.actor.startswith("user:") for e in events)
    assert all(c.face_delete_at is not None for c in cases)  # a due date the sweep reads
    # the citizen's own list says 已找到
    assert "已找到" in texts(await chat.send(CITIZEN, "/missing_my"))

    # a week later the scheduler deletes the biometric data
    async def deleted():
        async with ctx.sm() as s:
            return all(c.face_state == "deleted" for c in await s.scalars(select(PersonCase)))

    async with ctx.sm() as s:
        kept = list(await s.scalars(select(StoredFile)))
    assert {f.owner_kind for f in kept} == {"missing_case", "missing_candidate"}  # photos and the card
    await run_due_jobs(ctx, DAYTIME + timedelta(days=8), until=deleted)
    assert await deleted()
    # the retention sweep removed the originals and the review card too, rows and files
    async with ctx.sm() as s:
        assert await s.scalar(select(func.count(StoredFile.id))) == 0
    assert not any([await ctx.files.exists(blob_key(f.sha256)) for f in kept])
    keys = {c.face_key for c in cases}
    probe = photo("identities/obama/3.jpg").read_bytes()
    for gallery in ("missing", "found"):
        assert not keys & {mt.person_id for mt in faces.search(gallery, probe, k=10)}
    # also after a restart (a fresh service reading the galleries from disk)
    fresh = FaceService(make_settings(ctx.settings.data_dir.parent, face_enabled=True))
    fresh.engine = faces.engine
    fresh.load()
    for gallery in ("missing", "found"):
        assert not keys & {mt.person_id for mt in fresh.search(gallery, probe, k=10)}

    # the raw phone number never reached the logs
    assert "13812345678" not in caplog.text


async def test_reject_keeps_cases_open(chat, ctx, faces):
    await chat.as_role(OFFICER_JJ, "officer", "椒江区")
    await report_missing(chat, CITIZEN)
    await register_found(chat, OFFICER_JJ)
    assert "否决原因" in texts(await chat.press(OFFICER_JJ, "否决"))
    await chat.press(OFFICER_JJ, "其他原因")
    await chat.press(OFFICER_JJ, "跳过")
    assert "请写明原因" in [m for m in chat.ch.out[OFFICER_JJ] if m.toast][-1].text  # "other" needs its words
    reasons = next(m for m in chat.inbox(OFFICER_JJ) if "请选择否决原因" in m.text)
    age = next(d for row in reasons.inline for label, d in row if label == "年龄不符")
    await chat.ch.press_callback(OFFICER_JJ, reasons, age)  # another reason from the list above
    assert "可补充说明" in chat.last(OFFICER_JJ).text
    msgs = await chat.send(OFFICER_JJ, "家属说老人左脸有痣，这位没有")
    assert "已否决" in texts(msgs)
    async with ctx.sm() as s:
        assert [c.status for c in await s.scalars(select(PersonCase))] == ["open", "open"]
        cand = await s.scalar(select(MatchCandidate))
        assert cand.status == "rejected" and cand.reason == "age" and "左脸有痣" in cand.note
        notes = [e.note for e in await s.scalars(select(CaseEvent).order_by(CaseEvent.id))]
        audit = await s.scalar(select(AuditLog).where(AuditLog.action == "missing.match_rejected"))
    assert any("rejected (age" in (n or "") for n in notes)  # in both timelines
    assert audit.detail["reason"] == "age" and "左脸有痣" in audit.note  # and in the audit log
    assert not any("找到" in x.text for x in chat.inbox(CITIZEN)[-1:])
    # pressing again is refused politely
    from handlers.missing import ReviewCb

    review = next(x for x in chat.inbox(OFFICER_JJ) if "待审核" in x.text)
    assert review.inline == []  # the decided review lost its buttons
    async with ctx.sm() as s:
        cid = (await s.scalar(select(MatchCandidate))).id
    await chat.ch.press_callback(OFFICER_JJ, review, ReviewCb(action="confirm", id=cid).pack())
    assert "处理过" in [m for m in chat.ch.out[OFFICER_JJ] if m.toast][-1].text


async def test_different_person_is_not_a_candidate(chat, ctx, faces):
    await chat.as_role(OFFICER_JJ, "officer", "椒江区")
    await report_missing(chat, CITIZEN)
    reply = texts(await register_found(chat, OFFICER_JJ, pic="identities/biden/1.jpg"))
    assert "目前没有相符的走失报告" in reply and "0 个" not in reply
    async with ctx.sm() as s:
        assert await s.scalar(select(func.count(MatchCandidate.id))) == 0


async def test_citizen_withdraws_and_face_data_is_deleted(chat, ctx, faces):
    await report_missing(chat, CITIZEN)
    msgs = await chat.send(CITIZEN, "/missing_delete")
    assert "XR-JJ" in texts(msgs)
    await chat.press(CITIZEN, "撤销")
    msgs = await chat.press(CITIZEN, "确定撤销")
    assert "人脸数据已删除" in texts(msgs)
    async with ctx.sm() as s:
        c = await s.scalar(select(PersonCase))
    assert c.status == "closed" and c.face_state == "deleted"
    assert c.face_key not in faces.gallery("missing")


async def test_face_service_unavailable_still_saves(chat, ctx):
    ctx.faces = None
    done = texts(await report_missing(chat, CITIZEN))
    assert "XR-JJ" in done and "暂时不可用" in done
    async with ctx.sm() as s:
        c = await s.scalar(select(PersonCase))
        assert c.face_state == "pending" and len(c.photo_ids) == 1
        assert await s.scalar(select(func.count(StoredFile.id))) == 1


async def test_pending_case_is_matched_when_faces_are_back(chat, ctx, faces):
    ctx.faces = None
    assert "暂时不可用" in texts(await report_missing(chat, CITIZEN))
    ctx.faces = faces
    await chat.as_role(OFFICER_JJ, "officer", "椒江区")
    assert "目前没有相符" in texts(await register_found(chat, OFFICER_JJ))

    async def reviewed():
        return any("待审核" in x.text for x in chat.inbox(OFFICER_JJ))

    await run_due_jobs(ctx, DAYTIME + timedelta(minutes=11), until=reviewed)
    assert await reviewed()
    async with ctx.sm() as s:
        m = await s.scalar(select(PersonCase).where(PersonCase.kind == "missing"))
        assert m.face_state == "enrolled"
        assert (await s.scalar(select(MatchCandidate))).missing_id == m.id
    assert not any("待审核" in x.text or x.photo for x in chat.inbox(CITIZEN))


async def test_names_given_in_the_chat_survive_a_restart(settings, face_engine):
    """Demo names reached families as 经办民警：用户1005 after a restart: the offline channel
    forgets its profiles and sends the placeholder, which must not replace the stored name."""
    from backend.context import start_context
    from backend.users.models import User
    from backend.web.chat_service import create_local_user
    from tests.conftest import ChatDriver

    ctx = await start_context(settings, models=False, workers=False, telegram=False)
    try:
        officer = await create_local_user(ctx, "张警官")
        family = await create_local_user(ctx, "王家属")
    finally:
        await ctx.stop()
    ctx = await start_context(settings, models=False, workers=False, telegram=False)  # a restart
    try:
        chat = ChatDriver(ctx)
        await chat.send(officer.telegram_id, "/start")
        await chat.send(family.telegram_id, "/start")
        async with ctx.sm() as s:
            names = {u.telegram_id: u.name for u in await s.scalars(select(User))}
        assert names[officer.telegram_id] == "张警官" and names[family.telegram_id] == "王家属"
    finally:
        await ctx.stop()


async def test_height_and_the_distance_between_the_places_reach_the_officers_review(chat, ctx, faces):
    """Place was never compared: the flags now carry the km between the two places of the
    jurisdiction tree and the height difference, and the review card's text explains them."""
    from backend.missing import service
    from backend.users.models import User

    far, near = 5201, 5202
    await chat.as_role(far, "officer", "天台县")
    await chat.as_role(near, "officer", "白云街道")
    await report_missing(chat, CITIZEN)  # 椒江区海门街道, 165 cm
    async with ctx.sm() as s:
        made = []
        for uid, pic, height in ((far, "obama/2.jpg", 182), (near, "obama/3.jpg", 168)):
            officer = await s.scalar(select(User).where(User.telegram_id == uid))
            out = await service.register_found(
                s, officer, faces=faces, store=ctx.files, jurisdiction=officer.jurisdiction,
                photos=[service.Photo(photo(f"identities/{pic}").read_bytes())], place=None, age=80, sex="M",
                height_cm=height)
            await service.queue_for_review(s, ctx.files, out.candidates)
            made += out.candidates
        flags = [{f["code"]: f for f in c.flags} for c in made]
        await s.commit()
    assert flags[0]["place_far"]["km"] > 50 and flags[0]["height_gap"]["diff"] == 17  # 椒江 ↔ 天台: ~65 km
    assert flags[1]["place_near"]["km"] < 10 and flags[1]["height_ok"]["diff"] == 3
    assert made[0].rank_score < made[0].score  # the height gap lowers the rank; distance alone does not
    with time_machine.travel(DAYTIME + timedelta(minutes=1), tick=True):
        await ctx.flush()
    card = next(m for m in chat.inbox(far) if "待审核" in m.text)
    assert "17 厘米" in card.text and f"{flags[0]['place_far']['km']} 公里" in card.text
