"""Knowledge-base benchmark: ingestion rate, search latency (hybrid vs BM25-only vs dense-only,
same run, same index), memory, extractive answer latency.

    python bench/kb.py --ingest 2000 --size 100000 --queries 60
    python bench/kb.py --records 100000 --bulk-vectors derived --baseline 20000

Records are synthetic variations of the labelled Taizhou set (tests/kb/data/eval/records.jsonl):
names, amounts, dates and places are varied so the index is not 1,000 copies of one text.

``--bulk-vectors derived``: embedding 100k texts with USE on two shared cores takes 20+ minutes, so
the records beyond the first ``--ingest`` (which always go through the real model, and give the
ingestion rate) get a *derived* vector: the real USE vector of a record built from the same template
(each of the ~250 labelled records is a template) plus Gaussian noise, scaled so that the cosine
between two variants of one template matches the cosine measured between real variants in this run.
Everything else is real: jieba tokens, the record store, the BM25 index, Chroma's HNSW index, and
every *query* is embedded by the real model. ``--baseline 20000`` also builds an index of the first
20,000 of the same records (same vectors) and measures both interleaved, query by query: the same-run
baseline, slowed alike by whatever else the machine does meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "kb" / "data" / "eval"
SURN = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文辉海波鹏飞"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def templates() -> list[dict]:
    """The labelled records the synthetic ones vary (documents left out)."""
    from backend.core.taxonomy import kind_of

    base = [json.loads(x) for x in (DATA / "records.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    base = [{**b, "kind": kind_of(b["kind"])} for b in base]  # Chinese kind labels, as Taizhou's exports write them
    return [b for b in base if b["kind"] != "document"]


def synth(n: int, seed: int = 7):
    from knowledge_base.places import Gazetteer
    from knowledge_base.records import Record

    rnd = random.Random(seed)
    base = templates()
    g = Gazetteer.default()
    towns = [p for p in g.places if p.level == "township"]
    out = []
    for i in range(n):
        b = base[i % len(base)]
        t = rnd.choice(towns)
        name = rnd.choice(SURN) + rnd.choice(GIVEN) + rnd.choice(GIVEN)
        text = re.sub(r"\d+(\.\d+)?", lambda m: str(rnd.randint(2, 99)), b["text"])
        text = f"{t.name}{name}反映：" + text + f"本案由{rnd.choice(SURN)}调解员经办，登记编号{i}。"
        d = date(2024, 1, 1) + timedelta(days=rnd.randint(0, 1060))
        out.append(Record(id=f"B-{i:06d}", kind=b["kind"], title=b["title"], text=text, category=b["category"],
                          location=t.name, jurisdiction_ids=list(t.path_ids), date=d,
                          owner_user_ids=[rnd.randint(1, 500)] if b["kind"] == "supervision" else []))
    return out


class DerivedVectors:
    """Embeddings for the bench: the real model for queries and for the first ``real_upto``
    records; records beyond get their template's real vector plus noise (see the module doc)."""

    def __init__(self, real, n_templates: int, real_upto: int):
        self.real = real
        self.n_templates = n_templates
        self.real_upto = real_upto
        self.templates: dict[int, object] = {}  # template → its real vector (numpy)
        self.variants: dict[int, list] = {}  # template → real vectors of its variants (for calibration)
        self.sigma: float | None = None
        self.memo: dict[str, list] = {}

    def __getattr__(self, name):  # load(), load_seconds, … of the real model
        return getattr(self.real, name)

    def embed_query(self, text):
        return self.real.embed_query(text)

    def calibrate(self) -> float:
        """Noise per dimension so that E[cos(template, variant)] = the mean cosine of real variant pairs."""
        import numpy as np

        cs = []
        for vs in self.variants.values():
            for a in vs[1:]:
                v0, v1 = np.asarray(vs[0]), np.asarray(a)
                cs.append(float(v0 @ v1 / (np.linalg.norm(v0) * np.linalg.norm(v1))))
        c = float(np.mean(cs)) if cs else 0.9
        d = len(next(iter(self.templates.values())))
        self.sigma = float(np.sqrt(max(1.0 / c**2 - 1.0, 1e-6) / d))
        self.mean_cos = c
        return c

    def embed_documents(self, texts):
        import numpy as np

        nums = [int(m.group(1)) if (m := re.search(r"登记编号(\d+)", t)) else -1 for t in texts]
        out: list = [self.memo.get(t) for t in texts]  # the same text gets the same vector in every index
        real_idx = [i for i, n in enumerate(nums) if out[i] is None and
                    (n < 0 or n < self.real_upto or (n % self.n_templates) not in self.templates)]
        if real_idx:
            for i, v in zip(real_idx, self.real.embed_documents([texts[i] for i in real_idx])):
                out[i] = self.memo[texts[i]] = v
                if nums[i] >= 0:
                    tpl = nums[i] % self.n_templates
                    self.templates.setdefault(tpl, np.asarray(v, dtype=np.float32))
                    self.variants.setdefault(tpl, []).append(v)
        if self.sigma is None and len(real_idx) < len(texts):
            self.calibrate()
        for i, n in enumerate(nums):
            if out[i] is None:
                tpl = self.templates[n % self.n_templates]
                v = tpl + np.random.default_rng(n).normal(0, self.sigma, len(tpl))  # record n: always the same
                out[i] = (v / np.linalg.norm(v)).astype(np.float32).tolist()
        return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def measure_search(kbs: dict, qs: list[str]) -> dict:
    """p50/p95 per channel and scope, k=5, including the query embedding, on every index in ``kbs``
    ({label: kb}) *interleaved* query by query (alternating which goes first), so a machine whose
    load changes during the run slows them alike. Wall-clock and process CPU time per query."""
    from knowledge_base.records import Scope

    scopes = {"admin": Scope.admin(), "official(county)": Scope("official", 1, 6),
              "official(township)": Scope("official", 1, 142), "deputy": Scope("deputy", 17)}
    labels = list(kbs)
    print(f"\nsearch, {len(qs)} queries, k=5, ms incl. query embedding; indexes measured interleaved: "
          + ", ".join(f"{lab} = {kb.count():,} records" for lab, kb in kbs.items())
          + f"; load average {os.getloadavg()[0]:.1f}")
    head = " | ".join(f"{lab:>21}" for lab in labels)
    print(f"{'channel':<8} {'scope':<19} {head}    (wall p50 / p95, CPU p50)")
    results: dict = {}

    def run(fn):
        wall: dict[str, list[float]] = {lab: [] for lab in labels}
        cpu: dict[str, list[float]] = {lab: [] for lab in labels}
        for j, q in enumerate(qs):
            for lab in (labels if j % 2 == 0 else labels[::-1]):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(kbs[lab], q)
                wall[lab].append(time.perf_counter() - t0)
                cpu[lab].append(time.process_time() - c0)
        return {lab: (pct(wall[lab], 50), pct(wall[lab], 95), pct(cpu[lab], 50)) for lab in labels}

    for mode in ("keyword", "dense", "hybrid"):
        for sname, sc in scopes.items():
            for kb in kbs.values():
                kb.search(qs[0], sc, mode=mode)  # warm
            r = run(lambda kb, q, sc=sc, mode=mode: kb.search(q, sc, k=5, mode=mode))
            results[(mode, sname)] = r
            print(f"{mode:<8} {sname:<19} " + " | ".join(f"{r[lab][0]:6.1f} /{r[lab][1]:6.1f} ({r[lab][2]:5.1f})"
                                                          for lab in labels), flush=True)
    r = run(lambda kb, q: kb.answer(q, Scope.admin()))
    results["answer"] = r
    print(f"{'answer':<8} {'admin (extractive)':<19} " + " | ".join(
        f"{r[lab][0]:6.1f} /{r[lab][1]:6.1f} ({r[lab][2]:5.1f})" for lab in labels) + "   (goal ≤ 150 ms)", flush=True)
    return results


