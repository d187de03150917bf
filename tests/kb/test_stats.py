from datetime import date

import time_machine

from knowledge_base.places import Gazetteer
from knowledge_base.records import Scope
from knowledge_base.stats import (StatsAnswer, StatsQuery, format_stats, parse_stats, register_stats_provider,
                                  unregister_stats_provider)

G = Gazetteer.default()
TODAY = date(2026, 11, 28)


def test_parser():
    q = parse_stats("本月椒江区有多少件未办结的纠纷？", G, TODAY)
    assert (q.measure, q.kind, q.place, q.place_id, q.status) == ("count", "dispute", "椒江区", 2, "open")
    assert q.period.range == (20261101, 20261130)
    q = parse_stats("哪个乡镇欠薪纠纷最多？", G, TODAY)
    assert (q.measure, q.category, q.group_by, q.n) == ("top_n", "劳动争议", "township", 1)
    q = parse_stats("今年温岭市纠纷数量的变化趋势", G, TODAY)
    assert (q.measure, q.group_by, q.place) == ("trend", "month", "温岭市")
    q = parse_stats("去年走失老人有多少找回了", G, TODAY)
    assert q.kind == "missing" and q.period.range == (20250101, 20251231)
    q = parse_stats("排名前三的区县", G, TODAY)
    assert (q.group_by, q.n) == ("county", 3)
    assert parse_stats("椒江区最近的欠薪纠纷怎么处理的？", G, TODAY) is None
    assert parse_stats("楼上漏水怎么办", G, TODAY) is None


def test_format_shows_the_filter():
    q = parse_stats("本月椒江区有多少件未办结的纠纷？", G, TODAY)
    text = format_stats(q, StatsAnswer(value=12))
    assert "类型：纠纷" in text and "地区：椒江区" in text and "状态：未办结" in text and "2026-11-01" in text
    assert "共有 12 件" in text
    q = parse_stats("哪些乡镇欠薪纠纷最多，前三名", G, TODAY)
    text = format_stats(q, StatsAnswer(rows=[("泽国镇", 9), ("白云街道", 7), ("新前街道", 4), ("x", 1)]))
    assert "1. 泽国镇：9 件" in text and "3. 新前街道：4 件" in text and "x" not in text
    en = format_stats(q, StatsAnswer(rows=[]), lang="en")
    assert "No records match" in en


async def test_provider_registry_and_routing(kb):
    seen: list[tuple[StatsQuery, Scope]] = []

    async def provider(session, q, scope):
        seen.append((q, scope))
        return StatsAnswer(value=3 if scope.jurisdiction_id == 2 else 0)

    from knowledge_base import stats as stats_mod

    real = stats_mod._PROVIDERS.get("dispute")  # the disputes slice's, if another test loaded it
    register_stats_provider("dispute", provider)
    try:
        with time_machine.travel("2026-11-28 10:00 +0800", tick=False):
            ans = await kb.aanswer("本月椒江区有多少件未办结的纠纷？", Scope("official", 7, 2), session=object())
        assert ans.mode == "stats" and "共有 3 件" in ans.answer and ans.citations == []
        assert seen[0][0].status == "open" and seen[0][1].jurisdiction_id == 2
        ans = await kb.aanswer("本月有多少纠纷", Scope("citizen", 8), session=object())
        assert ans.mode == "refused"
        # non-stats questions still go to retrieval
        ans = await kb.aanswer("楼上漏水怎么办", Scope.admin(), session=object())
        assert ans.mode in ("none", "extractive")
    finally:
        unregister_stats_provider("dispute")
        if real is not None:
            register_stats_provider("dispute", real)
    ans = await kb.aanswer("哪个乡镇欠薪纠纷最多？", Scope.admin())
    assert ans.mode != "stats"  # no provider and no session: plain retrieval
