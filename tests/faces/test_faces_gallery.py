"""Gallery: enrol/search with the real photos, persistence, deletion, the compressed index."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from backend.faces.errors import UnknownGallery
from backend.faces.gallery import DIM, Gallery, IndexParams, index_slots, normalize_rows

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


def _saved_index(folder: Path):
    files = list(folder.glob("pq.*.faiss"))
    assert len(files) == 1, files
    return faiss.read_index(str(files[0]))


def _holds_code(slots: np.ndarray, code: np.ndarray) -> bool:
    return bool((slots == code).all(axis=1).any())


@pytest.mark.parametrize("index_threshold", [20000, 2], ids=["exact", "index"])
def test_deleted_person_never_found_again(make_service, embed, tmp_path, index_threshold):
    svc = make_service(face_index_threshold=index_threshold)
    _enrol_identities(svc, embed)
    obama = [embed(p) for p in identity_photos()["obama"]]
    svc.enroll_vectors("missing", "obama", obama[1:2], ["2.jpg"])  # two vectors for obama
    svc.enroll_vectors("found", "obama", obama[2:3], ["3.jpg"])  # and one in the other gallery
    probe = obama[3]
    assert svc.search_vector("missing", probe, k=1)[0].person_id == "obama"
    codes = None
    if index_threshold == 2:
        g = svc.gallery("missing")
        assert g.wait_for_index(60)  # built in the background
        assert svc.search_vector("missing", probe, k=1)[0].person_id == "obama"
        codes = g._index.sa_encode(normalize_rows(obama[:2]))  # obama's two rows, as the index stores them
    svc.flush()
    stored = [normalize_rows(v).tobytes()[:64] for v in obama[:3]]
    disk = _bytes_on_disk(svc.settings.faces_dir)
    assert all(b in disk for b in stored)  # the check below can see them
    if codes is not None:
        slots = index_slots(_saved_index(svc.settings.faces_dir / "missing"))
        assert all(_holds_code(slots, c) for c in codes)

    assert svc.delete("obama") == 3
    for g in ("missing", "found"):
        assert all(m.person_id != "obama" for m in svc.search_vector(g, probe, k=10))
        assert "obama" not in svc.gallery(g)
    # nothing of obama left in any file of the gallery folder (vectors, records, index)
    disk = _bytes_on_disk(svc.settings.faces_dir)
    assert b"obama" not in disk
    assert not any(b in disk for b in stored)
    if codes is not None:
        assert svc.gallery("missing")._index is not None
        for slots in (index_slots(svc.gallery("missing")._index),
                      index_slots(_saved_index(svc.settings.faces_dir / "missing"))):
            assert not any(_holds_code(slots, c) for c in codes)

    # after a restart the person is still gone and the others still found
    again = make_service(data_dir=svc.settings.data_dir, face_index_threshold=index_threshold)
    for g in ("missing", "found"):
        assert all(m.person_id != "obama" for m in again.search_vector(g, probe, k=10))
    assert again.search_vector("missing", embed(identity_photos()["biden"][1]), k=1)[0].person_id == "biden"
    assert svc.delete("obama") == 0


def test_index_gives_the_same_top_result_as_exact(make_service, embed, faces_data):
    svc = make_service(face_index_threshold=3)
    _enrol_identities(svc, embed)
    g = svc.gallery("missing")
    g.params = IndexParams(shortlist=4)  # shortlist < rows: the compressed scan really chooses
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


def _face_like(n: int, seed: int = 0) -> np.ndarray:
    """Like bench/faces.py FaceLike: 32-d latent structure + isotropic noise, impostor cosine std ≈ 0.07."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((DIM, 32)).astype(np.float32)
    z = normalize_rows(rng.standard_normal((n, 32)).astype(np.float32) @ W.T)
    return normalize_rows(0.6 * z + 0.8 * normalize_rows(rng.standard_normal((n, DIM))))