def grow(kb, recs, start: int, size: int, label: str) -> None:
    t0 = time.perf_counter()
    done = start
    while done < size:
        kb.upsert(recs[done : min(done + 1000, size)])
        done = min(done + 1000, size)
        if done % 10000 == 0:
            print(f"  … {label}: {done} records, {time.perf_counter() - t0:.0f}s, RSS {rss_mb():.0f} MB", flush=True)
    bulk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kb.compact()
    compact_s = time.perf_counter() - t0
    print(f"{label}: bulk load {start:,} → {kb.count():,} records: {bulk_s:.0f}s ({(size - start) / max(bulk_s, 1e-9):.0f}/s); "
          f"BM25 rebuild {compact_s:.1f}s; RSS {rss_mb():.0f} MB, "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)


def measure_existing(dirs: list[str], n_queries: int) -> None:
    """Load indexes built by earlier runs (records, BM25 files, Chroma) and measure them interleaved."""
    from backend.core.config import Settings
    from knowledge_base.embeddings import make_embeddings
    from knowledge_base.facade import KnowledgeBase

    emb = None
    kbs = {}
    for d in dirs:
        settings = Settings(data_dir=Path(d), _env_file=None)
        emb = emb or make_embeddings(settings)
        t0 = time.perf_counter()
        kb = KnowledgeBase(settings, embeddings=emb, migrate=True).load()
        print(f"load {d}: {kb.count():,} records in {time.perf_counter() - t0:.1f}s (BM25 segment, metadata columns, Chroma)")
        kbs[f"{kb.count():,}"] = kb
    qs = [json.loads(x)["q"] for x in (DATA / "dev.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    measure_search(kbs, (qs * (n_queries // len(qs) + 1))[:n_queries])
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} cores; RSS {rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingest", type=int, default=2000, help="records timed for the ingestion rate (real model)")
    ap.add_argument("--size", "--records", dest="size", type=int, default=100_000,
                    help="index size for the search benchmark")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--dir", default=None, help="data dir (default: a temp dir)")
    ap.add_argument("--workers", type=int, default=0,
                    help="also time ingestion with this many embedding processes (side by side)")
    ap.add_argument("--bulk-vectors", choices=("real", "derived"), default="real",
                    help="vectors of the records beyond --ingest: the real model, or derived (module doc)")
    ap.add_argument("--baseline", type=int, default=0,
                    help="also build an index of this many of the same records and measure both interleaved")
    ap.add_argument("--measure", nargs="+", metavar="DATA_DIR", default=None,
                    help="only measure search, interleaved, on indexes an earlier run left (its --dir data dirs)")
    args = ap.parse_args()
    if args.measure:
        return measure_existing(args.measure, args.queries)

    from backend.core.config import Settings
    from knowledge_base.embeddings import make_embeddings
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.records import Scope

    d = Path(args.dir or tempfile.mkdtemp(prefix="kbbench_"))
    settings = Settings(data_dir=d, _env_file=None)
    m0 = rss_mb()
    t0 = time.perf_counter()
    emb = None
    if args.bulk_vectors == "derived":
        emb = DerivedVectors(make_embeddings(settings), len(templates()), args.ingest)
    kb = KnowledgeBase(settings, embeddings=emb, migrate=True).load()
    load_s = time.perf_counter() - t0
    m_loaded = rss_mb()
    print(f"load: {load_s:.2f}s (embedding model {getattr(kb.embeddings, 'load_seconds', 0):.2f}s), RSS {m0:.0f}→{m_loaded:.0f} MB; "
          f"record store {settings.sync_db_url.split('@')[-1]}")

    recs = synth(max(args.ingest, args.size))
    # ---- ingestion rate
    t0 = time.perf_counter()
    for i in range(0, args.ingest, 256):
        kb.upsert(recs[i : min(i + 256, args.ingest)])
    ing_s = time.perf_counter() - t0
    rate = args.ingest / ing_s
    # split: embedding alone on the same texts
    sample = [r.text for r in recs[: min(args.ingest, 1000)]]
    t0 = time.perf_counter()
    (emb.real if emb is not None else kb.embeddings).embed_documents(sample)
    emb_rate = len(sample) / (time.perf_counter() - t0)
    print(f"ingestion: {args.ingest} records in {ing_s:.1f}s = {rate:.0f} records/s (goal ≥ 100/s); "
          f"embedding alone {emb_rate:.0f} texts/s", flush=True)
    if emb is not None:
        c = emb.calibrate()
        print(f"derived vectors beyond record {args.ingest}: template vector + N(0, {emb.sigma:.4f}) per dimension; "
              f"mean cosine of real variants of one template {c:.3f} ({sum(len(v) for v in emb.variants.values())} "
              f"real vectors of {len(emb.templates)} templates)")

    if args.workers > 1:
        kbw = KnowledgeBase(Settings(data_dir=Path(tempfile.mkdtemp(prefix="kbbench_w_")), _env_file=None), migrate=True,
                            ingest_workers=args.workers).load()
        kbw.upsert(recs[:256])  # start the worker processes
        t0 = time.perf_counter()
        for i in range(0, args.ingest, 256):
            kbw.upsert(recs[i : min(i + 256, args.ingest)])
        w_s = time.perf_counter() - t0
        print(f"ingestion with {args.workers} embedding processes: {args.ingest / w_s:.0f} records/s "
              f"(1 process: {rate:.0f} records/s, same records)")
        kbw.close()

    if args.size <= args.ingest:
        return
    grow(kb, recs, args.ingest, args.size, f"{args.size:,}")
    kbs = {f"{args.size:,}": kb}
    if args.baseline:
        base = KnowledgeBase(Settings(data_dir=Path(tempfile.mkdtemp(prefix="kbbench_base_")), _env_file=None), migrate=True,
                             embeddings=emb if emb is not None else kb.embeddings).load()
        grow(base, recs, 0, args.baseline, f"{args.baseline:,} (baseline)")
        kbs = {f"{args.baseline:,}": base, **kbs}

    # ---- single upsert visible to the next search (delta segment)
    for lab, k in kbs.items():
        t0 = time.perf_counter()
        k.upsert([recs[0]])
        up1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        k.search("工资", Scope.admin(), mode="keyword")
        refresh = time.perf_counter() - t0
        print(f"one upsert at {lab} records: {up1 * 1000:.0f} ms; next keyword search incl. delta refresh "
              f"{refresh * 1000:.0f} ms")

    qs = [json.loads(x)["q"] for x in (DATA / "dev.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    qs = (qs * (args.queries // len(qs) + 1))[: args.queries]
    measure_search(kbs, qs)
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} cores")
    print(f"memory: RSS {rss_mb():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"data dir {sum(f.stat().st_size for f in d.rglob('*') if f.is_file()) / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
