"""Several replicas on one PostgreSQL database (issue #19): throughput with 1 and 2 replicas
side by side — an API read, and web-chat steps (a signed-in person's message through the bot,
written to the database and answered) — and the failover times: SIGKILL the leader → another
replica leads; SIGKILL the replica holding a person's long poll → the other replica answers the
person's next poll with a line written after the kill.

    HEHE_TEST_PG_URL=postgresql+asyncpg://postgres:...@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/replicas.py [--seconds 15] [--clients 8]

Each replica is a real ``hehe serve`` (models off) with its own data dir, on a fresh database.
The loads: ``clients`` threads send ``GET /open311/v2/requests.json`` (a public read that goes
to the database), then ``clients`` signed-in people send ``帮助`` in the web chat and read their
transcript, round-robin over the replicas for ``seconds`` each. Figures depend on the machine's
cores: replicas scale only where there are cores to run them (docs/deploy.md).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import create_pg_database, drop_pg_database  # noqa: E402
from tests.replicas.cluster import Cluster, Down, Person, Replica, leaders  # noqa: E402

PATH = "/open311/v2/requests.json"


def run_for(seconds: float, steps: list[Callable[[], bool]]) -> tuple[float, int]:
    """Each of ``steps`` in a thread of its own, again and again for ``seconds``: successful
    steps per second over all threads, and the failed steps."""
    lock = threading.Lock()
    done = [0, 0]
    end = time.monotonic() + seconds

    def loop(step: Callable[[], bool]) -> None:
        while time.monotonic() < end:
            ok = step()
            with lock:
                done[0 if ok else 1] += 1

    threads = [threading.Thread(target=loop, args=(step,)) for step in steps]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - t0), done[1]


def load(replicas: list[Replica], seconds: float, clients: int) -> tuple[float, int]:
    """API requests per second over all replicas, and the failed requests."""
    targets = itertools.cycle([r.base + PATH for r in replicas])
    lock = threading.Lock()

    def read() -> bool:
        with lock:
            url = next(targets)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                r.read()
                return r.status == 200
        except OSError:
            return False

    return run_for(seconds, [read] * clients)


def chat_load(people: list[Person], seconds: float) -> tuple[float, int]:
    """Web-chat steps per second (send ``帮助``, then read the transcript), and failed steps."""

    def step(p: Person) -> bool:
        try:
            p.say("帮助")
            p.transcript(p.last)
            return True
        except (Down, AssertionError):
            return False

    return run_for(seconds, [functools.partial(step, p) for p in people])


def poll_failover(cluster: Cluster, p: Person, victim: int, survivor: int) -> float:
    """SIGKILL the replica holding ``p``'s long poll; seconds until ``p`` sees, from the other
    replica, a line written right after the kill (reconnect included)."""
    since = p.transcript(replica=victim)["last"]
    got: list[float] = []

    def poll() -> None:
        try:
            p.request("GET", "/chat/api/messages", replica=victim, params={"since": since, "wait": 25})
        except Down:
            pass
        while True:  # the browser polls again, reaching the survivor
            shown = p.request("GET", "/chat/api/messages", replica=survivor, params={"since": since, "wait": 25})
            if any(m["mine"] and m["text"] == "还在吗" for m in shown.json()["messages"]):
                got.append(time.monotonic())
                return

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1)
    cluster.live.discard(victim)
    cluster.replicas[victim].kill()
    killed = time.monotonic()
    p.request("POST", "/chat/api/send", replica=survivor, json={"text": "还在吗"})
    t.join(60)
    return got[0] - killed if got else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    if not os.environ.get("HEHE_TEST_PG_URL"):
        sys.exit("set HEHE_TEST_PG_URL to a PostgreSQL server (a fresh database is created and dropped)")
    url = create_pg_database()
    work = Path(tempfile.mkdtemp(prefix="hehe-replicas-"))
    env = dict(HEHE_API_TOKEN_SECRET="bench-secret-shared-by-every-replica-0123", HEHE_SMS_PROVIDER="console",
               HEHE_DEMO="false", HEHE_THROTTLE_PER_MINUTE="100000")
    replicas = [Replica(work, url, f"r{i}", data_dir=work / "data", **env) for i in range(3)]
    try:
        replicas[0].start(timeout=300)
        replicas[1].start(timeout=300)
        one, fail1 = load(replicas[:1], args.seconds, args.clients)
        two, fail2 = load(replicas[:2], args.seconds, args.clients)
        cluster = Cluster(replicas[:2])
        people = [Person(cluster, i, f"1390000{i:04d}", f"居民{i}") for i in range(args.clients)]
        for p in people:
            p.sign_in()
        cluster.live = {0}
        chat1, cfail1 = chat_load(people, args.seconds)
        cluster.live = {0, 1}
        chat2, cfail2 = chat_load(people, args.seconds)
        polled = poll_failover(cluster, people[0], victim=1, survivor=0)
        replicas[2].start(timeout=300)
        leader = leaders(replicas)[0]
        leader.kill()
        t0 = time.monotonic()
        while not leaders(replicas):
            if time.monotonic() - t0 > 60:
                break
            time.sleep(0.1)
        failover = time.monotonic() - t0
        print(f"cores: {os.cpu_count()}  clients: {args.clients}  seconds: {args.seconds:g}")
        print(f"{'replicas':>9} {'API req/s':>10} {'failed':>7} {'chat steps/s':>13} {'failed':>7}")
        print(f"{1:>9} {one:>10.1f} {fail1:>7} {chat1:>13.1f} {cfail1:>7}")
        print(f"{2:>9} {two:>10.1f} {fail2:>7} {chat2:>13.1f} {cfail2:>7}")
        print("  API: GET " + PATH + "; chat step: POST /chat/api/send 帮助 + GET /chat/api/messages")
        print(f"failover, long poll (SIGKILL its replica → the other answers with a newer line): {polled:.2f} s")
        print(f"failover, leader (SIGKILL the leader of 3 → a new leader): {failover:.1f} s")
    finally:
        for r in replicas:
            r.stop()
        drop_pg_database(url)


if __name__ == "__main__":
    main()
