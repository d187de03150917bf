"""The BM25 keyword channel (bm25s over jieba tokens) over the record store
(``knowledge_base.store``, the source of truth for texts and tokens).

The BM25 index has a large *main* segment, persisted under ``<data_dir>/kb/bm25`` and rebuilt by
:meth:`KeywordIndex.compact`, plus a small in-memory *delta* segment for chunks written since,
and tombstones for main chunks deleted or replaced since. Upserts and deletes are therefore
visible to the next search at once (the delta is re-indexed lazily, in milliseconds), and a full
rebuild is only needed when the delta has grown (automatic past ``max_delta`` chunks). On start
the store is compared with the saved main segment, so the index never drifts from the store.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knowledge_base.query import Filter
from knowledge_base.records import KINDS
from knowledge_base.store import RecordStore

KIND_CODE = {k: i for i, k in enumerate(KINDS)}
MANIFEST_VERSION = 3  # 3: chunk lengths saved (dl.npy, avgdl) for Segment.rescore


# ====================================================================== BM25
@dataclass
class _Segment:
    """One bm25s index plus column arrays of its chunks' metadata (for filtering)."""

    bm25: object | None
    cids: np.ndarray
    record_ids: np.ndarray  # object
    kinds: np.ndarray  # object
    categories: np.ndarray  # object
    dates: np.ndarray  # int64
    public: np.ndarray  # bool
    jpos: dict[int, np.ndarray]
    upos: dict[int, np.ndarray]
    alive: np.ndarray = field(default=None)  # bool
    chroma_ids: np.ndarray = field(default=None)  # object: "<record id>::<chunk idx>"
    dl: np.ndarray = field(default=None)  # int32: each chunk's length in tokens
    avgdl: float = 0.0  # the mean length bm25s scored this segment with (at build)

    @property
    def n(self) -> int:
        return len(self.cids)

    def mask(self, flt: Filter) -> np.ndarray:
        m = self.alive.copy()
        if not flt.acl.all:
            am = self.public.copy() if flt.acl.public else np.zeros(self.n, bool)
            for j in flt.acl.jids:
                if j in self.jpos:
                    am[self.jpos[j]] = True
            if flt.acl.owner is not None and flt.acl.owner in self.upos:
                am[self.upos[flt.acl.owner]] = True
            m &= am
        if flt.kinds or flt.categories:
            kc, cc, _doc = self._codes()
        if flt.kinds:
            m &= np.isin(kc, [KIND_CODE[k] for k in flt.kind_set() if k in KIND_CODE])
        if flt.categories:
            cats = self._cat_codes
            m &= ~np.isin(cc, [cats[c] for c in flt.other_categories() if c in cats])
        if flt.place_jids:
            pm = np.zeros(self.n, bool)
            for j in flt.place_jids:
                if j in self.jpos:
                    pm[self.jpos[j]] = True
            m &= pm
        if flt.date_from is not None:
            m &= self.dates >= flt.date_from
        if flt.date_to is not None:
            m &= self.dates <= flt.date_to
        return m

    def _codes(self):
        """Integer codes of kind / category (np.isin on object arrays is slow at 100k)."""
        if getattr(self, "_kc", None) is None:
            self._kc = np.array([KIND_CODE.get(k, -1) for k in self.kinds], dtype=np.int16)
            self._cat_codes = {c: i for i, c in enumerate(sorted(set(self.categories.tolist())))}
            self._cc = np.array([self._cat_codes[c] for c in self.categories], dtype=np.int32)
            self._doc = self._kc == KIND_CODE["document"]
        return self._kc, self._cc, self._doc

    def live_df(self, token: str) -> int:
        """How many live chunks of this segment contain ``token``."""
        tid = self.bm25.vocab_dict.get(token) if self.bm25 is not None else None
        if tid is None:
            return 0
        indptr = self.bm25.scores["indptr"]
        return int(self.alive[self.bm25.scores["indices"][indptr[tid]:indptr[tid + 1]]].sum())

    def rescore(self, docs: np.ndarray, tokens: list[str], df: dict[str, int], n: int, avgdl: float) -> np.ndarray:
        """BM25 (bm25s's Lucene variant, which built this segment) of ``docs`` for ``tokens`` with
        the statistics of every live chunk of the index (``df``, ``n``, ``avgdl``) instead of this
        segment's own: a chunk scores the same whichever segment holds it. The term frequencies
        are read back from the segment's scores (score = idf · tf / (tf + K), K from the length)."""
        bm = self.bm25
        k1, b = float(bm.k1), float(bm.b)
        indptr, indices, data = bm.scores["indptr"], bm.scores["indices"], bm.scores["data"]
        dl = self.dl[docs].astype(np.float64)
        k_here = k1 * (1 - b + b * dl / self.avgdl)
        k_all = k1 * (1 - b + b * dl / avgdl)
        out = np.zeros(len(docs))
        for t in tokens:
            tid = bm.vocab_dict.get(t)
            if tid is None or not df.get(t):
                continue
            a, e = int(indptr[tid]), int(indptr[tid + 1])
            if a == e:
                continue
            col = indices[a:e]
            j = np.minimum(np.searchsorted(col, docs), len(col) - 1)
            has = col[j] == docs
            idf_here = _idf(e - a, self.n)
            x = np.clip(data[a + j].astype(np.float64) / idf_here, 0.0, 1 - 1e-9)
            tf = np.maximum(np.rint(x * k_here / (1 - x)), 1.0)
            out += np.where(has, _idf(df[t], n) * tf / (tf + k_all), 0.0)
        return out


