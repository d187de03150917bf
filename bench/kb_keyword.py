"""Keyword channel: what scoring with the whole index's statistics costs (issue #19: the same
answer on every replica, whatever its main/delta split), beside the segment-local BM25 that
proposes the candidates, same run, same queries.

    python bench/kb_keyword.py --records 100000 --delta 2000 --queries 200

Synthetic records of bench/kb.py (jieba tokens of varied Taizhou cases); the main segment holds
all but ``--delta`` of them, the delta the rest, 1 % of main tombstoned — as a replica's index
looks between two compactions. Prints per query: the local BM25 of both segments (the old
search's scoring), the rescoring of their candidates, and the whole search.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def rows_of(records) -> list[tuple]:
    """Rows shaped like RecordStore.chunk_rows: one chunk per record."""
    from knowledge_base.textproc import tokenize

    return [(cid, r.id, None, r.text, "\t".join(tokenize(r.title + r.text)), r.id, r.kind, r.title, r.category,
             r.location, int(r.date.strftime("%Y%m%d")), False, "[]", "[]", 0)
            for cid, r in enumerate(records, start=1)]


def main() -> None:
    from kb import pct, synth  # bench/kb.py

    from knowledge_base.keyword import _build_segment
    from knowledge_base.query import Filter
    from knowledge_base.textproc import tokenize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--delta", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=50)
    a = ap.parse_args()

    t0 = time.perf_counter()
    recs = synth(a.records)
    rows = rows_of(recs)
    main_seg = _build_segment(rows[:-a.delta] if a.delta else rows)
    delta = _build_segment(rows[-a.delta:]) if a.delta else None
    rnd = random.Random(3)
    main_seg.alive[rnd.sample(range(main_seg.n), main_seg.n // 100)] = False
    print(f"{a.records} chunks, delta {a.delta}, built in {time.perf_counter() - t0:.1f} s")
    segs = [s for s in (main_seg, delta) if s is not None]
    flt = Filter()
    qs = [tokenize(r.title + r.text[:30])[:64] for r in rnd.sample(recs, a.queries)]
    local, rescore, whole = [], [], []
    for toks in qs:
        t1 = time.perf_counter()
        n = sum(int(s.alive.sum()) for s in segs)
        avgdl = sum(float(s.dl[s.alive].sum()) for s in segs) / n
        df = {t: sum(s.live_df(t) for s in segs) for t in toks}
        cands = []
        for s in segs:
            ids = s.bm25.get_tokens_ids(toks)
            sc = np.where(s.mask(flt), s.bm25.get_scores_from_ids(ids), 0.0) if ids else np.zeros(s.n)
            nz = np.flatnonzero(sc > 0)
            pool = max(4 * a.k, 200)
            cands.append(nz[np.argpartition(-sc[nz], pool - 1)[:pool]] if len(nz) > pool else nz)
        t2 = time.perf_counter()
        for s, c in zip(segs, cands):
            s.rescore(c, toks, df, n, avgdl)
        t3 = time.perf_counter()
        local.append(t2 - t1)
        rescore.append(t3 - t2)
        whole.append(t3 - t1)
    print(f"{'per query (ms)':<44} {'p50':>7} {'p95':>7}")
    for label, xs in (("segment-local BM25 + statistics (candidates)", local),
                      ("rescoring the candidates (whole-index stats)", rescore),
                      ("both", whole)):
        print(f"{label:<44} {pct(xs, 50):7.2f} {pct(xs, 95):7.2f}")


if __name__ == "__main__":
    main()
