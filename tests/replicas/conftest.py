from __future__ import annotations

import pytest

from tests.conftest import PG_URL, create_pg_database, drop_pg_database


def _fresh_database():
    if not PG_URL:
        pytest.skip("HEHE_TEST_PG_URL not set")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for the replicas of one test."""
    yield from _fresh_database()


@pytest.fixture(scope="module")
def pg_url_module():
    """A fresh PostgreSQL database for the replicas of one test module."""
    yield from _fresh_database()


@pytest.fixture
def cluster(tmp_path, pg_url):
    """``cluster(n)``: n ``hehe serve`` replicas (not started) on ``pg_url``; all stopped at the end."""
    from tests.replicas.cluster import Replica

    made: list[Replica] = []

    def make(n: int) -> list[Replica]:
        made.extend(Replica(tmp_path, pg_url, f"r{len(made) + i}") for i in range(n))
        return made[-n:]

    try:
        yield make
    finally:
        for r in made:
            r.stop()