def _idf(df: int, n: int) -> float:
    """bm25s's Lucene idf."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _build_segment(rows, show_progress: bool = False) -> _Segment:
    import bm25s

    n = len(rows)
    cids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    jpos: dict[int, list[int]] = {}
    upos: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        for j in json.loads(r[12] or "[]"):
            jpos.setdefault(j, []).append(i)
        for u in json.loads(r[13] or "[]"):
            upos.setdefault(u, []).append(i)
    bm = None
    dl = np.zeros(n, dtype=np.int32)
    if n:
        corpus = [r[4].split("\t") if r[4] else [] for r in rows]
        dl = np.fromiter((len(c) for c in corpus), dtype=np.int32, count=n)
        bm = bm25s.BM25(method="lucene", idf_method="lucene")  # Segment.rescore relies on this variant
        bm.index(corpus, show_progress=show_progress)
    return _Segment(
        bm25=bm, cids=cids,
        record_ids=np.array([r[1] for r in rows], dtype=object),
        kinds=np.array([r[6] for r in rows], dtype=object),
        categories=np.array([r[8] or "" for r in rows], dtype=object),
        dates=np.fromiter((r[10] or 0 for r in rows), dtype=np.int64, count=n),
        public=np.fromiter((bool(r[11]) for r in rows), dtype=bool, count=n),
        jpos={k: np.array(v, dtype=np.int64) for k, v in jpos.items()},
        upos={k: np.array(v, dtype=np.int64) for k, v in upos.items()},
        alive=np.ones(n, dtype=bool),
        chroma_ids=np.array([f"{r[1]}::{r[14]}" for r in rows], dtype=object),
        dl=dl, avgdl=float(dl.mean()) if n else 0.0,
    )


@dataclass
class KeywordHit:
    cid: int
    record_id: str
    score: float
    matched_rare: int  # how many of the query's rare tokens this chunk contains
    rare_total: int
    longest_match: int = 0  # length of the longest rare token matched


class KeywordIndex:
    def __init__(self, store: RecordStore, directory: Path, max_delta: int = 5000):
        self.store = store
        self.dir = directory
        self.max_delta = max_delta
        self._lock = threading.RLock()
        self._main: _Segment = _build_segment([])
        self._removed: set[int] = set()  # main cids deleted since the main segment was built
        self._added: set[int] = set()  # cids not in main (the delta)
        self._delta: _Segment | None = None
        self._dirty = True
        self.last_build_seconds: float | None = None

    # ---------------------------------------------------------- lifecycle
    def load(self) -> None:
        """Load the persisted main segment and reconcile it with the store."""
        import bm25s

        with self._lock:
            store_cids = self.store.all_cids()
            manifest = self.dir / "manifest.json"
            main_cids = np.array([], dtype=np.int64)
            if manifest.exists() and (self.dir / "cids.npy").exists():
                try:
                    # chunk ids are unique in one database only: a segment built on another is rebuilt
                    saved = json.loads(manifest.read_text())
                    if saved.get("store") != self.store.identity:
                        raise ValueError("the saved segment was built on another database")
                    if saved.get("version") != MANIFEST_VERSION:
                        raise ValueError("the saved segment is of an older version")
                    main_cids = np.load(self.dir / "cids.npy")
                    bm = bm25s.BM25.load(str(self.dir / "bm25"), show_progress=False) if len(main_cids) else None
                    rows = {r[0]: r for r in self.store.chunk_rows([int(c) for c in main_cids])}
                    seg = _build_meta_only(main_cids, rows, bm)
                    seg.dl, seg.avgdl = np.load(self.dir / "dl.npy"), float(saved["avgdl"])
                    self._main = seg
                except Exception:  # a damaged index is rebuilt from the store
                    main_cids = np.array([], dtype=np.int64)
                    self._main = _build_segment([])
            if not len(main_cids):
                self.compact()
                return
            self.reconcile(store_cids)

    def reconcile(self, store_cids: np.ndarray | None = None) -> None:
        """Make the index follow the store again (after another process wrote to it): chunks gone
        from the store are tombstoned, chunks the main segment lacks form the delta."""
        with self._lock:
            store_cids = self.store.all_cids() if store_cids is None else store_cids
            main_cids = self._main.cids
            in_store = np.isin(main_cids, store_cids)
            self._removed = set(int(c) for c in main_cids[~in_store])
            self._added = set(int(c) for c in store_cids[~np.isin(store_cids, main_cids)])
            self._main.alive &= in_store
            self._dirty = True
            if len(self._added) > self.max_delta:
                self.compact()

    def compact(self, show_progress: bool = False) -> float:
        """Rebuild the main segment from the store and persist it. Returns seconds taken."""
        import time

        t0 = time.perf_counter()
        with self._lock:
            rows = self.store.chunk_rows()
            seg = _build_segment(rows, show_progress=show_progress)
            self.dir.mkdir(parents=True, exist_ok=True)
            if seg.bm25 is not None:
                seg.bm25.save(str(self.dir / "bm25"), show_progress=False)
            np.save(self.dir / "cids.npy", seg.cids)
            np.save(self.dir / "dl.npy", seg.dl)
            (self.dir / "manifest.json").write_text(json.dumps({"chunks": int(seg.n), "version": MANIFEST_VERSION,
                                                               "avgdl": seg.avgdl, "store": self.store.identity}))
            self._main = seg
            self._removed.clear()
            self._added.clear()
            self._delta = None
            self._dirty = False
        self.last_build_seconds = time.perf_counter() - t0
        return self.last_build_seconds

    # ---------------------------------------------------------- change notes (store already written)
    def note_changes(self, removed: list[int], added: list[int]) -> None:
        with self._lock:
            for c in removed:
                if c in self._added:
                    self._added.discard(c)
                else:
                    self._removed.add(c)
            self._added.update(added)
            self._dirty = True

    def _refresh(self) -> None:
        if not self._dirty:
            return
        with self._lock:
            if not self._dirty:
                return
            if len(self._added) > self.max_delta:
                self.compact()
                return
            if self._removed:
                self._main.alive = ~np.isin(self._main.cids, np.fromiter(self._removed, dtype=np.int64))
            self._delta = _build_segment(self.store.chunk_rows(sorted(self._added))) if self._added else None
            self._dirty = False

    @property
    def pending(self) -> int:
        return len(self._added) + len(self._removed)

    # ---------------------------------------------------------- search
    def allowed(self, flt: Filter, max_ids: int = 20000) -> tuple[float, list[str] | None]:
        """(share of the indexed chunks that ``flt`` lets through, their Chroma ids when there are
        at most ``max_ids`` of them). Cheap: column masks over the store's metadata."""
        self._refresh()
        main, delta = self._main, self._delta
        n = int(main.alive.sum()) + (delta.n if delta else 0)
        if not n:
            return 0.0, []
        mm = main.mask(flt)
        dm = delta.mask(flt) if delta else None
        allowed = int(mm.sum()) + (int(dm.sum()) if dm is not None else 0)
        ids = None
        if allowed <= max_ids:
            ids = list(main.chroma_ids[mm]) + (list(delta.chroma_ids[dm]) if dm is not None else [])
        return allowed / n, ids

    def search(self, tokens: list[str], flt: Filter, k: int = 50, rare_df: float = 0.02) -> list[KeywordHit]:
        """Top chunks by BM25 among those the filter allows. Scores use the statistics of every
        live chunk (document frequencies, count, mean length), not each segment's own, so the
        answer does not depend on how the chunks are split between the main segment and the
        delta — which differs between replicas (each compacts at its own moments) and after a
        restart. Each segment proposes its best ``pool`` chunks; those are scored again."""
        self._refresh()
        main, delta = self._main, self._delta  # a consistent snapshot
        toks = list(dict.fromkeys(tokens))
        segs = [seg for seg in (main, delta) if seg is not None and seg.bm25 is not None and seg.n]
        n = sum(int(seg.alive.sum()) for seg in segs)
        if not toks or not n:
            return []
        avgdl = sum(float(seg.dl[seg.alive].sum()) for seg in segs) / n
        df = {t: sum(seg.live_df(t) for seg in segs) for t in toks}
        cutoff = max(2, int(rare_df * n))
        rare = [t for t in toks if len(t) >= 2 and df.get(t, 0) <= cutoff]
        pool = max(4 * k, 200)
        found: list[tuple[float, int, _Segment, int]] = []
        for seg in segs:
            ids = seg.bm25.get_tokens_ids(toks)
            if not ids:
                continue
            scores = seg.bm25.get_scores_from_ids(ids)
            scores = np.where(seg.mask(flt), scores, 0.0)
            nz = np.flatnonzero(scores > 0)
            if len(nz) > pool:
                nz = nz[np.argpartition(-scores[nz], pool - 1)[:pool]]
            if not len(nz):
                continue
            for doc, score in zip(nz, seg.rescore(nz, toks, df, n, avgdl)):
                found.append((float(score), int(seg.cids[doc]), seg, int(doc)))
        found.sort(key=lambda f: (-f[0], f[1]))  # ties: the older chunk first, on every replica
        hits: list[KeywordHit] = []
        for score, cid, seg, doc in found[:k]:
            rare_ids = seg.bm25.get_tokens_ids(rare) if rare else []
            inv = {seg.bm25.vocab_dict[t]: t for t in rare if t in seg.bm25.vocab_dict}
            present = _present(seg, doc, rare_ids) if rare_ids else []
            hits.append(KeywordHit(cid, str(seg.record_ids[doc]), score, len(present), len(rare),
                                   max((len(inv[t]) for t in present), default=0)))
        return hits