def test_index_recall_against_exact_on_face_like_vectors(tmp_path):
    n = 6000
    G = _face_like(n)
    g = Gallery("found", tmp_path, index_threshold=1000, params=IndexParams(shortlist=600)).load()
    g.add_many([f"p{i}" for i in range(n)], G)
    rng = np.random.default_rng(1)
    qi = rng.choice(n, 40, replace=False)
    noise = normalize_rows(rng.standard_normal((40, DIM)))
    noise = normalize_rows(noise - (noise * G[qi]).sum(1, keepdims=True) * G[qi])
    Q = normalize_rows(0.6 * G[qi] + 0.8 * noise)  # another "photo" at cosine 0.6
    recall, first = [], 0
    for i, q in zip(qi, Q):
        got = g.search(q, 10)
        exact = g.exact_search(q, 10)
        assert g._index is not None
        recall.append(len({p for p, _ in got} & {p for p, _ in exact}) / 10)
        first += got[0][0] == f"p{i}"
        common = dict(exact)
        assert all(s == pytest.approx(common[p], abs=1e-5) for p, s in got if p in common)  # exact scores
    assert first == 40
    assert np.mean(recall) >= 0.97, np.mean(recall)


def test_index_persisted_incremental_and_matches_exact(tmp_path):
    centers, vecs, persons = _clustered(1500, 2)
    params = IndexParams(shortlist=200)
    g = Gallery("found", tmp_path, index_threshold=1000, params=params).load()
    g.add_many(persons[:2000], vecs[:2000])
    assert g.search(centers[0], 5)[0][0] == "p0"  # first search builds the index (and saves it)
    assert g.last_build_seconds is not None and g._index.ntotal == 2000
    g.add_many(persons[2000:2600], vecs[2000:2600])  # incremental, not saved yet
    assert g._index.ntotal == 2600
    queries = range(0, 1300, 37)
    agree = sum(g.search(centers[i], 1)[0][0] == g.exact_search(centers[i], 1)[0][0] == f"p{i}" for i in queries)
    assert agree == len(queries)
    res = g.search(centers[5], 5)
    assert len({p for p, _ in res}) == 5  # best score per person, no duplicates

    # another instance loads the saved index (2000 rows) and encodes the 600 rows appended since
    again = Gallery("found", tmp_path, index_threshold=1000, params=params).load()
    assert again._index is not None and again.last_build_seconds is None  # loaded, not rebuilt
    assert again._index.ntotal == len(again) == 2600
    assert again.search(centers[1250], 1)[0][0] == "p1250"
    again.add_many(persons[2600:], vecs[2600:])
    assert again.search(centers[1400], 1)[0][0] == "p1400"
    again.close()
    assert _saved_index(tmp_path / "found").ntotal == 3000
    assert again.delete("p1400") == 2
    assert again.search(centers[1400], 1)[0][0] != "p1400"
    third = Gallery("found", tmp_path, index_threshold=1000, params=params).load()
    assert third._index is not None and third._index.ntotal == 2998
    assert all(p != "p1400" for p, _ in third.search(centers[1400], 20))
    assert third.search(centers[1401], 1)[0][0] == "p1401"  # rows after the deleted ones line up
    assert sorted(f.name for f in tmp_path.joinpath("found").iterdir() if f.name != ".lock") == [
        "pq.1.1.faiss", "records.1.jsonl", "state.json", "vectors.1.f32"]


def test_deleting_the_last_rows_leaves_no_code_in_the_block_padding(tmp_path):
    """faiss' remove_ids leaves the former last code in the padding of the last 32-slot block."""
    centers, vecs, persons = _clustered(45, 1)
    g = Gallery("found", tmp_path, index_threshold=10, params=IndexParams(shortlist=8)).load()
    g.add_many(persons, vecs)
    g.build_index()
    codes = g._index.sa_encode(normalize_rows(vecs))
    slots = index_slots(g._index)
    assert len(slots) == 64 and all(_holds_code(slots, c) for c in codes)
    for i in (44, 20):  # the last row, then one in the middle
        assert g.delete(f"p{i}") == 1
        for slots in (index_slots(g._index), index_slots(_saved_index(tmp_path / "found"))):
            assert not _holds_code(slots, codes[i])
            assert all(_holds_code(slots, codes[j]) for j in (0, 21, 43))
        assert all(p != f"p{i}" for p, _ in g.search(centers[i], 20))
    assert g.search(centers[43], 1)[0][0] == "p43"


