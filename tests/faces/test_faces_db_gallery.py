"""Galleries in the database (face_store=db): every replica keeps its own index in step from the
change sequence of ``face_embeddings`` — real model, real photos, PostgreSQL (HEHE_TEST_PG_URL)
and SQLite."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, select

from backend.core import migrate
from backend.faces.gallery import DIM, Gallery
from backend.faces.models import FaceEmbedding
from backend.faces.service import FaceService
from backend.faces.store import FaceStore
from tests.conftest import PG_URL, create_pg_database, drop_pg_database

from .conftest import STRANGER, identity_photos, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]

WAIT = 30.0  # seconds a replica may take to see another's change on a loaded CI machine (poll: 0.2 s)


def eventually(check, timeout: float = WAIT):
    """Poll ``check()`` until it is truthy; returns (its value, seconds waited)."""
    t0 = time.monotonic()
    while True:
        value = check()
        if value or time.monotonic() - t0 > timeout:
            return value, time.monotonic() - t0
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pg_url():
    if not PG_URL:
        pytest.skip("HEHE_TEST_PG_URL not set")
    url = create_pg_database()
    migrate.upgrade(url.replace("+asyncpg", "+psycopg2"))
    yield url
    drop_pg_database(url)


@pytest.fixture
def replica(make_service, tmp_path, pg_url):
    """replica(name) -> a loaded FaceService on its own data dir, all on one PostgreSQL database."""
    return lambda name: make_service(tmp_path / name, database_url=pg_url, face_sync_seconds=0.2)


def _found(svc, gallery, vec, person) -> bool:
    return any(m.person_id == person for m in svc.search_vector(gallery, vec, 5, min_score=svc.threshold))


def test_a_face_enrolled_on_one_replica_is_found_on_the_other_and_erasure_reaches_both(replica, embed, pg_url):
    a, b = replica("a"), replica("b")
    assert a.store is not None and b.store is not None  # PostgreSQL: the galleries are in the database
    photos = identity_photos()
    person, (first, second, *_) = next((p, ph) for p, ph in photos.items() if p != STRANGER and len(ph) >= 2)
    other = next(p for p in photos if p not in (person, STRANGER))
    a.enroll_vectors("missing", f"case-{person}", [embed(first)], ["0"])
    a.enroll_vectors("missing", f"case-{other}", [embed(photos[other][0])], ["0"])
    probe = embed(second)  # another photo of the same person
    assert _found(a, "missing", probe, f"case-{person}")  # the writing replica: at once

    seen, waited = eventually(lambda: _found(b, "missing", probe, f"case-{person}"))
    assert seen, f"replica b did not find the face enrolled on a within {WAIT} s"
    assert waited < WAIT

    assert b.erase(f"case-{person}") == 1
    assert not _found(b, "missing", probe, f"case-{person}")  # the erasing replica: at once
    gone, _ = eventually(lambda: not _found(a, "missing", probe, f"case-{person}"))
    assert gone, "replica a still finds the erased face"
    assert _found(a, "missing", embed(photos[other][0]), f"case-{other}")  # the others are untouched

    engine = create_engine(pg_url.replace("+asyncpg", "+psycopg2"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(FaceEmbedding.person_id, FaceEmbedding.vector, FaceEmbedding.deleted)
                                .where(FaceEmbedding.person_id == f"case-{person}")).all()
    finally:
        engine.dispose()
    assert rows == [(f"case-{person}", None, True)]  # a tombstone: the template itself is gone


def test_a_replica_restarted_on_its_cache_applies_what_changed_while_it_was_down(replica, embed, tmp_path):
    a, b = replica("a"), replica("b")
    photos = {p: ph for p, ph in identity_photos().items() if p != STRANGER}
    names = sorted(photos)[:3]
    for p in names:
        a.enroll_vectors("found", p, [embed(photos[p][0])], ["0"])
    eventually(lambda: len(b.gallery("found")) == 3)
    assert len(b.gallery("found")) == 3
    b.stop_polling()
    b.store.close()
    a.erase(names[0])  # while b is down
    a.enroll_vectors("found", "late", [embed(photos[names[1]][-1])], ["0"])

    b2 = replica("b")  # the same data dir: starts from its files, then reads the changes since
    g = b2.gallery("found")
    assert sorted(g.persons()) == sorted([*names[1:], "late"])
    assert g.seq == a.gallery("found").seq
    assert [m.person_id for m in b2.search_vector("found", embed(photos[names[0]][0]), 1,
                                                  min_score=b2.threshold)] == []


def test_a_process_without_the_galleries_loaded_erases_in_the_database(replica, embed, tmp_path, pg_url):
    a = replica("a")
    person, photos = next((p, ph) for p, ph in identity_photos().items() if p != STRANGER)
    a.enroll_vectors("missing", "case-1", [embed(photos[0])], ["0"])
    eraser = FaceService(make_settings(tmp_path / "cli", database_url=pg_url))  # e.g. `hehe faces delete`
    try:
        assert eraser.erase("case-1") == 1
        assert not (tmp_path / "cli" / "faces" / "missing").exists()  # it never copied the gallery
    finally:
        eraser.store.close()
    gone, _ = eventually(lambda: "case-1" not in a.gallery("missing"))
    assert gone


# ------------------------------------------------------------------ SQLite, gallery level
def together(*threads) -> None:
    """Start the threads, wait for all of them."""
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _unit(rng, n=1):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_on_sqlite_two_galleries_on_one_store_stay_in_step(tmp_path: Path):
    store = FaceStore(f"sqlite:///{tmp_path / 'faces.db'}", create_tables=True)
    try:
        a = Gallery("missing", tmp_path / "a", store=store).load()
        b = Gallery("missing", tmp_path / "b", store=store).load()
        rng = np.random.default_rng(7)
        v = _unit(rng, 3)
        assert a.add_many(["p1", "p1", "p2"], v, ["0", "1", "0"]) == ["0", "1", "0"]
        a.add_many(["p1"], v[:1], ["0"])  # the same photo again: nothing new
        assert store.count("missing") == 3
        assert b.pull() == 3 and b.search(v[1], 1)[0][0] == "p1"
        assert a.erase("p1") == 2 and store.count("missing") == 1
        assert b.search(v[1], 2)[0][0] == "p1"  # not yet applied on b...
        b.pull()
        assert [p for p, _ in b.search(v[1], 2)] == ["p2"]  # ...and then gone
        w = _unit(rng)
        a.add_many(["p1"], w, ["0"])  # photo "0" again after the erasure: another vector
        b.pull()
        assert b.search(w, 1)[0] == ("p1", pytest.approx(1.0, abs=1e-5))
        assert len(b) == len(a) == 2
    finally:
        store.close()


def test_a_cache_written_from_another_database_is_thrown_away(tmp_path: Path):
    rng = np.random.default_rng(8)
    one = FaceStore(f"sqlite:///{tmp_path / 'one.db'}", create_tables=True)
    two = FaceStore(f"sqlite:///{tmp_path / 'two.db'}", create_tables=True)
    try:
        Gallery("found", tmp_path / "x", store=one).load().add_many(["old"], _unit(rng), ["0"])
        two.append("found", ["new"], ["0"], _unit(rng))
        g = Gallery("found", tmp_path / "x", store=two).load()  # same files, another database
        assert g.persons() == ["new"]
    finally:
        one.close()
        two.close()


def test_a_file_gallery_of_an_earlier_version_is_imported_into_an_empty_database(tmp_path: Path):
    rng = np.random.default_rng(9)
    v = _unit(rng, 4)
    files = Gallery("missing", tmp_path / "data")
    files.add_many(["a", "b", "c", "d"], v, ["0", "0", "0", "0"])
    files.erase("c")
    files.close()
    store = FaceStore(f"sqlite:///{tmp_path / 'faces.db'}", create_tables=True)
    try:
        g = Gallery("missing", tmp_path / "data", store=store).load()
        assert sorted(g.persons()) == ["a", "b", "d"] and store.count("missing") == 3
        other = Gallery("missing", tmp_path / "other", store=store).load()
        assert other.search(v[3], 1)[0][0] == "d"
    finally:
        store.close()


def test_a_replica_reading_while_four_others_write_misses_no_change(pg_url, tmp_path: Path, caplog):
    """Writers commit concurrently; the change numbers become visible in order, so a reader
    polling all along ends with exactly the database's live rows (none skipped, none stale)."""
    import threading

    sync_url = pg_url.replace("+asyncpg", "+psycopg2")
    stores = [FaceStore(sync_url) for _ in range(5)]
    try:
        writers = [Gallery("stress", tmp_path / f"w{i}", store=stores[i]).load() for i in range(4)]
        reader = Gallery("stress", tmp_path / "r", store=stores[4]).load()
        done = threading.Event()
        errors: list[BaseException] = []

        def write(i: int) -> None:
            rng = np.random.default_rng(100 + i)
            try:
                for j in range(15):
                    writers[i].add_many([f"w{i}-{j}"] * 2, _unit(rng, 2), ["0", "1"])
                    if j % 4 == 1:
                        writers[i].erase(f"w{i}-{j - 1}")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def read() -> None:
            while not done.is_set():
                reader.pull()

        poller = threading.Thread(target=read)
        poller.start()
        together(*(threading.Thread(target=write, args=(i,)) for i in range(4)))
        done.set()
        poller.join()
        assert not errors
        reader.pull()
        assert not any("not of this database" in r.getMessage() for r in caplog.records)  # no reload from scratch
        engine = create_engine(sync_url)
        try:
            with engine.connect() as conn:
                live = {r[0] for r in conn.execute(select(FaceEmbedding.person_id).where(
                    FaceEmbedding.gallery == "stress", FaceEmbedding.deleted.is_(False)))}
        finally:
            engine.dispose()
        assert len(live) == 4 * (15 - 4)  # each writer erased 4 of its 15
        assert set(reader.persons()) == live
        assert len(reader) == 2 * len(live)
    finally:
        for s in stores:
            s.close()


def test_two_processes_sharing_one_cache_folder_stay_right(tmp_path: Path):
    """Replicas on one data volume share data/faces: both write, both end with the database's rows."""
    import threading

    store = FaceStore(f"sqlite:///{tmp_path / 'faces.db'}", create_tables=True)
    try:
        a = Gallery("missing", tmp_path / "shared", store=store).load()
        b = Gallery("missing", tmp_path / "shared", store=store).load()

        def write(g, tag: str, seed: int) -> None:
            rng = np.random.default_rng(seed)
            for i in range(20):
                g.add_many([f"{tag}{i}"] * 2, _unit(rng, 2), ["0", "1"])
                if i % 5 == 0:
                    g.erase(f"{tag}{i}")

        together(threading.Thread(target=write, args=(a, "a", 1)), threading.Thread(target=write, args=(b, "b", 2)))
        a.pull()
        b.pull()
        expected = {f"{tag}{i}" for tag in "ab" for i in range(20) if i % 5}
        assert set(a.persons()) == set(b.persons()) == expected
        assert len(a) == len(b) == store.count("missing") == 2 * len(expected)
        fresh = Gallery("missing", tmp_path / "fresh", store=store).load()
        assert set(fresh.persons()) == expected
    finally:
        store.close()
