"""The board's figures against cases whose times and outcomes are known: median and p90 time to
acceptance and time in each state by township and by category, the rates by category, the
heat table, and the short cache (the page says when its figures were computed)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from backend.console import board
from backend.core.clock import now
from backend.core.db import session_scope
from backend.disputes import service as disputes
from backend.disputes.models import Dispute, DisputeEvent
from backend.users import service as users
from backend.users.models import Role
from tests.console.conftest import as_role

# (township, category, hours to acceptance, hours from acceptance to outcome or None, success, rating)
CASES = [
    ("白云街道", "neighbor", 1, 24, True, "satisfied"),
    ("白云街道", "neighbor", 2, 48, True, "unsatisfied"),
    ("白云街道", "neighbor", 10, 72, False, None),
    ("海门街道", "labor", 4, None, None, None),
    ("海门街道", "labor", 6, None, None, None),
]


async def _known_cases(site) -> dict:
    """The cases of CASES, filed, accepted and decided through the service, then their timeline
    moved to known times (reported ten days ago)."""
    t0 = now() - timedelta(days=10)
    async with session_scope(site.ctx.sm) as s:
        citizen, _ = await users.get_or_create_user(s, 990301, name="赵先生")
        mediator, _ = await users.get_or_create_user(s, 990302, name="区调解员")
        await users.set_role(s, mediator, Role.mediator, await users.find_jurisdiction(s, "椒江区"), actor="test")
        ids = []
        for i, (town, cat, accept_h, decide_h, success, rating) in enumerate(CASES):
            d = await disputes.create_case(s, citizen=citizen, category=cat, description=f"测试案件第{i + 1}件，双方争执不下",
                                           place=await users.find_jurisdiction(s, town), phone="13912345678")
            await disputes.accept(s, d, mediator)
            if decide_h is not None:
                await disputes.record_outcome(s, d, mediator, success, agreement="和解" if success else None,
                                              referral=None if success else "litigation")
            events = list(await s.scalars(select(DisputeEvent).where(DisputeEvent.dispute_id == d.id)
                                          .order_by(DisputeEvent.id)))
            times = [t0, t0 + timedelta(hours=accept_h)]
            if decide_h is not None:
                times.append(times[1] + timedelta(hours=decide_h))
            assert len(events) == len(times)
            for ev, at in zip(events, times):
                ev.at = at
            d.created_at, d.accepted_at = t0, times[1]
            d.rating, d.escalated_county, d.overdue = rating, 0, int(i == 0)
            ids.append(d.id)
    return {"ids": ids}


async def _county(site):
    async with site.ctx.sm() as s:
        return await users.find_jurisdiction(s, "椒江区")


async def test_the_board_computes_times_rates_and_heat_by_township_and_by_category(site):
    await _known_cases(site)
    j = await _county(site)
    async with site.ctx.sm() as s:
        b = await board.board(s, j)
    times = b["times"]
    assert times["all"] == {"n": 5, "median": 4.0, "p90": 8.4}  # [1, 2, 4, 6, 10]
    town = {r["name"]: r for r in times["by_township"]}
    assert (town["白云街道"]["n"], town["白云街道"]["median"], town["白云街道"]["p90"]) == (3, 2.0, 8.4)
    assert (town["海门街道"]["n"], town["海门街道"]["median"], town["海门街道"]["p90"]) == (2, 5.0, 5.8)
    cat = {r["key"]: r for r in times["by_category"]}
    assert (cat["neighbor"]["median"], cat["neighbor"]["p90"]) == (2.0, 8.4)
    assert (cat["labor"]["median"], cat["labor"]["p90"]) == (5.0, 5.8)

    states = b["states"]
    assert states["statuses"] == ["new", "accepted"]  # the labor cases are still accepted: not counted
    overall = {r["status"]: r for r in states["all"]}
    assert (overall["new"]["n"], overall["new"]["median"]) == (5, 4.0)
    assert (overall["accepted"]["n"], overall["accepted"]["median"], overall["accepted"]["p90"]) == (3, 48.0, 67.2)
    by_cat = {r["key"]: dict(zip(states["statuses"], r["cells"])) for r in states["by_category"]}
    assert by_cat["labor"]["new"] == {"n": 2, "median": 5.0, "p90": 5.8}
    assert by_cat["labor"]["accepted"]["n"] == 0
    assert by_cat["neighbor"]["accepted"] == {"n": 3, "median": 48.0, "p90": 67.2}
    by_town = {r["name"]: dict(zip(states["statuses"], r["cells"])) for r in states["by_township"]}
    assert by_town["白云街道"]["new"] == {"n": 3, "median": 2.0, "p90": 8.4}

    rates = {r["code"]: r for r in b["by_category"]}
    assert rates["neighbor"]["total"] == 3 and rates["neighbor"]["local_rate"] == round(2 / 3, 4)
    assert rates["neighbor"]["satisfaction"] == 0.5 and rates["neighbor"]["overdue"] == 1
    assert rates["neighbor"]["overdue_rate"] == round(1 / 3, 4)
    assert rates["labor"]["total"] == 2 and rates["labor"]["local_rate"] is None and rates["labor"]["overdue"] == 0

    heat = b["heat"]
    codes = [c["code"] for c in heat["categories"]]
    cells = {r["name"]: dict(zip(codes, (c["n"] for c in r["cells"]))) for r in heat["rows"]}
    assert cells["白云街道"]["neighbor"] == 3 and cells["白云街道"]["labor"] == 0
    assert cells["海门街道"]["labor"] == 2 and cells["海门街道"]["neighbor"] == 0


async def test_a_township_board_covers_only_that_townships_cases(site):
    await _known_cases(site)
    async with site.ctx.sm() as s:
        town = await users.find_jurisdiction(s, "海门街道")
        b = await board.board(s, town)
    assert b["times"]["all"]["n"] == 2 and [r["code"] for r in b["by_category"]] == ["labor"]


async def test_the_board_is_computed_again_only_after_its_cache_time(site):
    made = await _known_cases(site)
    j = await _county(site)
    cache = board.BoardCache()
    async with site.ctx.sm() as s:
        first = await board.board(s, j, cache=cache, ttl=60)
        await s.execute(update(Dispute).where(Dispute.id == made["ids"][3]).values(category="neighbor"))
        await s.commit()
        again = await board.board(s, j, cache=cache, ttl=60)
        fresh = await board.board(s, j, cache=cache, ttl=0)
    assert again is first and again["heat"] == first["heat"]
    assert {r["code"]: r["total"] for r in fresh["by_category"]} == {"neighbor": 4, "labor": 1}


async def test_the_board_page_shows_rates_by_category_times_by_township_and_when_it_was_computed(site):
    await _known_cases(site)
    b = await as_role(site, Role.official)
    html = (await b.get("/console/board")).text
    assert "数据更新于 " in html
    rates = html[html.index("考评指标（按类别）"):]
    assert '<tr data-category="neighbor"><td><a href="/console/cases?tab=all&category=neighbor">' in rates
    assert "66.7%" in rates[:rates.index("</table>")]
    states = html[html.index('class="states-by_category"'):]
    assert "48.0 / 67.2 <small>(3)</small>" in states[:states.index("</table>")]