def test_corrupt_or_mismatched_index_file_is_rebuilt(tmp_path):
    centers, vecs, persons = _clustered(60, 1)
    g = Gallery("found", tmp_path, index_threshold=40).load()
    g.add_many(persons, vecs)
    g.build_index()
    d = tmp_path / "found"
    (next(d.glob("pq.*.faiss"))).write_bytes(b"not an index")
    g2 = Gallery("found", tmp_path, index_threshold=40).load()
    assert g2._index is None and not list(d.glob("pq.*")) and json.loads((d / "state.json").read_text())["index"] is None
    assert g2.search(centers[5], 1)[0][0] == "p5" and g2._index is not None  # rebuilt
    g3 = Gallery("found", tmp_path, index_threshold=40, params=IndexParams(M=64)).load()  # other parameters
    assert g3._index is None and g3.search(centers[6], 1)[0][0] == "p6" and g3._index.M == 64


def test_files_of_the_former_hnsw_index_are_removed(tmp_path):
    centers, vecs, persons = _clustered(3, 1)
    g = Gallery("missing", tmp_path).load()
    g.add_many(persons, vecs)
    d = tmp_path / "missing"
    state = json.loads((d / "state.json").read_text())
    state.pop("index")
    state["hnsw"] = {"file": "hnsw.0.1.bin", "upto_label": 3, "elements": 3, "M": 32, "ef_construction": 200}
    (d / "state.json").write_text(json.dumps(state))
    (d / "hnsw.0.1.bin").write_bytes(normalize_rows(vecs).tobytes())
    g2 = Gallery("missing", tmp_path).load()
    assert not (d / "hnsw.0.1.bin").exists()
    assert "hnsw" not in json.loads((d / "state.json").read_text())
    assert g2.search(centers[2], 1)[0][0] == "p2"


def test_below_threshold_after_delete_drops_the_index(tmp_path):
    centers, vecs, persons = _clustered(6, 1)
    g = Gallery("missing", tmp_path, index_threshold=5).load()
    g.add_many(persons, vecs)
    g.search(centers[0], 1)
    assert g._index is not None and list(tmp_path.joinpath("missing").glob("pq.*"))
    g.delete("p0")
    assert g._index is None and not list(tmp_path.joinpath("missing").glob("pq.*"))
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
    g = Gallery("found", tmp_path, index_threshold=150, params=IndexParams(shortlist=50)).load()
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
    assert Gallery("found", tmp_path, index_threshold=150).load().search(centers[10], 1)[0][0] == "p10"


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
    g = Gallery("found", tmp_path, index_threshold=200, background_build=True,
                params=IndexParams(shortlist=50)).load()
    g.add_many(persons[:250], vecs[:250])
    started, proceed = threading.Event(), threading.Event()
    real_new_index = g._new_index

    def slow_new_index(mat, n):
        started.set()
        assert proceed.wait(30)
        return real_new_index(mat, n)

    monkeypatch.setattr(g, "_new_index", slow_new_index)
    assert g.search(centers[3], 1)[0][0] == "p3"  # exact answer, build started
    assert started.wait(30) and g._index is None
    # while the index builds: answers stay exact, adds and deletes go through
    assert g.search(centers[7], 1)[0][0] == "p7"
    assert g.delete("p7") == 1
    g.add_many(persons[250:], vecs[250:])
    proceed.set()
    assert g.wait_for_index(60)
    assert g._index.ntotal == len(g) == 299
    assert g.search(centers[280], 1)[0][0] == "p280"  # added during the build
    assert g.search(centers[100], 1)[0][0] == "p100"  # rows line up after the removal
    assert all(p != "p7" for p, _ in g.search(centers[7], 20))  # deleted during the build
    code7, code8 = g._index.sa_encode(normalize_rows(vecs[7:9]))
    saved = index_slots(_saved_index(tmp_path / "found"))
    assert _holds_code(saved, code8) and not _holds_code(saved, code7)
    again = Gallery("found", tmp_path, index_threshold=200).load()
    assert again._index is not None and all(p != "p7" for p, _ in again.search(centers[7], 20))


