"""Every face and knowledge-base search answers the same on both replicas (issue #19.5, #19.6):
two real ``hehe serve`` processes on one PostgreSQL database, the real face model and the KB's
embedding model loaded, the vectors in one Chroma server, each replica with a data dir of its own.
A family files a missing-person report with a real photo through replica A (web chat), an officer
registers a found person through replica B, a public document is imported by another process (the
KB command line); face searches (the API) and KB questions (/ask) give the same candidates, scores
and ranked records on both; a withdrawal through B takes the face out of both replicas' searches."""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.core.test_storage import s3_endpoint as s3_endpoint  # a module-scoped S3 server (moto)
from tests.kb.test_replicas import _cli
from tests.kb.test_replicas import chroma_server as chroma_server  # the module-scoped `chroma run` fixture
from tests.replicas.cluster import Cluster, Person, Replica
from tests.replicas.test_load_and_kill import _make_mediator

pytestmark = pytest.mark.postgres

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "identities"
START = 300  # seconds a replica with both models may take to start on a loaded CI machine
SECRET = "shared-by-every-replica-0123456789"
# a public document (an officer's questions may cite it; a dispute case only where their policy lets them open it)
RECORD = {"id": "TZ-DOC-20261203-0019", "kind": "document", "title": "台州市渔船碰撞纠纷调处办法",
          "text": "第三条 渔船夜间碰撞造成船体受损的，由所在乡镇渔业纠纷调解委员会组织双方协商，"
                  "按过错比例分担修理费用；协商不成的，可申请海事仲裁。"}
SYNC = 30  # seconds within which a write on one replica shows in the other's searches


def picture(rel: str) -> bytes:
    return (FACES / rel).read_bytes()


def texts(p: Person, since: int) -> str:
    """The bot's lines since ``since`` with their buttons."""
    return "\n".join(m["text"] + " " + " ".join(b["text"] for row in m["inline"] for b in row)
                     for m in p.transcript(since)["messages"] if not m["mine"])


def step(p: Person, action, expect: str) -> None:
    """One step of a chat conversation; the bot's answer to it contains ``expect``."""
    since = p.transcript()["last"]
    action()
    shown = texts(p, since)
    assert expect in shown, shown[-500:]


def poll(check, timeout: float = SYNC):
    """``check()`` until it returns something true (the other replica caught up), else its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, pg_url_module, chroma_server, s3_endpoint):
    """Two replicas with the face model and the KB on, started side by side. Each has a data dir
    of its own (its face index and keyword index are local caches: only the database's change
    sequences can bring another replica's writes); uploaded photos are in one S3 bucket."""
    tmp = tmp_path_factory.mktemp("searches")
    env = dict(HEHE_API_TOKEN_SECRET=SECRET, HEHE_SMS_PROVIDER="console", HEHE_DEMO="false",
               HEHE_QUIET_HOURS_START="0", HEHE_QUIET_HOURS_END="0", HEHE_FACE_ENABLED="true",
               HEHE_KB_ENABLED="true", HEHE_CHROMA_URL=chroma_server, HEHE_FACE_SYNC_SECONDS="1",
               HEHE_THROTTLE_PER_MINUTE="600", HEHE_S3_BUCKET="hehe-searches", HEHE_S3_ENDPOINT=s3_endpoint,
               HEHE_S3_ACCESS_KEY="test-key", HEHE_S3_SECRET_KEY="test-secret")
    rs = [Replica(tmp, pg_url_module, f"r{i}", **env) for i in range(2)]
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda r: r.start(timeout=START), rs))
        print(f"\n2 replicas with the face model and the KB up in {time.monotonic() - t0:.1f} s")
        yield rs
        peak = [_peak_mb(r) for r in rs]
        print(f"\npeak memory of the replicas: {peak} MB")
    finally:
        for r in rs:
            r.stop()


