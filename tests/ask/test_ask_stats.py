"""Statistics for every slice through /ask — missing-person reports, supervision items and
disputes — with the criteria shown, counted only inside the asker's jurisdiction, and a place
outside it said as such (never a silent 0)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backend.core.clock import now
from backend.core.db import session_scope
from backend.users import service as users


@pytest.fixture
def settings(db_settings):
    """The application on SQLite, then on PostgreSQL: the counts are SQL on both."""
    return db_settings


async def _reports(ctx, specs):
    """Missing-person reports: (place, status, days ago)."""
    from backend.missing.models import PersonCase

    async with session_scope(ctx.sm) as s:
        reporter, _ = await users.get_or_create_user(s, 3300, name="家属", channel="local")
        for i, (place, status, ago) in enumerate(specs):
            j = await users.find_jurisdiction(s, place)
            s.add(PersonCase(kind="missing", status=status, face_key=f"st{i}", reporter_id=reporter.id,
                             case_no=f"XR-ST-{i:04d}", jurisdiction_id=j.id, created_at=now() - timedelta(days=ago)))
        # a found-person registration is not a missing-person report
        j = await users.find_jurisdiction(s, "椒江区/海门街道")
        s.add(PersonCase(kind="found", status="open", face_key="st-found", reporter_id=reporter.id,
                         case_no="XR-ST-FOUND", jurisdiction_id=j.id))


async def _items(ctx, specs):
    """Supervision items: (place, status, proposer telegram id)."""
    from backend.supervision.models import SupervisionItem

    async with session_scope(ctx.sm) as s:
        for i, (place, status, tg) in enumerate(specs):
            deputy, _ = await users.get_or_create_user(s, tg, name=f"代表{tg}", channel="local")
            j = await users.find_jurisdiction(s, place)
            county = await users.find_jurisdiction(s, place.split("/")[0])
            s.add(SupervisionItem(number=f"DB-ST-{i:04d}", title="统计测试事项", description="用于统计测试的督办事项",
                                  area="生态环境", jurisdiction_id=j.id, county_id=county.id,
                                  procuratorate_id=county.id, proposer_id=deputy.id, status=status))


async def test_missing_person_reports_are_counted_this_year_with_the_criteria(chat, kb_ctx):
    await _reports(kb_ctx, [("椒江区/海门街道", "open", 1), ("椒江区/白云街道", "found", 2),
                            ("椒江区/白云街道", "open", 3), ("黄岩区/东城街道", "open", 1)])
    await chat.as_role(3301, "official", "椒江区")
    text = (await chat.send(3301, "/ask 今年走失人员报告有多少件"))[-1].text
    assert "共有 3 件" in text, text  # the 黄岩区 report and the found-person registration are not counted
    assert "统计口径" in text and "走失" in text and "今年" in text
    text = (await chat.send(3301, "/ask 今年还没找到的走失人员有多少"))[-1].text
    assert "共有 2 件" in text and "未办结" in text, text
    text = (await chat.send(3301, "/ask 哪个街道走失报告最多？"))[-1].text
    assert "1. 白云街道：2 件" in text, text


async def test_supervision_items_are_counted_for_staff_and_for_their_own_deputies(chat, kb_ctx):
    await _items(kb_ctx, [("椒江区/海门街道", "submitted", 3401), ("椒江区/白云街道", "closed", 3401),
                          ("椒江区/白云街道", "accepted", 3402), ("温岭市/泽国镇", "submitted", 3403)])
    await chat.as_role(3410, "official", "椒江区")
    text = (await chat.send(3410, "/ask 今年代表督办事项有多少件？"))[-1].text
    assert "共有 3 件" in text and "督办" in text, text
    text = (await chat.send(3410, "/ask 未办结的督办事项有多少件？"))[-1].text
    assert "共有 2 件" in text, text
    await chat.as_role(3401, "deputy", "椒江区")
    text = (await chat.send(3401, "/ask 我提的督办事项一共有多少件？"))[-1].text
    assert "共有 2 件" in text, text  # a deputy counts the items they proposed


async def test_a_place_outside_the_askers_jurisdiction_is_said_as_such(chat, kb_ctx):
    await _reports(kb_ctx, [("椒江区/海门街道", "open", 1)])
    await chat.as_role(3501, "official", "黄岩区")
    for q in ("/ask 椒江区今年走失人员报告有多少件", "/ask 椒江区有多少件欠薪纠纷？", "/ask 椒江区的督办事项有多少件"):
        text = (await chat.send(3501, q))[-1].text
        assert "超出您的管辖范围" in text and "统计口径" in text and "椒江区" in text, text
        assert "共有" not in text
    # …while a township official asking about their own county counts their own part
    await chat.as_role(3502, "official", "椒江区/海门街道")
    text = (await chat.send(3502, "/ask 椒江区今年走失人员报告有多少件"))[-1].text
    assert "共有 1 件" in text, text


async def test_wage_question_with_shilian_is_not_a_missing_person_count(chat, kb_ctx):
    await _reports(kb_ctx, [("椒江区/海门街道", "open", 1)])
    await chat.as_role(3601, "official", "椒江区")
    text = (await chat.send(3601, "/ask 老板失联了，欠薪的纠纷有多少件？"))[-1].text
    assert "走失" not in text and "纠纷" in text, text
