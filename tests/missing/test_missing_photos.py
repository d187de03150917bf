"""Photos in the chat flows: several faces → numbered boxes and buttons 1…n; every bad file →
a polite refusal and nothing written (no case, no stored file, no face vector)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.core.files import StoredFile
from backend.missing.models import PersonCase
from tests.conftest import FACES_DATA, texts
from tests.missing.conftest import photo

CITIZEN, OFFICER = 5201, 5301


async def to_photo_step(chat, uid: int) -> None:
    await chat.send(uid, "/missing")
    for answer in ("李阿婆", "女", "81"):
        await chat.send(uid, answer)
    await chat.press(uid, "跳过")  # height
    await chat.press(uid, "临海市")
    await chat.send(uid, "古城街道紫阳街")
    await chat.press(uid, "不清楚")  # time
    await chat.press(uid, "跳过")  # clothing
    await chat.press(uid, "无")  # health
    msgs = await chat.send(uid, "+86 139-0000-1111")
    assert "照片" in texts(msgs)


async def test_group_photo_choose_a_face(chat, ctx, faces):
    await to_photo_step(chat, CITIZEN)
    msgs = await chat.photo(CITIZEN, photo("groups/two_people.jpg"))
    assert len(msgs) == 1 and msgs[0].photo is not None
    assert "2 张人脸" in msgs[0].text
    assert chat.buttons(CITIZEN) == ["1", "2"]
    # the preview is a real JPEG with the boxes drawn on it
    assert ctx.channel.get_file(msgs[0].photo).data[:2] == b"\xff\xd8"
    # typing instead of choosing gets a hint
    assert "编号" in texts(await chat.send(CITIZEN, "第一个"))
    msgs = await chat.press(CITIZEN, "2")
    assert "第 1 张" in texts(msgs)
    await chat.press(CITIZEN, "下一步")
    done = texts(await chat.press(CITIZEN, "确认提交"))
    assert "XR-LH-20261128-0001" in done
    async with ctx.sm() as s:
        case = await s.scalar(select(PersonCase))
    assert case.sex == "F" and case.age == 81 and case.seen_at is None and case.health is None
    assert case.phone == "13900001111" and case.jurisdiction.name == "古城街道"
    assert len(faces.gallery("missing").vector_ids(case.face_key)) == 1


# (listed at collection: a missing data folder must fail the fixtures, not the whole collection)
BAD = sorted(p.name for p in (FACES_DATA / "bad").glob("*") if p.name != "exif_orient8.jpg")


@pytest.mark.parametrize("name", BAD)
async def test_bad_files_are_refused_politely(chat, ctx, faces, name):
    await to_photo_step(chat, CITIZEN)
    msgs = await chat.photo(CITIZEN, FACES_DATA / "bad" / name)
    text = texts(msgs)
    assert msgs and ("抱歉" in text or "请" in text)
    assert "出了点问题" not in text  # not the generic crash message
    assert "照片" in text
    # still at the photo step, nothing written
    assert "请至少发送" not in text
    async with ctx.sm() as s:
        assert await s.scalar(select(func.count(PersonCase.id))) == 0
        assert await s.scalar(select(func.count(StoredFile.id))) == 0
    assert len(faces.gallery("missing")) == 0
    # the person can go on with a good photo
    assert "第 1 张" in texts(await chat.photo(CITIZEN, photo("identities/biden/1.jpg")))


async def test_exif_rotated_photo_is_accepted(chat, ctx, faces):
    await to_photo_step(chat, CITIZEN)
    assert "第 1 张" in texts(await chat.photo(CITIZEN, FACES_DATA / "bad" / "exif_orient8.jpg"))


async def test_document_upload_and_size_limit(chat, ctx, faces):
    await to_photo_step(chat, CITIZEN)
    msgs = await chat.document(CITIZEN, photo("identities/alex_lacamoire/2.png").read_bytes(), "alex.png")
    assert "第 1 张" in texts(msgs)
    msgs = await chat.document(CITIZEN, b"x" * (10 * 1024 * 1024 + 1), "huge.jpg")
    assert "太大" in texts(msgs)


async def test_officer_flows_refused_for_citizens(chat, ctx, faces):
    assert "仅限民警" in texts(await chat.send(CITIZEN, "/missing_found"))
    assert "仅限民警" in texts(await chat.send(CITIZEN, "/missing_assist"))
    assert "仅限民警" in texts(await chat.send(CITIZEN, "/missing_review"))
    # a forged review button is refused too
    from handlers.missing import ReviewCb

    await chat.send(CITIZEN, "/start")
    m = chat.ch.out[CITIZEN][-1]
    await chat.ch.press_callback(CITIZEN, m, ReviewCb(action="confirm", id=1).pack())
    assert "仅限民警" in [x for x in chat.ch.out[CITIZEN] if x.toast][-1].text


async def test_menu_entries_by_role(chat):
    await chat.send(CITIZEN, "/start")
    assert "🔎 报告走失人员" in chat.buttons(CITIZEN)
    assert "🧾 登记滞留人员" not in chat.buttons(CITIZEN)
    await chat.as_role(OFFICER, "officer", "椒江区")
    await chat.send(OFFICER, "/start")
    assert {"🧾 登记滞留人员", "🗂 人像比对审核", "🤝 人像协作"} <= set(chat.buttons(OFFICER))


async def test_someone_is_lost_hint(chat):
    msgs = await chat.send(CITIZEN, "我爸爸早上出门后走丢了，有老年痴呆")
    assert "110" in texts(msgs) and "🔎 报告走失人员" in chat.buttons(CITIZEN)
    assert "姓名" in texts(await chat.press(CITIZEN, "报告走失人员"))


async def test_commands_pass_through_conversation_steps(chat):
    await chat.send(CITIZEN, "/missing")
    assert "没有这个命令" in texts(await chat.send(CITIZEN, "/no_such_command"))
    assert "已取消" in texts(await chat.send(CITIZEN, "/cancel"))