def _peak_mb(r: Replica) -> int:
    """The process's peak resident memory (Linux), for the sizing figures in the report."""
    for line in Path(f"/proc/{r.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


@pytest.fixture(scope="module")
def people(replicas, pg_url_module):
    """A citizen and an officer of 椒江区 (web chat with a second factor, and an API token)."""
    cluster = Cluster(replicas)
    citizen = Person(cluster, 1, "13900000001", "王家属")
    officer = Person(cluster, 2, "13900000002", "李警官")
    for p in (citizen, officer):
        p.sign_in()
    token = asyncio.run(_make_mediator(pg_url_module, officer.phone, role="officer", place="椒江区"))
    secret = officer.request("POST", "/auth/api/totp/new").json()["totp_secret"]
    officer.request("POST", "/auth/api/totp", json={"code": pyotp.TOTP(secret).now()})
    return citizen, officer, token


def face_search(replica: Replica, token: str, rel: str, gallery: str) -> list[tuple]:
    r = httpx.post(f"{replica.base}/api/faces/search", headers={"Authorization": f"Bearer {token}"},
                   files={"file": ("p.jpg", picture(rel), "image/jpeg")}, data={"gallery": gallery, "k": "5"},
                   timeout=120)
    assert r.status_code == 200, r.text
    return [(c["person_id"], c["case_no"], c["score"]) for c in r.json()["candidates"]]


def on_both(replicas: list[Replica], search) -> list:
    """The same search on each replica, once it answers the same on both; the answers."""
    answers: list = []

    def agree():
        answers[:] = [search(r) for r in replicas]
        return answers[0] == answers[1] and answers[0]

    poll(agree)
    return answers


def test_face_searches_answer_the_same_on_both_replicas_and_a_withdrawal_leaves_both(replicas, people):
    citizen, officer, token = people
    t0 = time.monotonic()
    # the family reports through replica A (0); the officer registers a found man through replica B (1)
    say = lambda p, words, i: (lambda: p.request("POST", "/chat/api/send", replica=i, json={"text": words}))  # noqa: E731
    step(citizen, say(citizen, "/start", 0), "报告走失人员")
    step(citizen, lambda: citizen.press("报告走失人员", 0), "姓名")
    step(citizen, say(citizen, "王阿公", 0), "性别")
    step(citizen, lambda: citizen.press("男", 0), "年龄")
    step(citizen, say(citizen, "78", 0), "身高")
    step(citizen, say(citizen, "165", 0), "区县")
    step(citizen, say(citizen, "椒江区海门街道东山公园", 0), "什么时候")
    step(citizen, say(citizen, "今天 08:00", 0), "衣着")
    step(citizen, say(citizen, "深蓝色外套，灰色裤子", 0), "健康")
    step(citizen, say(citizen, "阿尔茨海默症，需按时服药", 0), "电话")
    step(citizen, say(citizen, "138 1234 5678", 0), "照片")
    step(citizen, lambda: citizen.request("POST", "/chat/api/photo", replica=0,
                                          files={"file": ("p.jpg", picture("obama/1.jpg"), "image/jpeg")}), "第 1 张")
    step(citizen, lambda: citizen.press("下一步", 0), "请核对")
    step(citizen, lambda: citizen.press("确认提交", 0), "XR-JJ")

    filed = time.monotonic()
    # a face search with a third photo of the man: the same candidates and scores on A and B
    missing = on_both(replicas, lambda r: face_search(r, token, "obama/3.jpg", "missing"))
    print(f"face search on the missing gallery agrees on both {time.monotonic() - filed:.1f} s after the filing on A")
    assert missing[0] == missing[1], missing
    assert len(missing[0]) == 1 and missing[0][0][1].startswith("XR-JJ") and missing[0][0][2] >= 0.35, missing

    step(officer, say(officer, "/missing_found", 1), "照片")
    step(officer, lambda: officer.request("POST", "/chat/api/photo", replica=1,
                                          files={"file": ("p.jpg", picture("obama/2.jpg"), "image/jpeg")}), "第 1 张")
    step(officer, lambda: officer.press("下一步", 1), "区县")
    step(officer, lambda: officer.press("椒江区", 1), "具体地点")
    step(officer, say(officer, "海门街道救助站", 1), "什么时候")
    step(officer, lambda: officer.press("刚刚", 1), "估计年龄")
    step(officer, say(officer, "80", 1), "性别")
    step(officer, lambda: officer.press("男", 1), "身高")
    step(officer, lambda: officer.press("跳过", 1), "自称")
    step(officer, say(officer, "老王", 1), "衣着")
    step(officer, say(officer, "灰色棉袄", 1), "体貌特征")
    step(officer, lambda: officer.press("跳过", 1), "其他情况")
    step(officer, say(officer, "神志不太清楚", 1), "请核对")
    step(officer, lambda: officer.press("确认提交", 1), "XR-")
    registered = time.monotonic()
    found = on_both(replicas, lambda r: face_search(r, token, "obama/3.jpg", "found"))
    print(f"face search on the found gallery agrees on both {time.monotonic() - registered:.1f} s after B wrote")
    assert found[0] == found[1] and len(found[0]) == 1 and found[0][0][2] >= 0.35, found
    # another man's photo: nobody scores above the threshold on either
    other = on_both(replicas, lambda r: face_search(r, token, "biden/1.jpg", "missing"))
    assert other[0] == other[1] and all(score < 0.35 for _, _, score in other[0]), other

    # the family withdraws through replica B: neither replica finds the face any more
    step(citizen, say(citizen, "/missing_delete", 1), "XR-JJ")
    step(citizen, lambda: citizen.press("撤销", 1), "确定撤销")
    step(citizen, lambda: citizen.press("确定撤销", 1), "人脸数据已删除")
    person = missing[0][0][0]
    gone = poll(lambda: all(person not in [c[0] for c in face_search(r, token, "obama/3.jpg", "missing")]
                            for r in replicas))
    assert gone, [face_search(r, token, "obama/3.jpg", "missing") for r in replicas]
    print(f"face part: {time.monotonic() - t0:.1f} s")


def citations(p: Person, replica: int, question: str) -> list[str]:
    """The records an answer to ``question`` on ``replica`` cites, in its order (the [n] buttons)."""
    since = p.transcript()["last"]
    p.request("POST", "/chat/api/send", replica=replica, json={"text": f"/ask {question}"})
    # other lines may come in between (a notification delivered to this officer): the answer is the one citing
    answers = [[b["text"].split("] ", 1)[1] for row in m["inline"] for b in row if b["text"].startswith("[")]
               for m in p.transcript(since)["messages"] if not m["mine"]]
    return next((cited for cited in reversed(answers) if cited), [])


def test_a_record_imported_by_another_process_is_cited_the_same_on_both_replicas(replicas, people, chroma_server,
                                                                               pg_url_module, tmp_path):
    _, officer, _ = people
    f = tmp_path / "new.jsonl"
    f.write_text(json.dumps(RECORD, ensure_ascii=False) + "\n", encoding="utf-8")
    t0 = time.monotonic()
    r = _cli(tmp_path / "cli", pg_url_module, chroma_server, "import", str(f))
    assert r.returncode == 0, r.stderr[-2000:]
    imported = time.monotonic()
    question = "渔船夜里相撞，修理费怎么分担？"
    cited = on_both(replicas, lambda rep: citations(officer, replicas.index(rep), question))
    print(f"import {imported - t0:.1f} s; both replicas cite it {time.monotonic() - imported:.1f} s later")
    assert cited[0] == cited[1], cited
    assert cited[0][:1] == [RECORD["id"]], cited
