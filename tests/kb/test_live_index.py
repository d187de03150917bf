"""Live index: what another process imports, changes or deletes is searchable by a running
process within seconds, on the keyword and the dense channel, without a restart."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from knowledge_base.records import Scope
from tests.kb.conftest import wait_for

ADMIN = Scope.admin()
ROOT = Path(__file__).resolve().parents[2]


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HEHE_DATA_DIR": str(data_dir), "HEHE_KB_ENABLED": "1", "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    return subprocess.run([sys.executable, "-m", "knowledge_base.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def test_records_imported_by_another_process_are_found_by_a_running_one_within_seconds(make_kb, tmp_path):
    running = make_kb("kb")  # the server: loaded first, it writes the vector index
    data_dir = running.settings.data_dir
    f = tmp_path / "new.jsonl"
    f.write_text(json.dumps({"id": "TZ-LH-20261130-0901", "kind": "矛盾纠纷", "category": "欠薪",
                             "location": "临海市杜桥镇", "date": "2026-11-30", "title": "杜桥镇眼镜厂欠薪",
                             "text": "杜桥镇一家眼镜厂老板钱立群拖欠16名工人两个月工资9.8万元，镇调解员促成一次付清。"},
                            ensure_ascii=False) + "\n", encoding="utf-8")
    r = _cli(data_dir, "import", str(f))
    assert r.returncode == 0, r.stderr[-2000:]
    t0 = time.monotonic()
    kw = wait_for(lambda: [h.id for h in running.search("钱立群", ADMIN, mode="keyword")])
    dense = wait_for(lambda: [h.id for h in running.search("眼镜厂拖欠工人工资", ADMIN, mode="dense")][:1])
    assert kw == ["TZ-LH-20261130-0901"] and dense == ["TZ-LH-20261130-0901"]
    assert time.monotonic() - t0 < 10
    # the kind label 矛盾纠纷 and the category 欠薪 were mapped onto the taxonomy
    assert running.card("TZ-LH-20261130-0901", ADMIN)["category"] == "劳动争议"
    assert running.vector.collection.get(where={"record_id": "TZ-LH-20261130-0901"})["ids"]

    # a change made elsewhere replaces what the running process finds…
    f.write_text(f.read_text(encoding="utf-8").replace("钱立群", "钱立明"), encoding="utf-8")
    assert _cli(data_dir, "import", str(f)).returncode == 0
    assert wait_for(lambda: [h.id for h in running.search("钱立明", ADMIN, mode="keyword")])
    assert not [h for h in running.search("钱立群", ADMIN, mode="keyword") if h.keyword_evidence]


def test_the_vector_writer_role_passes_on_when_its_holder_closes(make_kb):
    first = make_kb("kb")
    assert first._writes_vectors()
    from knowledge_base.facade import KnowledgeBase

    second = KnowledgeBase(first.settings, embeddings=first.embeddings, live=False).load()
    try:
        assert not second._writes_vectors()  # one writer of the embedded Chroma directory at a time
        from tests.kb.test_ingest import _rec

        second.upsert([_rec("TZ-JJ-77", "渔船夜间碰撞，船头受损，双方按六四分担修理费。", title="渔船碰撞",
                           category="渔业纠纷")])
        assert second.store.pending_vectors()  # waiting for the writer
        first.sync()
        assert not second.store.pending_vectors()
        assert first.search("渔船碰撞修理费", ADMIN, mode="dense")[0].id == "TZ-JJ-77"
        first.close()
        second.sync()
        assert second._writes_vectors()  # the lease was released: the remaining process takes it
    finally:
        second.close()


def test_a_process_that_slept_past_the_change_log_rereads_the_store(make_kb):
    from knowledge_base.facade import KnowledgeBase
    from tests.kb.test_ingest import _rec

    awake = make_kb("kb")
    asleep = KnowledgeBase(awake.settings, embeddings=awake.embeddings, live=False).load()
    try:
        awake.upsert([_rec("TZ-JJ-88", "包工头钱某某拖欠工资，街道协调垫付。", title="欠薪")])
        awake.store.prune_changes(time.time() + 1)  # forgotten before the sleeping process followed it
        asleep.upsert([_rec("TZ-JJ-89", "楼上漏水泡坏楼下吊顶，赔偿六千元。", title="漏水", category="邻里纠纷")])
        asleep.sync()
        assert [h.id for h in asleep.search("钱某某", ADMIN, mode="keyword")][:1] == ["TZ-JJ-88"]
    finally:
        asleep.close()