def test_two_processes_share_a_gallery_folder(tmp_path):
    """A second instance on the same folder (the CLI while the server runs) sees and
    is seen: deletions made elsewhere are honoured at the next call, not at restart."""
    centers, vecs, persons = _clustered(40, 1)
    server = Gallery("missing", tmp_path, index_threshold=30).load()
    server.add_many(persons[:35], vecs[:35])
    assert server.search(centers[1], 1)[0][0] == "p1"  # builds the index (synchronously here)
    cli = Gallery("missing", tmp_path, index_threshold=30).load()
    assert cli._index is not None and len(cli) == 35
    assert cli.delete("p1") == 1
    cli.add("p36", vecs[36])
    assert all(p != "p1" for p, _ in server.search(centers[1], 10))
    assert server.search(centers[36], 1)[0][0] == "p36"
    server.add("p37", vecs[37])  # written into the current generation, not the deleted one
    assert cli.search(centers[37], 1)[0][0] == "p37"
    server.close()
    fresh = Gallery("missing", tmp_path, index_threshold=30).load()
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


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["exact", "index"])
def test_erase_is_immediate_leaves_other_results_unchanged_and_survives_a_restart(tmp_path, threshold):
    """Erasure (a withdrawal) must not wait for a file rewrite: the person is gone from search
    at once, their rows are zeros on disk at once, every other result is unchanged, a restart
    (another process) keeps them gone, and the compaction later drops the rows for good."""
    centers, vecs, persons = _clustered(300, 2)
    g = Gallery("found", tmp_path, index_threshold=threshold, params=IndexParams(shortlist=64)).load()
    g.add_many(persons, vecs)
    if threshold == 100:
        g.build_index()
    probes = [centers[i] for i in range(0, 300, 7)]
    before = [g.search(q, 10) for q in probes]
    rows = list(g._person_rows["p7"])
    assert g.erase("p7", compact_later=False) == 2
    assert "p7" not in g and len(g) == 598
    assert all(p != "p7" for q in probes for p, _ in g.search(q, 20))
    for b, q in zip(before, probes):
        others = [x for x in b if x[0] != "p7"]
        assert g.search(q, 10)[:len(others)] == others
    raw = np.fromfile(tmp_path / "found" / "vectors.0.f32", dtype=np.float32).reshape(-1, DIM)
    assert len(raw) == 600 and not raw[rows].any() and raw[rows[0] + 2].any()
    if threshold == 100:  # the person's codes in the live index are zeroed too
        codes = g._index.sa_encode(normalize_rows(vecs[rows]))
        assert not any(_holds_code(index_slots(g._index), c) for c in codes)

    again = Gallery("found", tmp_path, index_threshold=threshold, params=IndexParams(shortlist=64)).load()
    assert "p7" not in again and all(p != "p7" for p, _ in again.search(centers[7], 20))
    assert again.compact() == 2 and len(again) == 598
    assert not (tmp_path / "found" / "tomb.1.txt").exists()
    assert again.search(centers[8], 1)[0][0] == "p8" and all(p != "p7" for p, _ in again.search(centers[7], 20))
    assert g.search(centers[9], 1)[0][0] == "p9"  # the first instance follows the compaction on disk
