"""Places (issue 15, finding 6): a shared location resolves to the township (or asks among
the nearest ones), typed addresses prefer the longest exact township name, and a transfer to
a unit without a mediator is refused with the reason or routed with the sender told where."""
from __future__ import annotations

import csv
from pathlib import Path

from backend.disputes import routing
from backend.users import service as users
from tests.conftest import texts
from tests.disputes.conftest import case, report

SEED = Path(users.__file__).resolve().parent / "seed" / "taizhou.csv"


def test_every_seeded_township_has_a_centroid_inside_taizhou():
    rows = list(csv.DictReader(SEED.open(encoding="utf-8")))
    assert len(rows) >= 120
    for r in rows:
        assert users.in_taizhou(float(r["lat"]), float(r["lon"])), r


async def test_typed_address_prefers_the_longest_exact_township_name(ctx):
    async with ctx.sm() as s:
        assert (await routing.place_from_text(s, "路桥区路南街道银座街88号")).name == "路南街道"
        assert (await routing.place_from_text(s, "路桥区路桥街道石曲")).name == "路桥街道"
        assert (await routing.place_from_text(s, "椒江区海门街道东山路12号")).name == "海门街道"
        assert (await routing.place_from_text(s, "就在海门老街")).name == "海门街道"
        assert (await routing.place_from_text(s, "路桥区银座街")).name == "路桥区"


async def _start(chat, uid):
    await chat.send(uid, "/report")
    await chat.press(uid, "邻里纠纷")
    await chat.send(uid, "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息")


async def test_a_shared_location_at_a_township_resolves_to_it(chat, ctx):
    await _start(chat, 3601)
    out = texts(await chat.location(3601, 28.5601, 121.3879))  # 路南街道
    assert "路南街道" in out and "路桥区" in out


async def test_a_location_between_townships_offers_the_nearest_as_buttons(chat, ctx):
    await _start(chat, 3602)
    # halfway between 路桥街道 and 路南街道
    out = texts(await chat.location(3602, 28.5685, 121.3820))
    assert "请选择" in out
    labels = chat.buttons(3602)
    assert any("路南街道" in x for x in labels) and any("路桥街道" in x for x in labels)
    out = texts(await chat.press(3602, "路南街道"))
    assert "路南街道" in out
    await chat.press(3602, "跳过")
    await chat.press(3602, "完成")
    await chat.press(3602, "跳过")
    number = texts(await chat.press(3602, "确认提交")).split("案件编号：")[1].split()[0]
    d = await case(ctx, number)
    assert d.place.name == "路南街道" and d.lat == 28.5685


async def test_transfer_to_a_unit_without_mediators_goes_up_and_says_where(chat, ctx, staff):
    number = await report(chat, 3603)
    await chat.press(staff["med"], "受理")
    await chat.press(staff["med"], "转派")
    out = texts(await chat.send(staff["med"], "葭沚街道 当事人住在葭沚"))
    assert "葭沚街道暂无调解员" in out and "椒江区" in out
    d = await case(ctx, number)
    assert d.unit.name == "椒江区" and "葭沚街道" in chat.last(staff["sup"]).text


async def test_transfer_with_nobody_registered_up_the_chain_is_refused_with_the_reason(chat, ctx):
    await chat.as_role(5701, "mediator", "黄岩区/东城街道")
    number = await report(chat, 3604, county="黄岩区", township="东城街道", other=None)
    await chat.press(5701, "受理")
    await chat.press(5701, "转派")
    out = texts(await chat.send(5701, "西城街道 当事人住在西城"))
    assert "还没有登记调解员" in out and "西城街道" in out
    d = await case(ctx, number)
    assert d.unit.name == "东城街道" and d.status == "accepted"
