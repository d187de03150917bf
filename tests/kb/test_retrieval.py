import json
import time

import pytest

from knowledge_base.evaluation import evaluate, load_questions
from knowledge_base.records import Scope
from tests.kb.conftest import DEV, HUANGYAN, JIAOJIANG, TEST

ADMIN = Scope.admin()
HY_OFFICIAL = Scope("official", user_id=31, jurisdiction_id=HUANGYAN)


def test_hybrid_recall_on_the_dev_split(eval_kb):
    res = evaluate(eval_kb, load_questions(DEV))
    assert res["hybrid"].recall5 >= 0.95, res["hybrid"].misses
    assert res["hybrid"].recall5 >= max(res["dense"].recall5, res["keyword"].recall5)
    assert res["hybrid"].no_answer_ok >= 0.85, res["hybrid"].false_positives


def test_held_out_test_split_meets_the_goal_and_hybrid_beats_dense(eval_kb):
    """The test split was never tuned on (docs/kb.md): R@5 ≥ 0.95, MRR ≥ 0.90, and at least 7 in 8
    questions without an answer are declined at the answer step."""
    res = evaluate(eval_kb, load_questions(TEST))
    h, d = res["hybrid"], res["dense"]
    assert h.recall5 >= 0.95 and h.mrr10 >= 0.90, (h.recall5, h.mrr10, h.misses)
    assert h.unanswerable >= 8 and h.no_answer_handled / h.unanswerable >= 7 / 8, h.false_positives
    assert h.recall5 > d.recall5 and h.mrr10 > d.mrr10


def test_citations_point_only_to_retrieved_records(eval_kb):
    for q in ["工地拖欠工资怎么处理", "楼上漏水赔偿", "老人走失怎么找到的", "渔船碰撞"]:
        ans = eval_kb.answer(q, ADMIN)
        retrieved = {h.id for h in ans.hits}
        assert ans.citations, q
        assert set(ans.citations) <= retrieved
        for n in range(1, len(ans.citations) + 1):
            assert f"[{n}]" in ans.answer
        assert f"[{len(ans.citations) + 1}]" not in ans.answer


def test_huangyan_official_never_sees_jiaojiang(eval_kb):
    qs = ["椒江区的欠薪纠纷", "白云街道安置房工地欠薪", "陈国强", "TZ-JJ-20260305-0001", "老人走失", "纠纷", "物业纠纷",
          "wage arrears in Jiaojiang", "椒江二桥"]
    for q in qs:
        for mode in ("hybrid", "dense", "keyword"):
            for h in eval_kb.search(q, HY_OFFICIAL, k=10, mode=mode):
                assert HUANGYAN in h.meta["jurisdiction_ids"] or h.meta["public"], (q, h.id)
                assert JIAOJIANG not in h.meta["jurisdiction_ids"]
        ans = eval_kb.answer(q, HY_OFFICIAL)
        assert "TZ-JJ" not in ans.answer and not any(c.startswith("TZ-JJ") for c in ans.citations)
    # …while the same question finds them for a Jiaojiang official
    jj = Scope("official", user_id=32, jurisdiction_id=JIAOJIANG)
    assert eval_kb.search("陈国强", jj)[0].id == "TZ-JJ-20260305-0001"
    assert eval_kb.card("TZ-JJ-20260305-0001", HY_OFFICIAL) is None
    assert eval_kb.card("TZ-JJ-20260305-0001", jj)["title"] == "白云街道安置房工地欠薪"


def test_deputy_sees_own_items_and_public_documents_only(eval_kb):
    deputy = Scope("deputy", user_id=501)
    ids = {h.id for q in ["加装电梯补助", "污水处理终端停运", "山区校车", "拖欠工资", "人民调解收费吗"]
           for h in eval_kb.search(q, deputy, k=10)}
    assert {"DB-2026-001", "DB-2026-005"} <= ids
    assert all(i in ("DB-2026-001", "DB-2026-005") or i.startswith("DOC-") for i in ids), ids


def test_citizen_gets_public_documents_not_cases(eval_kb):
    citizen = Scope("citizen", user_id=900)
    ans = eval_kb.answer("工地拖欠工资的纠纷怎么处理", citizen)
    assert ans.citations and all(c.startswith("DOC-") for c in ans.citations)  # the guide, never the cases
    ans = eval_kb.answer("陈国强欠薪的案子", citizen)
    assert all(c.startswith("DOC-") for c in ans.citations) and "陈国强" not in ans.answer
    ans = eval_kb.answer("申请人民调解要交钱吗", citizen)
    assert ans.citations and set(ans.citations) <= {"DOC-GUIDE-002", "DOC-TZ-303"}, ans.answer
    assert all(h.id.startswith("DOC-") for h in eval_kb.search("拖欠工资仲裁时效", citizen, k=10))


def test_no_answer_is_not_padded(eval_kb):
    ans = eval_kb.answer("无人机在小区上空拍照侵犯隐私怎么办", ADMIN)
    assert ans.answer.startswith("未找到相关记录") and ans.citations == []


def test_empty_knowledge_base(kb):
    assert kb.search("工资", ADMIN) == []
    ans = kb.answer("椒江区最近有哪些欠薪纠纷？", ADMIN)
    assert ans.answer.startswith("未找到相关记录") and ans.citations == []
    assert kb.answer("", ADMIN).citations == []


