"""Issue #19, done when: two real ``hehe serve`` replicas on one PostgreSQL database serve 50
citizens (phone sign-in, a dispute reported through the web chat) and staff (10 acceptances),
while reminders fall due and every request goes to either replica; one replica is SIGKILLed
mid-run and restarted. Afterwards: one case per citizen, each acceptance and reminder once, every
notification delivered into its person's transcript exactly once, and a long poll on one
replica answered by what another replica wrote.

Face and knowledge-base search equality across replicas belongs to the faces and kb slices
(issue #19.5/#19.6); their checks hook in at ``assert_searches_agree`` below.
"""
from __future__ import annotations

import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from tests.replicas.cluster import Cluster, Down, Person, Replica

pytestmark = pytest.mark.postgres

CITIZENS = 50
START = 300  # seconds a replica may take to start on a loaded CI machine
SECRET = "shared-by-every-replica-0123456789"
DESCRIPTION = "隔壁装修天天吵到半夜，沟通多次无果，影响老人休息"


def jpeg(n: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (n * 5 % 256, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


def report(p: Person) -> str:
    """A dispute reported through the web chat; after a failure (a replica died under the
    request) the person looks at the chat again and starts over only if no case was made."""
    for attempt in range(5):
        try:
            if attempt:
                time.sleep(1)
                if number := p.number():
                    return number
                p.say("/mycases")
                cases = [b["text"] for m in p.transcript()["messages"][-3:] if not m["mine"]
                         for row in m["inline"] for b in row if b["text"].startswith("TZ-")]
                if cases:
                    return cases[0].split()[0]
            p.say("/report")
            if "重新开始" in str(p.transcript()["messages"][-1:]):
                p.press("重新开始")
            p.press("邻里纠纷")
            p.say(DESCRIPTION)
            p.press("椒江区")
            p.press("海门街道")
            p.say("隔壁302住户")
            if p.n % 5 == 0:
                p.photo(jpeg(p.n))  # an upload, to any replica
            p.press("完成")
            p.say("13812345678")
            p.press("确认提交")
            number = p.number()
            assert number, p.transcript()["messages"][-2:]
            return number
        except Down:
            continue
    raise AssertionError(f"citizen {p.n} could not report")


def accept(cluster: Cluster, token: str, case_id: int) -> None:
    """The mediator accepts the case (REST API, bearer token: staff use the console or the API;
    the web chat wants a second factor of them), at any replica; retried if that one died."""
    for _ in range(10):
        base = cluster.replicas[cluster.pick()].base
        try:
            r = httpx.post(f"{base}/api/disputes/{case_id}/accept", headers={"Authorization": f"Bearer {token}"},
                           timeout=60)
        except httpx.TransportError:
            time.sleep(1)
            continue
        assert r.status_code == 200, r.text
        return
    raise AssertionError(f"case {case_id} could not be accepted")


async def _make_mediator(url: str, phone: str, role: str = "mediator", place: str = "椒江区/海门街道") -> str:
    """The person who signed in with ``phone`` becomes the township's mediator (or ``role`` of
    ``place``); an API token."""
    from sqlalchemy import select

    from backend.auth.models import WebAccount
    from backend.core.db import make_engine, make_sessionmaker, session_scope
    from backend.users import service as users
    from backend.users import tokens
    from backend.users.models import Role, User

    engine = make_engine(url)
    try:
        async with session_scope(make_sessionmaker(engine)) as s:
            account = await s.scalar(select(WebAccount).where(WebAccount.phone == phone))
            user = await s.get(User, account.user_id)
            await users.set_role(s, user, Role(role), await users.find_jurisdiction(s, place), actor="test")
            return (await tokens.issue(s, user, actor="test"))[1]
    finally:
        await engine.dispose()


def assert_searches_agree(cluster: Cluster) -> None:
    """Hook: face and knowledge-base searches answer the same on every replica (issue #19.5,
    #19.6). Both models are off in these replicas (their searches answer "not ready"), so there
    is nothing to compare here; tests/replicas/test_searches_agree.py checks it on two replicas
    with the face model and the KB on."""


def test_two_replicas_serve_50_citizens_and_staff_and_one_dies_mid_run_losing_and_doubling_nothing(tmp_path, pg_url):
    shared = tmp_path / "data"  # compose's shared /data volume
    env = dict(HEHE_API_TOKEN_SECRET=SECRET, HEHE_SMS_PROVIDER="console", HEHE_DEMO="false",
               HEHE_QUIET_HOURS_START="0", HEHE_QUIET_HOURS_END="0", HEHE_SWEEP_SECONDS="2",
               HEHE_LEADER_RETRY_SECONDS="1", HEHE_OUTBOX_LEASE_SECONDS="8", HEHE_THROTTLE_PER_MINUTE="600")
    replicas = [Replica(tmp_path, pg_url, f"r{i}", data_dir=shared, **env) for i in range(2)]
    db = create_engine(pg_url.replace("+asyncpg", "+psycopg2"))
    try:
        t_start = time.monotonic()
        for r in replicas:
            r.start(timeout=START)
        print(f"replicas up: {time.monotonic() - t_start:.1f} s")
        cluster = Cluster(replicas)
        meds = [Person(cluster, 900 + i, f"1370000{i:04d}", f"调解员{i}") for i in range(2)]
        tokens = []
        for m in meds:
            m.sign_in()  # a person on the web channel: their notifications go to the web transcript
            tokens.append(asyncio.run(_make_mediator(pg_url, m.phone)))

        def case_id(number: str) -> int:
            with db.connect() as c:
                return c.execute(text("SELECT id FROM disputes WHERE number = :n"), {"n": number}).scalar_one()
        people = [Person(cluster, i, f"1390000{i:04d}", f"居民{i}") for i in range(CITIZENS)]

        # A long poll on replica 0 wakes for a line the same person writes through replica 1.
        first = people[0]
        first.sign_in()
        first.say("/start")
        since = first.transcript()["last"]
        with ThreadPoolExecutor(1) as one:
            t0 = time.monotonic()
            poll = one.submit(lambda: first.request("GET", "/chat/api/messages", replica=0,
                                                    params={"since": since, "wait": 20}).json())
            time.sleep(1.0)
            assert not poll.done()
            first.request("POST", "/chat/api/send", replica=1, json={"text": "帮助"})
            woke = poll.result()
            assert time.monotonic() - t0 < 15
            assert any(m["mine"] and m["text"] == "帮助" for m in woke["messages"])

        numbers: dict[int, str] = {}

        def citizen(p: Person) -> None:
            if p is not first:
                p.sign_in()
            numbers[p.n] = report(p)

        def hold_poll(p: Person, since: int) -> str:
            try:
                p.request("GET", "/chat/api/messages", replica=1, params={"since": since, "wait": 25})
            except Down:
                return "down"
            return "answered"

        def due_now(ns: list[int]) -> None:
            """Reminders fall due: the cases' reminder time comes (as the clock would move it)."""
            with db.begin() as c:
                c.execute(text("UPDATE disputes SET remind_at = now() - interval '1 second' "
                               "WHERE number = ANY(:n) AND remind_at IS NOT NULL"), {"n": [numbers[i] for i in ns]})

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(citizen, people[:25]))
            print(f"25 citizens reported: {time.monotonic() - t_start:.1f} s")
            due_now(list(range(0, 10)))
            for i in range(10, 15):
                accept(cluster, tokens[i % 2], case_id(numbers[i]))

            # The second half, with replica 1 SIGKILLed in the middle and started again.
            running = [pool.submit(citizen, p) for p in people[25:]]
            while sum(f.done() for f in running) < 10:
                time.sleep(0.1)
            later = [i for i in range(30, 50) if i in numbers][:10]  # not among the ones accepted
            due_now(later)
            held_since = people[1].transcript()["last"]
            held = pool.submit(hold_poll, people[1], held_since)
            time.sleep(1)
            with cluster._lock:
                cluster.live.discard(1)
            replicas[1].kill()
            people[1].request("POST", "/chat/api/send", replica=0, json={"text": "我在"})
            time.sleep(2)
            replicas[1].start(timeout=START)
            with cluster._lock:
                cluster.live.add(1)
            for f in running:
                f.result()
        print(f"50 citizens reported, one replica killed and restarted: {time.monotonic() - t_start:.1f} s")
        reminded = [numbers[i] for i in [*range(0, 10), *later]]
        for i in range(25, 30):
            accept(cluster, tokens[i % 2], case_id(numbers[i]))

        # Everything settles: every notification sent (rows the killed replica had claimed are
        # delivered by another once their lease runs out), no reminder still due.
        deadline = time.monotonic() + 90
        while True:
            with db.connect() as c:
                # Read in this order: an acceptance or a reminder commits its notification with it,
                # so once both are seen done, the outbox count read after them holds their rows.
                # (The API commits right after its answer.)
                accepting = 10 - c.execute(text("SELECT count(*) FROM disputes WHERE accepted_at IS NOT NULL")).scalar()
                due = c.execute(text("SELECT count(*) FROM disputes WHERE number = ANY(:n) AND remind_at IS NOT NULL"),
                                {"n": reminded}).scalar()
                unsent = c.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL")).scalar()
            if not unsent and not due and not accepting:
                break
            assert time.monotonic() < deadline, f"{unsent} notifications unsent, {due} reminders still due"
            time.sleep(0.5)

        print(f"settled: {time.monotonic() - t_start:.1f} s")
        with db.connect() as c:
            # One case per citizen, the one each was told about.
            cases = dict(c.execute(text("SELECT u.telegram_id, count(*) FROM disputes d JOIN users u "
                                        "ON u.id = d.citizen_id GROUP BY u.telegram_id")).all())
            assert len(cases) == CITIZENS and set(cases.values()) == {1}
            stored = set(c.execute(text("SELECT number FROM disputes")).scalars())
            assert stored == set(numbers.values()) and len(stored) == CITIZENS
            # Each acceptance once.
            accepted = list(c.execute(text("SELECT d.number FROM dispute_events e JOIN disputes d "
                                           "ON d.id = e.dispute_id WHERE e.action = 'accept'")).scalars())
            assert sorted(accepted) == sorted(numbers[i] for i in [*range(10, 15), *range(25, 30)])
            # Each reminder once per mediator.
            reminders = c.execute(text("SELECT d.number, count(*) FROM outbox o JOIN disputes d "
                                       "ON o.dedupe_key LIKE 'd' || d.id || '-remind-%' GROUP BY d.number")).all()
            assert dict(reminders) == {n: len(meds) for n in reminded}
            # Every notification in its person's transcript exactly once.
            rows = c.execute(text(
                "SELECT o.id, (SELECT count(*) FROM web_messages w WHERE w.dedupe LIKE 'outbox:' || o.id || ':%'), "
                "u.channel, o.parts_sent, o.attempts, left(o.text, 40) FROM outbox o JOIN users u ON u.id = o.user_id "
                "WHERE o.dead_at IS NULL")).all()
            assert len(rows) > CITIZENS, len(rows)
            assert all(n == 1 for _id, n, *_ in rows), [r for r in rows if r[1] != 1][:5]
            # The evidence photos uploaded through either replica are there.
            photos = c.execute(text("SELECT count(*) FROM web_files")).scalar()
            assert photos >= CITIZENS // 5
            # The mediators' transcripts show each reminder once.
            for m in meds:
                lines = list(c.execute(text(
                    "SELECT w.body FROM web_messages w JOIN users u ON u.telegram_id = w.chat_id "
                    "JOIN web_accounts a ON a.user_id = u.id WHERE a.phone = :p AND NOT w.mine"), {"p": m.phone}).scalars())
                for n in reminded:
                    assert sum(1 for b in lines if "⏰" in b and n in b) == 1, n
        # A long poll the killed replica held: the person asks the other replica from where they were.
        assert held.result() == "down"
        rest = people[1].transcript(held_since, replica=0)["messages"]
        assert any(m["mine"] and m["text"] == "我在" for m in rest)
        assert_searches_agree(cluster)
    finally:
        for r in replicas:
            r.stop()
        db.dispose()
