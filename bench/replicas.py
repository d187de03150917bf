"""Several replicas on one PostgreSQL database (issue #19): request throughput with 1 and 2
replicas side by side, and the failover time (SIGKILL the leader → another replica leads).

    HEHE_TEST_PG_URL=postgresql+asyncpg://postgres:...@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/replicas.py [--seconds 15] [--clients 8]

Each replica is a real ``hehe serve`` (models off) with its own data dir, on a fresh database.
The load: ``clients`` threads send ``GET /open311/v2/requests.json`` (a public read that goes to
the database) round-robin over the replicas for ``seconds``. Figures depend on the machine's
cores: replicas scale only where there are cores to run them (docs/deploy.md).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import create_pg_database, drop_pg_database  # noqa: E402
from tests.replicas.cluster import Replica, leaders  # noqa: E402

PATH = "/open311/v2/requests.json"


def load(replicas: list[Replica], seconds: float, clients: int) -> tuple[float, int]:
    """Requests per second over all replicas, and the failed requests."""
    targets = itertools.cycle([r.base + PATH for r in replicas])
    lock = threading.Lock()
    done = [0, 0]
    end = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < end:
            with lock:
                url = next(targets)
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            with lock:
                done[0 if ok else 1] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - t0), done[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    if not os.environ.get("HEHE_TEST_PG_URL"):
        sys.exit("set HEHE_TEST_PG_URL to a PostgreSQL server (a fresh database is created and dropped)")
    url = create_pg_database()
    work = Path(tempfile.mkdtemp(prefix="hehe-replicas-"))
    replicas = [Replica(work, url, f"r{i}") for i in range(3)]
    try:
        replicas[0].start()
        replicas[1].start()
        one, fail1 = load(replicas[:1], args.seconds, args.clients)
        two, fail2 = load(replicas[:2], args.seconds, args.clients)
        replicas[2].start()
        leader = leaders(replicas)[0]
        leader.kill()
        t0 = time.monotonic()
        while not leaders(replicas):
            if time.monotonic() - t0 > 60:
                break
            time.sleep(0.1)
        failover = time.monotonic() - t0
        print(f"cores: {os.cpu_count()}  clients: {args.clients}  seconds: {args.seconds:g}  load: GET {PATH}")
        print(f"{'replicas':>9} {'req/s':>9} {'failed':>7}")
        print(f"{1:>9} {one:>9.1f} {fail1:>7}")
        print(f"{2:>9} {two:>9.1f} {fail2:>7}")
        print(f"failover (SIGKILL the leader of 3 → a new leader): {failover:.1f} s")
    finally:
        for r in replicas:
            r.stop()
        drop_pg_database(url)


if __name__ == "__main__":
    main()