def test_very_long_question(eval_kb):
    q = "安置房工地包工头欠了二十多个木工钢筋工的钱，" + "请详细说明处理经过和依据。" * 400
    assert len(q) >= 5000
    t0 = time.perf_counter()
    ans = eval_kb.answer(q[:5000], ADMIN)
    assert time.perf_counter() - t0 < 5
    assert "TZ-JJ-20260305-0001" in ans.citations


def test_english_question_over_chinese_records(eval_kb):
    hits = eval_kb.search("elderly man with dementia went missing and was found near the bridge", ADMIN)
    assert hits and hits[0].kind == "missing", [(h.id, h.dense) for h in hits]
    ans = eval_kb.answer("wage arrears at a construction site in Jiaojiang", ADMIN)
    assert ans.citations and all(c.startswith(("TZ-JJ", "DB-2026-010")) for c in ans.citations)


def test_filters_from_the_question(eval_kb):
    xianju_land = {"TZ-XJ-20260416-0022", "TZ-XJ-20260318-0103", "TZ-XJ-20251111-0228", "LS-2017-0005"}
    hits = eval_kb.search("仙居县的山林纠纷", ADMIN, k=10)
    assert {h.id for h in hits[:4]} == xianju_land  # the historical case of that kind is not left out
    assert all(7 + 2 in h.meta["jurisdiction_ids"] for h in hits)  # 仙居县 (id 9)
    assert set(eval_kb.answer("仙居县的山林纠纷", ADMIN).citations) <= xianju_land
    hits = eval_kb.search("2025年温岭的纠纷", ADMIN, k=20)
    assert hits and all(h.meta["date"] // 10000 == 2025 and 6 in h.meta["jurisdiction_ids"] for h in hits)
    ans = eval_kb.answer("温岭泽国镇的欠薪纠纷", ADMIN)
    assert ans.citations[0] == "TZ-WL-20250918-0003"
    assert "地区=泽国镇" in ans.answer and "类别=劳动争议" in ans.answer


def test_minor_names_and_phones_masked_unless_entitled(make_kb):
    from datetime import date

    from knowledge_base.records import Record

    kb = make_kb()
    kb.upsert([Record("TZ-LQ-1", "dispute", "校园冲突", "学生王小明（14岁）被同学推倒受伤，家长电话13812345678。"
                      "调解员组织双方家长协商。", "校园纠纷", "路桥区横街镇", [1, 4, 150], date(2026, 3, 1),
                      owner_user_ids=[701])])
    official = Scope("official", 40, 4)
    a = kb.answer("学生被推倒受伤", official)
    assert "王小明" not in a.answer and "13812345678" not in a.answer and "王**" in a.answer
    assert "王小明" not in kb.search("学生被推倒受伤", official)[0].snippet
    owner = Scope("mediator", 701, 150)
    assert "王小明" in kb.answer("学生被推倒受伤", owner).answer


def test_search_json_cli(tmp_path, monkeypatch, use_embeddings):
    from typer.testing import CliRunner

    from backend.core.config import get_settings
    from knowledge_base.cli import app
    from tests.kb.conftest import RECORDS

    monkeypatch.setenv("HEHE_DATA_DIR", str(tmp_path / "cli"))
    # the real CLI code path, with the session's already loaded USE model
    monkeypatch.setattr("knowledge_base.embeddings.make_embeddings", lambda settings, workers=1: use_embeddings)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["import", str(RECORDS)])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["search", "陈国强", "-k", "5", "--json"])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out[0]["id"] == "TZ-JJ-20260305-0001" and set(out[0]) == {"id", "score", "kind", "snippet"}
        r = CliRunner().invoke(app, ["ask", "楼上水管爆了把我家天花板泡坏了", "--json"])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["citations"][0] == "TZ-HY-20261102-0009" and "[1]" in out["answer"]
    finally:
        get_settings.cache_clear()


@pytest.mark.asyncio
async def test_facade_async_and_card(eval_kb):
    ans = await eval_kb.aanswer("集市上孩子和爸妈走散了", ADMIN)
    assert ans.citations[0] == "ZS-2026-0002"
    card = await eval_kb.acard("ZS-2026-0002", ADMIN)
    assert card["kind"] == "missing" and card["date"] == "2026-05-01" and card["snippet"]


def test_dense_paths_agree(eval_kb, monkeypatch):
    """Oversampled+filtered, ids-restricted, exact and Chroma-where paths return the same chunks."""
    from knowledge_base.query import parse_query

    vec = eval_kb.embeddings.embed_query("工人讨薪")
    for scope in (HY_OFFICIAL, Scope("deputy", 501), Scope("official", 1, 6)):
        flt = parse_query("纠纷", None, __import__("datetime").date(2026, 11, 28)).filter(scope)
        sel, ids = eval_kb.keyword.allowed(flt)
        where = [m["record_id"] for m, _, _ in eval_kb.vector.search(vec, flt, 10)]
        over = [m["record_id"] for m, _, _ in eval_kb.vector.search(vec, flt, 10, selectivity=max(sel, 0.5))]
        exact = [m["record_id"] for m, _, _ in eval_kb.vector.search(vec, flt, 10, allowed_ids=ids)]
        monkeypatch.setattr(type(eval_kb.vector), "EXACT_MAX", 0)
        by_ids = [m["record_id"] for m, _, _ in eval_kb.vector.search(vec, flt, 10, allowed_ids=ids)]
        monkeypatch.undo()
        assert where and set(where) == set(exact) == set(by_ids), scope
        assert set(over) <= set(where) | set(exact)
        for rid in where:
            assert flt.match(eval_kb.store.get(rid))
