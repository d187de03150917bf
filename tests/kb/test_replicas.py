"""Several replicas on one PostgreSQL database and one Chroma server (#19): the record store is in
the database, each replica's keyword index follows the change sequence, the vectors are in the
server. A record imported through one process is found by another within seconds; so is a
deletion; and the single-process SQLite default keeps its records in the application database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from knowledge_base.records import Scope
from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from tests.kb.conftest import kb_settings, wait_for
from tests.serving import free_port, stop_process

ADMIN = Scope.admin()
ROOT = Path(__file__).resolve().parents[2]
CHROMA = Path(sys.executable).with_name("chroma")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """``chroma run`` from the installed chromadb package, telemetry off, on a free port."""
    if not CHROMA.exists():
        pytest.skip("the chroma command of the chromadb package is not installed")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma_server")
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen([str(CHROMA), "run", "--path", str(path / "data"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as r:
                return r.status == 200
        except OSError:
            return proc.poll() is not None  # died: stop waiting

    try:
        assert wait_for(up, 60) and proc.poll() is None, (path / "server.log").read_text(errors="replace")[-2000:]
        yield url
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture
def pg_database():
    if not PG_URL:
        pytest.skip("HEHE_TEST_PG_URL not set")
    from backend.core import migrate

    url = create_pg_database()
    try:
        migrate.upgrade(url.replace("+asyncpg", "+psycopg2"))
        yield url
    finally:
        drop_pg_database(url)


def _cli(data_dir: Path, db_url: str, chroma_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HEHE_DATA_DIR": str(data_dir), "HEHE_DATABASE_URL": db_url, "HEHE_CHROMA_URL": chroma_url,
           "HEHE_KB_ENABLED": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    return subprocess.run([sys.executable, "-m", "knowledge_base.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


RECORD = {"id": "TZ-LH-20261202-0931", "kind": "矛盾纠纷", "category": "欠薪", "location": "临海市杜桥镇",
          "date": "2026-12-02", "title": "杜桥镇眼镜厂欠薪",
          "text": "杜桥镇一家眼镜厂老板钱立群拖欠16名工人两个月工资9.8万元，镇调解员促成一次付清。"}


@pytest.mark.postgres
def test_replicas_on_one_postgresql_database_find_each_others_records_and_deletions(
        pg_database, chroma_server, use_embeddings, tmp_path):
    from knowledge_base.facade import KnowledgeBase
    from tests.kb.test_ingest import _rec

    def replica(name: str) -> KnowledgeBase:
        return KnowledgeBase(kb_settings(tmp_path / name, database_url=pg_database, chroma_url=chroma_server),
                             embeddings=use_embeddings).load()

    a, b = replica("a"), replica("b")
    try:
        # another process (the CLI, its own data dir) imports; both running replicas find it
        f = tmp_path / "new.jsonl"
        f.write_text(json.dumps(RECORD, ensure_ascii=False) + "\n", encoding="utf-8")
        r = _cli(tmp_path / "cli", pg_database, chroma_server, "import", str(f))
        assert r.returncode == 0, r.stderr[-2000:]
        for kb in (a, b):
            assert wait_for(lambda kb=kb: [h.id for h in kb.search("钱立群", ADMIN, mode="keyword")][:1]) == [RECORD["id"]]
            assert [h.id for h in kb.search("眼镜厂拖欠工人工资", ADMIN, mode="dense")][:1] == [RECORD["id"]]
            assert kb.card(RECORD["id"], ADMIN)["category"] == "劳动争议"

        # one replica writes, the other finds it (both channels), then one deletes, the other stops finding it
        t0 = time.monotonic()
        a.upsert([_rec("TZ-JJ-20261202-0077", "渔船夜间碰撞，船头受损，双方按六四分担修理费。", title="渔船碰撞",
                       category="渔业纠纷")])
        assert wait_for(lambda: [h.id for h in b.search("渔船碰撞 修理费", ADMIN)][:1]) == ["TZ-JJ-20261202-0077"]
        assert time.monotonic() - t0 < 20
        assert [h.id for h in b.search("渔船夜里撞了谁来修", ADMIN, mode="dense")][:1] == ["TZ-JJ-20261202-0077"]
        b.delete([RECORD["id"]])
        assert wait_for(lambda: not [h for h in a.search("钱立群", ADMIN, mode="keyword") if h.id == RECORD["id"]])
        assert RECORD["id"] not in [h.id for h in a.search("眼镜厂拖欠工人工资", ADMIN)]
        assert a.count() == b.count() == 1

        # and a third process sees the same as both (the CLI's own keyword index, built from the database)
        r = _cli(tmp_path / "cli", pg_database, chroma_server, "search", "渔船碰撞", "-k", "3", "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert [h["id"] for h in json.loads(r.stdout.strip().splitlines()[-1])][:1] == ["TZ-JJ-20261202-0077"]
    finally:
        a.close()
        b.close()


def test_the_change_sequence_numbers_every_write_in_order(make_kb):
    from tests.kb.test_ingest import _rec

    kb = make_kb("kb")
    start = kb.store.last_change()
    kb.upsert([_rec("TZ-JJ-1", "楼上漏水泡坏楼下吊顶。", title="漏水", category="邻里纠纷"),
               _rec("TZ-JJ-2", "包工头拖欠工资。", title="欠薪")])
    kb.delete(["TZ-JJ-1"])
    changes = kb.store.changes_since(start)
    assert [seq for seq, _, _ in changes] == [start + 1, start + 2, start + 3]
    assert [rid for _, rid, _ in changes] == ["TZ-JJ-1", "TZ-JJ-2", "TZ-JJ-1"]
    assert kb.store.last_change() == start + 3


def test_the_single_process_default_keeps_the_records_in_the_application_database(make_kb):
    import sqlite3

    from tests.kb.test_ingest import _rec

    kb = make_kb("kb")
    kb.upsert([_rec("TZ-JJ-3", "楼上漏水泡坏楼下吊顶。", title="漏水", category="邻里纠纷")])
    db = kb.settings.data_dir / "hehe.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT id, title FROM kb_records").fetchall() == [("TZ-JJ-3", "漏水")]
    finally:
        con.close()
    assert not (kb.settings.data_dir / "kb" / "records.sqlite").exists()


def test_a_store_from_before_the_database_is_copied_into_it_once(make_kb, tmp_path, use_embeddings):
    """Upgrading: the old <data_dir>/kb/records.sqlite is imported, searchable, and renamed."""
    import sqlite3

    from knowledge_base.facade import KnowledgeBase
    from tests.kb.test_ingest import _rec

    kb = make_kb("old")
    kb.upsert([_rec("TZ-JJ-4", "包工头钱某某拖欠工资，街道协调垫付。", title="欠薪")])
    kb.close()
    # what the store looked like before: the same rows in a SQLite file of its own
    legacy = kb.settings.data_dir / "kb" / "records.sqlite"
    src = sqlite3.connect(kb.settings.data_dir / "hehe.db")
    out = sqlite3.connect(legacy)
    out.executescript("CREATE TABLE records (id TEXT PRIMARY KEY, kind TEXT, title TEXT, category TEXT, location TEXT,"
                      " date INTEGER, public INTEGER, jids TEXT, owners TEXT, text TEXT, sections TEXT, source TEXT,"
                      " updated REAL); CREATE TABLE chunks (cid INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT,"
                      " idx INTEGER, article TEXT, text TEXT, tokens TEXT);")
    out.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0)", src.execute(
        "SELECT id, kind, title, category, location, date, public, jids, owners, text, sections, source FROM kb_records"))
    out.executemany("INSERT INTO chunks(record_id, idx, article, text, tokens) VALUES (?,?,?,?,?)",
                    src.execute("SELECT record_id, idx, article, text, tokens FROM kb_chunks"))
    out.commit()
    out.close()
    src.execute("DELETE FROM kb_chunks")
    src.execute("DELETE FROM kb_records")
    src.commit()
    src.close()

    again = KnowledgeBase(kb.settings, embeddings=use_embeddings, live=False).load()
    try:
        assert again.count() == 1
        assert [h.id for h in again.search("钱某某", ADMIN, mode="keyword")][:1] == ["TZ-JJ-4"]
        assert [h.id for h in again.search("包工头欠工资街道垫付", ADMIN, mode="dense")][:1] == ["TZ-JJ-4"]
        assert not legacy.exists() and legacy.with_name("records.sqlite.imported").exists()
    finally:
        again.close()


@pytest.mark.postgres
def test_concurrent_writers_never_make_a_follower_skip_a_change(pg_database):
    """Two replicas write at once; a third follows the log while they do. Every batch it reads
    starts right after the last number it saw: numbers become visible in order (an autoincrement
    column could show 12 before 11 commits, and the follower would never see 11)."""
    import threading

    from knowledge_base.store import RecordStore, make_store_engine

    url = pg_database.replace("+asyncpg", "+psycopg2")
    writers = [RecordStore(make_store_engine(url)) for _ in range(2)]
    follower = RecordStore(make_store_engine(url))
    n_each = 100
    stop = threading.Event()
    seen, gaps = 0, []

    def follow():
        nonlocal seen
        while True:
            done = stop.is_set()
            for seq, _, _ in follower.changes_since(seen):
                if seq != seen + 1:
                    gaps.append((seen, seq))
                seen = seq
            if done:
                return

    def write(w: int):
        for i in range(n_each):
            rid = f"W{w}-{i}"
            row = {"id": rid, "kind": "dispute", "title": rid, "category": "", "location": "", "date": 0,
                   "public": False, "jurisdiction_ids": [], "owner_user_ids": [], "text": "调解", "source": None}
            writers[w].upsert([row], [[{"idx": 0, "text": "调解", "tokens": ["调解"]}]], writer=f"w{w}")

    t = threading.Thread(target=follow)
    t.start()
    ws = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for x in ws:
        x.start()
    for x in ws:
        x.join()
    stop.set()
    t.join()
    for s in (*writers, follower):
        s.close()
    assert gaps == []
    assert seen == 2 * n_each
