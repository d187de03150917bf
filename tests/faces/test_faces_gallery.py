"""Gallery: enrol/search with the real photos, persistence, deletion, HNSW path."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.faces.errors import UnknownGallery
from backend.faces.gallery import DIM, Gallery, HnswParams, normalize_rows

from .conftest import IDENTITIES, STRANGER, identity_photos

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*estimate. is deprecated:FutureWarning")]

# Whatever face_review_threshold is configured (0.35 recommended in docs/faces.md, 0.40 the
# original default), these photos must clear both: true matches ≥ 0.40, strangers < 0.35.
MATCH_FLOOR, STRANGER_CEILING = 0.40, 0.35


def _enrol_identities(svc, embed, gallery="missing"):
    for person, photos in identity_photos().items():
        if person != STRANGER:
            svc.enroll_vectors(gallery, person, [embed(photos[0])], [photos[0].name])


def _probes():
    return [(person, p) for person, photos in identity_photos().items() if person != STRANGER for p in photos[1:]]


def test_enrol_first_photo_then_find_every_other(make_service, embed, faces_data):
    svc = make_service()
    for person, photos in identity_photos().items():
        if person != STRANGER:
            ids = svc.enroll("missing", person, [photos[0].read_bytes()])
            assert len(ids) == 1
    assert len(_probes()) == 9
    for person, probe in _probes():
        res = svc.search("missing", probe.read_bytes(), k=3)
        assert res[0].person_id == person, (probe, res)
        assert res[0].score >= max(svc.threshold, MATCH_FLOOR), (probe, res)
        assert all(m.score < min(svc.threshold, STRANGER_CEILING) for m in res[1:]), (probe, res)


def test_stranger_has_no_candidate(make_service, embed, faces_data):
    svc = make_service()
    _enrol_identities(svc, embed)
    probe = IDENTITIES / STRANGER / "1.png"
    res = svc.search("missing", probe.read_bytes(), k=5)
    assert len(res) == 5 and res[0].score < min(svc.threshold, STRANGER_CEILING)
    assert svc.search("missing", probe.read_bytes(), k=5, min_score=svc.threshold) == []


def test_enrol_is_all_or_nothing_and_idempotent(make_service, faces_data):
    from backend.faces.errors import NoFace

    svc = make_service()
    good = (IDENTITIES / "obama" / "1.jpg").read_bytes()
    bad = (faces_data / "bad" / "noface_gradient.jpg").read_bytes()
    with pytest.raises(NoFace) as ei:
        svc.enroll("missing", "p1", [good, bad])
    assert ei.value.image_index == 1 and ei.value.params["image"] == 2
    assert len(svc.gallery("missing")) == 0
    a = svc.enroll("missing", "p1", [good])
    b = svc.enroll("missing", "p1", [good])  # same photo again: no duplicate
    assert a == b and len(svc.gallery("missing")) == 1
    with pytest.raises(UnknownGallery):
        svc.gallery("../etc")


def _bytes_on_disk(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("hnsw_threshold", [20000, 2], ids=["exact", "hnsw"])
def test_deleted_person_never_found_again(make_service, embed, tmp_path, hnsw_threshold):
    svc = make_service(face_hnsw_threshold=hnsw_threshold)
    _enrol_identities(svc, embed)
    obama = [embed(p) for p in identity_photos()["obama"]]
    svc.enroll_vectors("missing", "obama", obama[1:2], ["2.jpg"])  # two vectors for obama
    svc.enroll_vectors("found", "obama", obama[2:3], ["3.jpg"])  # and one in the other gallery
    probe = obama[3]
    assert svc.search_vector("missing", probe, k=1)[0].person_id == "obama"
    if hnsw_threshold == 2:
        assert svc.gallery("missing").wait_for_index(60)  # built in the background
        assert svc.search_vector("missing", probe, k=1)[0].person_id == "obama"
    svc.flush()
    stored = [normalize_rows(v).tobytes()[:64] for v in obama[:3]]
    disk = _bytes_on_disk(svc.settings.faces_dir)
    assert all(b in disk for b in stored)  # the check below can see them

    assert svc.delete("obama") == 3
    for g in ("missing", "found"):
        assert all(m.person_id != "obama" for m in svc.search_vector(g, probe, k=10))
        assert "obama" not in svc.gallery(g)
    # nothing of obama left in any file of the gallery folder (vectors, records, HNSW index)
    disk = _bytes_on_disk(svc.settings.faces_dir)
    assert b"obama" not in disk
    assert not any(b in disk for b in stored)

    # after a restart the person is still gone and the others still found
    again = make_service(data_dir=svc.settings.data_dir, face_hnsw_threshold=hnsw_threshold)
    for g in ("missing", "found"):
        assert all(m.person_id != "obama" for m in again.search_vector(g, probe, k=10))
    assert again.search_vector("missing", embed(identity_photos()["biden"][1]), k=1)[0].person_id == "biden"
    assert svc.delete("obama") == 0


def test_hnsw_gives_the_same_top_result_as_exact(make_service, embed, faces_data):
    svc = make_service(face_hnsw_threshold=3)
    _enrol_identities(svc, embed)
    g = svc.gallery("missing")
    g.search(embed(_probes()[0][1]), 1)  # starts the background build
    assert g.wait_for_index(60)
    for person, probe in _probes():
        approx = g.search(embed(probe), k=3)
        exact = g.exact_search(embed(probe), k=3)
        assert g._index is not None
        assert approx[0][0] == exact[0][0] == person
        assert approx[0][1] == pytest.approx(exact[0][1], abs=1e-4)


def _clustered(n_people: int, per: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_people, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vecs = np.repeat(centers, per, axis=0) + 0.04 * rng.standard_normal((n_people * per, DIM)).astype(np.float32)
    persons = [f"p{i}" for i in range(n_people) for _ in range(per)]
    return centers, vecs, persons


def test_hnsw_persisted_incremental_and_matches_exact(tmp_path):
    centers, vecs, persons = _clustered(1500, 2)
    g = Gallery("found", tmp_path, hnsw_threshold=1000, hnsw=HnswParams(M=16, ef_construction=100)).load()
    g.add_many(persons[:2000], vecs[:2000])
    assert g.search(centers[0], 5)[0][0] == "p0"  # first search builds the index (and saves it)
    assert g.last_build_seconds is not None
    g.add_many(persons[2000:], vecs[2000:])  # incremental
    queries = range(0, 1500, 37)
    agree = sum(g.search(centers[i], 1)[0][0] == g.exact_search(centers[i], 1)[0][0] == f"p{i}" for i in queries)
    assert agree == len(queries)
    res = g.search(centers[5], 5)
    assert len({p for p, _ in res}) == 5  # best score per person, no duplicates
    g.close()

    again = Gallery("found", tmp_path, hnsw_threshold=1000).load()
    assert again._index is not None and again.last_build_seconds is None  # loaded, not rebuilt
    assert len(again) == 3000
    assert again.search(centers[1400], 1)[0][0] == "p1400"  # rows added after the save are in it
    assert again.delete("p1400") == 2
    assert again.search(centers[1400], 1)[0][0] != "p1400"
    third = Gallery("found", tmp_path, hnsw_threshold=1000).load()
    assert all(p != "p1400" for p, _ in third.search(centers[1400], 20))
    assert sorted(f.name for f in tmp_path.joinpath("found").iterdir() if f.name != ".lock") == [
        "hnsw.1.1.bin", "records.1.jsonl", "state.json", "vectors.1.f32"]


def test_below_threshold_after_delete_drops_the_index(tmp_path):
    centers, vecs, persons = _clustered(6, 1)
    g = Gallery("missing", tmp_path, hnsw_threshold=5).load()
    g.add_many(persons, vecs)
    g.search(centers[0], 1)
    assert g._index is not None
    g.delete("p0")
    assert g._index is None and not list(tmp_path.joinpath("missing").glob("hnsw*"))
    assert g.search(centers[1], 1)[0][0] == "p1"


def test_torn_append_and_leftovers_are_repaired(tmp_path):
    centers, vecs, persons = _clustered(4, 1)
    g = Gallery("missing", tmp_path).load()
    g.add_many(persons, vecs)
    d = tmp_path / "missing"
    with open(d / "vectors.0.f32", "ab") as fh:
        fh.write(b"\1" * 1000)  # half a row
    with open(d / "records.0.jsonl", "ab") as fh:
        fh.write(b'{"l": 99, "p": "ghost"')  # no newline
    (d / "vectors.7.f32").write_bytes(b"old generation")  # e.g. a crash during delete
    g2 = Gallery("missing", tmp_path).load()
    assert len(g2) == 4 and "ghost" not in g2
    assert not (d / "vectors.7.f32").exists()
    assert (d / "vectors.0.f32").stat().st_size == 4 * DIM * 4
    g2.add("p9", centers[0] * -1)
    assert Gallery("missing", tmp_path).load().search(-centers[0], 1)[0][0] == "p9"


def test_corrupt_record_in_the_middle_is_not_silently_dropped(tmp_path):
    centers, vecs, persons = _clustered(3, 1)
    Gallery("missing", tmp_path).load().add_many(persons, vecs)
    rec = tmp_path / "missing" / "records.0.jsonl"
    lines = rec.read_bytes().splitlines(keepends=True)
    rec.write_bytes(lines[0] + b"garbage\n" + lines[2])
    with pytest.raises(RuntimeError, match="corrupt record"):
        Gallery("missing", tmp_path).load()


def test_concurrent_adds_searches_and_deletes(tmp_path):
    centers, vecs, persons = _clustered(200, 2)
    g = Gallery("found", tmp_path, hnsw_threshold=150).load()
    errors = []

    def writer(lo, hi):
        try:
            for i in range(lo, hi):
                g.add(persons[i], vecs[i])
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def reader():
        try:
            for i in range(60):
                g.search(centers[i], 3)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def deleter():
        try:
            for i in range(150, 160):
                g.delete(f"p{i}")
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(0, 200)), threading.Thread(target=writer, args=(200, 400)),
               threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = threading.Thread(target=deleter)
    t.start()
    reader()
    t.join()
    assert not errors
    assert len(g) == 400 - 20
    assert Gallery("found", tmp_path, hnsw_threshold=150).load().search(centers[10], 1)[0][0] == "p10"


def test_invalid_inputs(tmp_path):
    with pytest.raises(ValueError):
        Gallery("../x", tmp_path)
    g = Gallery("missing", tmp_path).load()
    with pytest.raises(ValueError):
        g.add("p", np.zeros(DIM))
    with pytest.raises(ValueError):
        g.add("p", np.ones(10))
    with pytest.raises(ValueError):
        g.add("", np.ones(DIM))
    assert g.search(np.ones(DIM), 3) == []


def test_background_build_keeps_answering_and_reconciles(tmp_path, monkeypatch):
    centers, vecs, persons = _clustered(300, 1)
    g = Gallery("found", tmp_path, hnsw_threshold=200, background_build=True,
                hnsw=HnswParams(M=16, ef_construction=64)).load()
    g.add_many(persons[:250], vecs[:250])
    started, proceed = threading.Event(), threading.Event()
    real_new_index = g._new_index

    def slow_new_index(capacity):
        started.set()
        assert proceed.wait(30)
        return real_new_index(capacity)

    monkeypatch.setattr(g, "_new_index", slow_new_index)
    assert g.search(centers[3], 1)[0][0] == "p3"  # exact answer, build started
    assert started.wait(30) and g._index is None
    # while the index builds: answers stay exact, adds and deletes go through
    assert g.search(centers[7], 1)[0][0] == "p7"
    assert g.delete("p7") == 1
    g.add_many(persons[250:], vecs[250:])
    stored7 = normalize_rows(vecs[7]).tobytes()[:64]
    stored8 = normalize_rows(vecs[8]).tobytes()[:64]
    proceed.set()
    assert g.wait_for_index(60)
    assert g.search(centers[280], 1)[0][0] == "p280"  # added during the build
    assert all(p != "p7" for p, _ in g.search(centers[7], 20))  # deleted during the build
    hnsw_file = next(tmp_path.joinpath("found").glob("hnsw.*.bin")).read_bytes()
    assert stored8 in hnsw_file and stored7 not in hnsw_file
    again = Gallery("found", tmp_path, hnsw_threshold=200).load()
    assert again._index is not None and all(p != "p7" for p, _ in again.search(centers[7], 20))


def test_two_processes_share_a_gallery_folder(tmp_path):
    """A second instance on the same folder (the CLI while the server runs) sees and
    is seen: deletions made elsewhere are honoured at the next call, not at restart."""
    centers, vecs, persons = _clustered(40, 1)
    server = Gallery("missing", tmp_path, hnsw_threshold=30, hnsw=HnswParams(M=16, ef_construction=64)).load()
    server.add_many(persons[:35], vecs[:35])
    assert server.search(centers[1], 1)[0][0] == "p1"  # builds the index (synchronously here)
    cli = Gallery("missing", tmp_path, hnsw_threshold=30).load()
    assert cli._index is not None and len(cli) == 35
    assert cli.delete("p1") == 1
    cli.add("p36", vecs[36])
    assert all(p != "p1" for p, _ in server.search(centers[1], 10))
    assert server.search(centers[36], 1)[0][0] == "p36"
    server.add("p37", vecs[37])  # written into the current generation, not the deleted one
    assert cli.search(centers[37], 1)[0][0] == "p37"
    server.close()
    fresh = Gallery("missing", tmp_path, hnsw_threshold=30).load()
    assert len(fresh) == 36 and "p1" not in fresh and "p37" in fresh


def test_cli_delete_in_another_process_reaches_the_running_service(make_service, embed, tmp_path):
    svc = make_service()
    _enrol_identities(svc, embed)
    probe = embed(identity_photos()["biden"][1])
    assert svc.search_vector("missing", probe, k=1)[0].person_id == "biden"
    env = dict(os.environ, HEHE_DATA_DIR=str(svc.settings.data_dir), HEHE_DEFAULT_LANGUAGE="en")
    r = subprocess.run([sys.executable, "-m", "backend.faces.cli", "delete", "--person-id", "biden"],
                       cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Deleted 1" in r.stdout
    assert all(m.person_id != "biden" for m in svc.search_vector("missing", probe, k=10))