def _present(seg: _Segment, doc: int, token_ids: list[int]) -> list[int]:
    """Which of ``token_ids`` occur in document ``doc`` (CSC columns are tokens)."""
    indptr = seg.bm25.scores["indptr"]
    indices = seg.bm25.scores["indices"]
    out = []
    for t in token_ids:
        a, b = indptr[t], indptr[t + 1]
        col = indices[a:b]
        j = np.searchsorted(col, doc)
        if j < len(col) and col[j] == doc:
            out.append(t)
    return out


def _build_meta_only(main_cids: np.ndarray, rows: dict, bm) -> _Segment:
    """Metadata columns for a loaded main segment; chunks no longer in the store are dead."""
    n = len(main_cids)
    ordered = []
    alive = np.ones(n, dtype=bool)
    for i, c in enumerate(main_cids):
        r = rows.get(int(c))
        if r is None:
            alive[i] = False
            r = (int(c), "", None, "", "", "", "", "", "", "", 0, 0, "[]", "[]", -1)
        ordered.append(r)
    jpos: dict[int, list[int]] = {}
    upos: dict[int, list[int]] = {}
    for i, r in enumerate(ordered):
        for j in json.loads(r[12] or "[]"):
            jpos.setdefault(j, []).append(i)
        for u in json.loads(r[13] or "[]"):
            upos.setdefault(u, []).append(i)
    seg = _Segment(
        bm25=bm, cids=main_cids.astype(np.int64),
        record_ids=np.array([r[1] for r in ordered], dtype=object),
        kinds=np.array([r[6] for r in ordered], dtype=object),
        categories=np.array([r[8] or "" for r in ordered], dtype=object),
        dates=np.fromiter((r[10] or 0 for r in ordered), dtype=np.int64, count=n),
        public=np.fromiter((bool(r[11]) for r in ordered), dtype=bool, count=n),
        jpos={k: np.array(v, dtype=np.int64) for k, v in jpos.items()},
        upos={k: np.array(v, dtype=np.int64) for k, v in upos.items()},
        alive=alive,
        chroma_ids=np.array([f"{r[1]}::{r[14]}" for r in ordered], dtype=object),
    )
    return seg
