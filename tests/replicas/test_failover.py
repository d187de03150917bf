"""Three real ``hehe serve`` replicas on one PostgreSQL database: one leads, and when it is
SIGKILLed another leads within 30 s; the cron jobs stay one set, held by the leader only."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from tests.replicas.cluster import leaders

pytestmark = pytest.mark.postgres


def stored_jobs(url: str) -> list[str]:
    engine = create_engine(url.replace("+asyncpg", "+psycopg2"))
    try:
        with engine.connect() as c:
            return sorted(c.execute(text("SELECT id FROM apscheduler_jobs")).scalars())
    finally:
        engine.dispose()


def test_when_the_leader_of_three_replicas_is_killed_another_leads_within_30_seconds(cluster, pg_url):
    replicas = cluster(3)
    for r in replicas:  # one after the other: the first migrates and seeds
        r.start()
    first = leaders(replicas)
    assert len(first) == 1
    assert stored_jobs(pg_url) == ["disputes-digest", "sup-monthly-digest", "sup-weekly-digest"]

    first[0].kill()
    killed_at = time.monotonic()
    while not leaders(replicas):
        assert time.monotonic() - killed_at < 30, "no new leader within 30 s"
        time.sleep(0.2)
    took = time.monotonic() - killed_at
    new = leaders(replicas)
    assert len(new) == 1 and new[0] is not first[0], took
    time.sleep(4)  # the other follower keeps trying and keeps following
    assert leaders(replicas) == new
    # The new leader took over the same cron jobs (no second set of digests).
    assert stored_jobs(pg_url) == ["disputes-digest", "sup-monthly-digest", "sup-weekly-digest"]
    assert all(r.ready() is not None for r in replicas if r is not first[0])


def test_two_replicas_starting_together_on_a_new_database_seed_the_places_once(cluster, pg_url):
    import threading

    replicas = cluster(2)
    threads = [threading.Thread(target=r.start) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ready() is not None for r in replicas)
    engine = create_engine(pg_url.replace("+asyncpg", "+psycopg2"))
    with engine.connect() as c:
        total, distinct = c.execute(text(
            "SELECT count(*), count(DISTINCT (coalesce(parent_id, 0), name)) FROM jurisdictions")).one()
    engine.dispose()
    assert total > 100
    assert total == distinct
