from backend.core.masking import mask_personal, minor_names
from knowledge_base.ingest import record_from_json
from knowledge_base.query import Acl, Filter, parse_period
from knowledge_base.records import Scope
from knowledge_base.textproc import chunk_text, split_articles, split_sentences


def test_sentence_splitter_keeps_punctuation():
    assert split_sentences("甲说：“你好！”乙没理他。真的吗？是的；好\n结束") == [
        "甲说：“你好！”", "乙没理他。", "真的吗？", "是的；", "好", "结束"]


def test_chunks_never_cut_inside_a_sentence():
    sents = [f"第{i}句话说的是一件关于邻里纠纷调解的具体事情，内容比较长一些。" for i in range(40)]
    text = "".join(sents)
    chunks = chunk_text(text, size=300, overlap=60)
    assert len(chunks) > 3
    for c in chunks:
        assert len(c) <= 300
        for piece in split_sentences(c):
            assert piece in sents  # only whole sentences
    # overlap: the boundary sentence is repeated
    assert split_sentences(chunks[1])[0] in chunks[0]
    # every sentence is somewhere
    assert all(any(s in c for c in chunks) for s in sents)


def test_overlong_sentence_is_split():
    s = "很长" * 400 + "。"
    chunks = chunk_text(s, size=300)
    assert all(len(c) <= 300 for c in chunks) and "".join(chunks).replace("。", "") == "很长" * 400


def test_articles_split_but_not_on_cross_references():
    t = "台州市某条例\n第一章 总则\n第一条　为了预防纠纷，制定本条例。\n第二条　依照本条例第十条规定处理。\n第十条 人民调解不收费。"
    arts = split_articles(t)
    assert [a for a, _ in arts] == [None, "第一条", "第二条", "第十条"]
    assert "第十条规定" in arts[2][1]


def test_periods():
    from datetime import date

    today = date(2026, 11, 28)
    assert parse_period("本月", today).range == (20261101, 20261130)
    assert parse_period("上个月的", today).range == (20261001, 20261031)
    assert parse_period("去年", today).range == (20250101, 20251231)
    assert parse_period("最近7天", today).range == (20261122, 20261128)
    assert parse_period("2025年3月", today).range == (20250301, 20250331)
    assert parse_period("12月", today).range == (20251201, 20251231)  # a future month means last year
    assert parse_period("楼上漏水", today) is None


def test_filter_where_and_match_agree():
    f = Filter(acl=Acl.for_scope(Scope("official", 5, 3)), kinds=("dispute",), place_jids=(110,), date_from=20260101)
    w = f.where()
    assert {"$or": [{"public": True}, {"j_3": True}, {"u_5": True}]} in w["$and"]
    meta = {"kind": "dispute", "jurisdiction_ids": [1, 3, 110], "date": 20260301, "public": False}
    assert f.match(meta)
    assert not f.match({**meta, "jurisdiction_ids": [1, 2, 101]})
    assert not f.match({**meta, "date": 20251231})
    # documents stay eligible under a kind filter, but not a case of another kind
    assert f.match({"kind": "document", "jurisdiction_ids": [1, 3, 110], "date": 20260301, "public": True})
    assert not f.match({**meta, "kind": "missing"})


def test_citizen_and_deputy_acl():
    assert Acl.for_scope(Scope("citizen", 1)) == Acl()
    assert Filter(acl=Acl.for_scope(Scope("citizen", 1))).where() == {"public": True}
    assert Filter(acl=Acl.for_scope(Scope("deputy", 501))).where() == {"$or": [{"public": True}, {"u_501": True}]}
    assert Filter(acl=Acl.for_scope(Scope("admin"))).where() is None


def test_minor_names_masked():
    t = "学生王小明（14岁）被推倒，王小明的母亲李芳电话13812345678，身份证331002198001011234。成年人赵大海（35岁）。"
    assert minor_names(t) == {"王小明"}
    m = mask_personal(t)
    assert "王小明" not in m and "王**" in m and "13812345678" not in m and "198001011234" not in m
    assert "赵大海" in m


def test_record_from_json_resolves_location():
    from knowledge_base.places import Gazetteer

    g = Gazetteer.default()
    r = record_from_json({"id": "X-1", "kind": "dispute", "location": "椒江区白云街道", "date": "2026-01-02",
                          "text": "一件事。"}, g.resolve_ids)
    assert r.jurisdiction_ids[:2] == [1, 2] and len(r.jurisdiction_ids) == 3
