"""Knowledge-base benchmark: ingestion rate, search latency (hybrid vs BM25-only vs dense-only,
same run, same index), memory, extractive answer latency.

    python bench/kb.py --ingest 2000 --size 100000 --queries 60

Records are synthetic variations of the labelled Taizhou set (tests/kb/data/eval/records.jsonl):
names, amounts, dates and places are varied so the index is not 1,000 copies of one text.
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


def synth(n: int, seed: int = 7):
    from knowledge_base.places import Gazetteer
    from knowledge_base.records import Record

    rnd = random.Random(seed)
    base = [json.loads(x) for x in (DATA / "records.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    from backend.core.taxonomy import kind_of

    base = [{**b, "kind": kind_of(b["kind"])} for b in base]  # Chinese kind labels, as Taizhou's exports write them
    base = [b for b in base if b["kind"] != "document"]
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


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingest", type=int, default=2000, help="records timed for the ingestion rate")
    ap.add_argument("--size", type=int, default=100_000, help="index size for the search benchmark")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--dir", default=None, help="data dir (default: a temp dir)")
    ap.add_argument("--workers", type=int, default=0,
                    help="also time ingestion with this many embedding processes (side by side)")
    args = ap.parse_args()

    from backend.core.config import Settings
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.records import Scope

    d = Path(args.dir or tempfile.mkdtemp(prefix="kbbench_"))
    settings = Settings(data_dir=d, _env_file=None)
    m0 = rss_mb()
    t0 = time.perf_counter()
    kb = KnowledgeBase(settings).load()
    load_s = time.perf_counter() - t0
    m_loaded = rss_mb()
    print(f"load: {load_s:.2f}s (embedding model {getattr(kb.embeddings, 'load_seconds', 0):.2f}s), RSS {m0:.0f}→{m_loaded:.0f} MB")

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
    kb.embeddings.embed_documents(sample)
    emb_rate = len(sample) / (time.perf_counter() - t0)
    print(f"ingestion: {args.ingest} records in {ing_s:.1f}s = {rate:.0f} records/s (goal ≥ 100/s); "
          f"embedding alone {emb_rate:.0f} texts/s")

    if args.workers > 1:
        kbw = KnowledgeBase(Settings(data_dir=Path(tempfile.mkdtemp(prefix="kbbench_w_")), _env_file=None),
                            ingest_workers=args.workers).load()
        kbw.upsert(recs[:256])  # start the worker processes
        t0 = time.perf_counter()
        for i in range(0, args.ingest, 256):
            kbw.upsert(recs[i : min(i + 256, args.ingest)])
        w_s = time.perf_counter() - t0
        print(f"ingestion with {args.workers} embedding processes: {args.ingest / w_s:.0f} records/s "
              f"(1 process: {rate:.0f} records/s, same records)")
        kbw.close()

    # ---- grow to --size
    t0 = time.perf_counter()
    done = args.ingest
    while done < args.size:
        kb.upsert(recs[done : done + 1000])
        done += 1000
        if done % 10000 == 0:
            print(f"  … {done} records, {time.perf_counter() - t0:.0f}s, RSS {rss_mb():.0f} MB", flush=True)
    bulk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kb.compact()
    compact_s = time.perf_counter() - t0
    if args.size <= args.ingest:
        return
    print(f"bulk load to {kb.count()} records: {bulk_s:.0f}s ({(args.size - args.ingest) / max(bulk_s, 1e-9):.0f}/s); "
          f"BM25 rebuild {compact_s:.1f}s; RSS {rss_mb():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    # ---- single upsert visible to the next search (delta segment)
    t0 = time.perf_counter()
    kb.upsert([recs[0]])
    up1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    kb.search("工资", Scope.admin(), mode="keyword")
    refresh = time.perf_counter() - t0
    print(f"one upsert at {kb.count()} records: {up1 * 1000:.0f} ms; next keyword search incl. delta refresh {refresh * 1000:.0f} ms")

    qs = [json.loads(x)["q"] for x in (DATA / "dev.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    qs = (qs * (args.queries // len(qs) + 1))[: args.queries]
    scopes = {"admin": Scope.admin(), "official(county)": Scope("official", 1, 6),
              "official(township)": Scope("official", 1, 142), "deputy": Scope("deputy", 17)}
    print(f"\nsearch over {kb.count()} records, {len(qs)} queries, k=5 (ms, incl. query embedding)")
    print(f"{'channel':<10} {'scope':<19} {'p50':>7} {'p95':>7}")
    results = {}
    for mode in ("keyword", "dense", "hybrid"):
        for sname, sc in scopes.items():
            kb.search(qs[0], sc, mode=mode)  # warm
            lat = []
            for q in qs:
                t0 = time.perf_counter()
                kb.search(q, sc, k=5, mode=mode)
                lat.append(time.perf_counter() - t0)
            results[(mode, sname)] = (pct(lat, 50), pct(lat, 95))
            print(f"{mode:<10} {sname:<19} {pct(lat, 50):>7.1f} {pct(lat, 95):>7.1f}")
    lat = []
    for q in qs:
        t0 = time.perf_counter()
        kb.answer(q, Scope.admin())
        lat.append(time.perf_counter() - t0)
    print(f"\nextractive answer (hybrid search + composition): p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms "
          f"(goal ≤ 150 ms)")
    print(f"load average during the run: {os.getloadavg()} on {os.cpu_count()} cores")
    print(f"memory: RSS {rss_mb():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"data dir {sum(f.stat().st_size for f in d.rglob('*') if f.is_file()) / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
