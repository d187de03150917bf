"""人像协作: an officer asks officers of OTHER counties about a photo; they answer with a
candidate case number or 未发现; the requester sees every answer."""
from __future__ import annotations

from sqlalchemy import select

from backend.missing.models import AssistAnswer
from tests.conftest import texts
from tests.missing.conftest import photo
from tests.missing.test_missing_journey import register_found

JJ, JJ2, WL, HY = 5401, 5402, 5403, 5404


async def test_cross_region_request_and_answers(chat, ctx, faces):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(JJ2, "officer", "椒江区/海门街道")
    await chat.as_role(WL, "officer", "温岭市")
    await chat.as_role(HY, "officer", "黄岩区")
    # WL has registered a found person of its own
    assert "ZL-WL-20261128-0001" in texts(await register_found(chat, WL, pic="identities/kit_harington/1.jpg",
                                                               county="温岭市"))

    await chat.send(JJ, "/missing_assist")
    msgs = await chat.photo(JJ, photo("identities/kit_harington/2.jpg"))
    assert "哪个区县" in texts(msgs) and "椒江区" not in chat.buttons(JJ)  # not the own county
    assert "补充说明" in texts(await chat.press(JJ, "全部其他区县"))
    sent = texts(await chat.send(JJ, "椒江火车站发现一名男子，自称记不清家在哪里"))
    assert "2 位民警" in sent

    got = next(m for m in chat.inbox(WL) if "协作请求" in m.text)
    assert got.photo is not None and "椒江区" in got.text and "火车站" in got.text
    assert any("协作请求" in m.text for m in chat.inbox(HY))
    assert not any("协作请求" in m.text for m in chat.inbox(JJ2))  # same county: not asked

    # WL answers with its case (a wrong number first)
    assert "案件号" in texts(await chat.press(WL, "提供候选案件"))
    assert "没有找到您辖区内的案件" in texts(await chat.send(WL, "XR-HY-20990101-0001"))
    assert "已回复" in texts(await chat.send(WL, "zl-wl-20261128-0001"))
    # HY has nobody
    assert "未发现" in texts(await chat.press(HY, "未发现"))

    box = texts(chat.inbox(JJ))
    assert "提供候选案件 ZL-WL-20261128-0001" in box
    assert "未发现相符人员" in box
    async with ctx.sm() as s:
        answers = list(await s.scalars(select(AssistAnswer).order_by(AssistAnswer.id)))
    assert len(answers) == 2 and answers[0].case_id is not None and answers[1].case_id is None

    # answering twice is refused politely
    m = next(m for m in chat.inbox(HY) if "协作请求" in m.text)
    from handlers.missing import AssistCb

    assert m.inline == []
    await chat.ch.press_callback(HY, m, AssistCb(action="none", id=answers[0].request_id).pack())
    assert "已经回复过" in [x for x in chat.ch.out[HY] if x.toast][-1].text


async def test_help_request_targets_one_county_marks_the_face_and_is_listed(chat, ctx, faces):
    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(WL, "officer", "温岭市")
    await chat.as_role(HY, "officer", "黄岩区")
    await chat.send(JJ, "/missing_assist")
    await chat.photo(JJ, photo("groups/kit_with_rose.jpg"))
    assert chat.buttons(JJ) == ["1", "2"]
    await chat.press(JJ, "1")
    await chat.press(JJ, "黄岩区")
    assert "1 位民警" in texts(await chat.press(JJ, "跳过"))
    assert not any("协作请求" in m.text for m in chat.inbox(WL))  # another county: not asked
    got = next(m for m in chat.inbox(HY) if "协作请求" in m.text)
    assert "红框" in got.text
    # the helper receives the chosen face large, beside the photo with that face boxed in red
    # (recomputed from the photo and the box the model chose), not the other person
    import io

    from PIL import Image

    from backend.missing.models import AssistRequest
    from tests.missing.cards import check_face_card

    async with ctx.sm() as s:
        req = await s.scalar(select(AssistRequest))
    group = photo("groups/kit_with_rose.jpg").read_bytes()
    card = Image.open(io.BytesIO(ctx.channel.get_file(got.photo).data)).convert("RGB")
    crop = check_face_card(card, group, {"box": req.face_box})
    buf = io.BytesIO()
    crop.save(buf, "JPEG")
    chosen, other = (faces.examine(group, i).embedding for i in (0, 1))
    shown = faces.usable_faces(buf.getvalue())
    assert len(shown) == 1 and shown[0].size >= 120  # the chosen face, large, and not the other person
    assert float(shown[0].embedding @ chosen) >= 0.5 > float(shown[0].embedding @ other)

    await chat.press(HY, "未发现")
    listing = texts(await chat.send(JJ, "/missing_requests"))
    assert f"#{req.id}" in listing and "已有回复" in listing and "黄岩区" in listing and "未发现" in listing


async def test_help_request_photos_are_deleted_after_their_retention(chat, ctx, faces):
    from datetime import timedelta

    from backend.core.files import StoredFile, blob_key
    from backend.missing.models import AssistRequest
    from tests.conftest import Clock
    from tests.missing.conftest import DAYTIME, run_due_jobs

    await chat.as_role(JJ, "officer", "椒江区")
    await chat.as_role(HY, "officer", "黄岩区")
    await chat.send(JJ, "/missing_assist")
    await chat.photo(JJ, photo("identities/biden/1.jpg"))
    await chat.press(JJ, "全部其他区县")
    await chat.press(JJ, "跳过")
    await chat.press(HY, "未发现")
    async with ctx.sm() as s:
        files = list(await s.scalars(select(StoredFile).where(StoredFile.owner_kind == "missing_assist")))
    assert len(files) == 2 and all([await ctx.files.exists(blob_key(f.sha256)) for f in files])

    async def expired():
        async with ctx.sm() as s:
            return (await s.scalar(select(AssistRequest))).status == "expired"

    await Clock(ctx).run_due(DAYTIME + timedelta(days=29))  # every job due then has run (no 1 s limit on a loaded machine)
    assert not await expired()  # kept during the retention period
    await run_due_jobs(ctx, DAYTIME + timedelta(days=31), until=expired)
    assert await expired()
    async with ctx.sm() as s:
        assert not list(await s.scalars(select(StoredFile).where(StoredFile.owner_kind == "missing_assist")))
        assert len(list(await s.scalars(select(AssistAnswer)))) == 1  # the answers stay
    assert not any([await ctx.files.exists(blob_key(f.sha256)) for f in files])
    assert "已过保存期" in texts(await chat.send(JJ, "/missing_requests"))
