"""Generated consistency check of the one access policy: for every role, every kind of record
and every position (same place, the county above, another county, no jurisdiction, owner),
"may open it in the API" equals "may get it through a citation card, an export, a file", and
/ask never cites what the API refuses (it cites it whenever the API allows, for the roles that
may query cases; citizens query public documents only, see docs/access-policy.md)."""
from __future__ import annotations

import httpx
import pytest

from backend.app import create_app
from backend.core.db import session_scope
from backend.core.policy import ROLES
from backend.users import service as users
from backend.users.models import Role
from tests.ask.conftest import kb_ctx, usem3  # noqa: F401  (fixtures: the real KB)
from tests.conftest import bearer
from tests.supervision.helpers import propose

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 8
POSITIONS = {"here": "椒江区/海门街道", "county": "椒江区", "elsewhere": "温岭市", "none": None}
DISPUTE_TEXT = "蓝莓园承包合同到期后对方拒不腾退果园，联系电话13700001111"
ASK_DISPUTE = "/ask 蓝莓园承包合同到期拒不腾退果园的纠纷"
ASK_ITEM = "/ask 附近居民反映多年鱼类大量死亡的督办事项"
ASK_MISSING = "/ask 海门街道走失的老人穿紫色棉袄"


def _uid(role: str, pos: str) -> int:
    return 7000 + ROLES.index(role) * 10 + list(POSITIONS).index(pos)


async def _world(chat, ctx):
    """One record of each kind in 椒江区/海门街道, people of every role at every position."""
    from backend.core.files import store_file
    from backend.disputes import service as disputes
    from backend.core.events import RecordChanged, publish
    from backend.missing.models import PersonCase
    from knowledge_base.models import drain

    for role in ROLES:
        for pos, place in POSITIONS.items():
            if role in ("citizen", "admin") and pos != "none":
                continue
            await chat.as_role(_uid(role, pos), role, place)
    await chat.as_role(6900, "deputy", "椒江区")  # the proposer
    number = await propose(chat, 6900)
    async with session_scope(ctx.sm) as s:
        owner, _ = await users.get_or_create_user(s, 6901, name="果农", channel="local")
        place = await users.find_jurisdiction(s, "椒江区/海门街道")
        d = await disputes.create_case(s, citizen=owner, category="land_contract", description=DISPUTE_TEXT,
                                       place=place, other_party="陈大富 13700001111")
        reporter, _ = await users.get_or_create_user(s, 6902, name="家属", channel="local")
        photo = await store_file(s, ctx.files, JPEG, mime="image/jpeg")
        c = PersonCase(kind="missing", status="open", face_key="k6902", reporter_id=reporter.id,
                       case_no="XR-JJ-20261201-0077", jurisdiction_id=place.id, name="李秀兰", sex="F", age=81,
                       clothing="紫色棉袄，黑色裤子", health="记忆力差", phone="13812345678", photo_ids=[photo.id])
        s.add(c)
        await s.flush()
        await publish(s, RecordChanged("missing", c.id))  # what the service does on a new case
        refs = {"dispute": (d.number, d.id), "supervision": (number, number), "missing": (c.case_no, c.id)}
    await drain(ctx.sm, ctx.kb)
    return refs


async def _api_ok(client, ctx, tg: int, kind: str, key) -> dict[str, bool]:
    async with ctx.sm() as s:
        u = await users.find_user(s, tg)
    h = await bearer(ctx, u.id)
    if kind == "dispute":
        return {"api": (await client.get(f"/api/disputes/{key}", headers=h)).status_code == 200}
    if kind == "supervision":
        return {"api": (await client.get(f"/api/supervision/items/{key}", headers=h)).status_code == 200,
                "export": (await client.get(f"/api/supervision/items/{key}/export", headers=h)).status_code == 200}
    return {"api": (await client.get(f"/api/missing/cases/{key}", headers=h)).status_code == 200,
            "file": (await client.get(f"/api/missing/cases/{key}/photos/0", headers=h)).status_code == 200}


async def _card_ok(chat, tg: int, ref: str) -> bool:
    from handlers.ask import CiteCb

    await chat.send(tg, "/me")
    before = len(chat.ch.out.get(tg, []))
    await chat.ch.press_callback(tg, chat.inbox(tg)[-1], CiteCb(ref=ref).pack())
    await chat.ctx.flush()
    new = chat.ch.out[tg][before:]
    return any(ref in m.text and not m.toast for m in new)


async def _ask_cites(chat, tg: int, question: str, ref: str) -> bool:
    await chat.send(tg, question)
    return ref in " ".join(chat.buttons(tg))


QUESTIONS = {"dispute": ASK_DISPUTE, "supervision": ASK_ITEM, "missing": ASK_MISSING}


@pytest.mark.parametrize("kind", ["dispute", "supervision", "missing"])
async def test_every_role_gets_a_record_through_every_door_exactly_when_the_api_lets_them(chat, kb_ctx, kind):
    refs = await _world(chat, kb_ctx)
    ref, key = refs[kind]
    owners = {"dispute": 6901, "supervision": 6900, "missing": 6902}
    people = [(r, p) for r in ROLES for p in POSITIONS if not (r in ("citizen", "admin") and p != "none")]
    app = create_app(kb_ctx.settings)
    app.state.ctx = kb_ctx
    rows, allowed = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for role, pos in [*people, ("owner", "owner")]:
            tg = owners[kind] if role == "owner" else _uid(role, pos)
            doors = await _api_ok(client, kb_ctx, tg, kind, key)
            api = doors.pop("api")
            allowed += api
            doors["card"] = await _card_ok(chat, tg, ref)
            async with kb_ctx.sm() as s:
                asker_role = (await users.find_user(s, tg)).role
            cited = await _ask_cites(chat, tg, QUESTIONS[kind], ref)
            if asker_role != Role.citizen.value:
                doors["ask"] = cited
            else:
                assert not cited or api, (role, pos)  # never more than the API
                if not api:
                    doors["card"] = doors["card"]
                else:
                    doors.pop("card")  # citizens query public documents only (their own cases: /mycases)
            for door, ok in doors.items():
                rows.append((role, pos, door, api, ok))
    wrong = [r for r in rows if r[3] != r[4]]
    assert wrong == [], "door differs from the API: " + "; ".join(f"{r[0]}@{r[1]} {r[2]} api={r[3]}" for r in wrong)
    assert 3 <= allowed < len(people)  # the check is not vacuous: some may, some may not
