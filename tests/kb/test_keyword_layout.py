"""Replicas keep their keyword index in step from one store, but each splits it between the main
segment and the delta in its own way (it compacts at its own moments; a restarted one rebuilds).
The same question must rank the same chunks with the same scores whatever the split."""
from knowledge_base.records import Scope
from tests.kb.test_ingest import _rec

ADMIN = Scope.admin()
NOISE = ["隔壁装修天天吵到半夜，沟通多次无果，影响老人休息", "楼上装修噪音吵到半夜，孩子没法写作业，协商后限定施工时间",
         "邻居家狗叫到半夜，物业调解后加装隔音", "装修工人中午施工吵闹，双方约定午休不施工"]


def _records(n: int):
    return [_rec(f"TZ-JJ-2026110{i:02d}", NOISE[i % len(NOISE)] + ("。" * (i % 3)), title=f"邻里纠纷{i}",
                 category="邻里纠纷") for i in range(n)]


def _ranked(kb, question: str):
    return [(h.id, round(h.score, 6)) for h in kb.search(question, ADMIN, k=10, mode="keyword")]


def test_a_question_ranks_the_same_chunks_with_the_same_scores_whatever_the_index_layout(make_kb):
    records = _records(24)
    layered = make_kb("layered")
    layered.upsert(records[:10])
    layered.keyword.compact()  # main: the first ten
    layered.upsert(records[10:])  # delta: the rest
    layered.delete([records[3].id])  # a tombstone in main
    fresh = make_kb("fresh")
    fresh.upsert(records)
    fresh.delete([records[3].id])
    fresh.keyword.compact()  # one segment, as a replica restarted now
    for question in ("隔壁装修吵到半夜的邻里纠纷怎么处理？", "狗叫", "装修 午休"):
        a, b = _ranked(layered, question), _ranked(fresh, question)
        assert a and a == b, (question, a, b)
