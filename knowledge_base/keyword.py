"""The record store (SQLite, the source of truth for texts and tokens) and the BM25 keyword
channel (bm25s over jieba tokens).

The BM25 index has a large *main* segment, persisted under ``<data_dir>/kb/bm25`` and rebuilt by
:meth:`KeywordIndex.compact`, plus a small in-memory *delta* segment for chunks written since,
and tombstones for main chunks deleted or replaced since. Upserts and deletes are therefore
visible to the next search at once (the delta is re-indexed lazily, in milliseconds), and a full
rebuild is only needed when the delta has grown (automatic past ``max_delta`` chunks). On start
the store is compared with the saved main segment, so the index never drifts from the store.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knowledge_base.query import Filter
from knowledge_base.records import KINDS

KIND_CODE = {k: i for i, k in enumerate(KINDS)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
  id TEXT PRIMARY KEY, kind TEXT, title TEXT, category TEXT, location TEXT, date INTEGER,
  public INTEGER, jids TEXT, owners TEXT, text TEXT, sections TEXT, source TEXT, updated REAL
);
CREATE INDEX IF NOT EXISTS ix_records_source ON records(source);
CREATE TABLE IF NOT EXISTS chunks (
  cid INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT, idx INTEGER, article TEXT, text TEXT, tokens TEXT
);
CREATE INDEX IF NOT EXISTS ix_chunks_record ON chunks(record_id);
-- every write, by any process: the live index of every other process follows this log
CREATE TABLE IF NOT EXISTS changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT, writer TEXT, vec_done INTEGER,
  at REAL DEFAULT (strftime('%s', 'now'))
);
CREATE INDEX IF NOT EXISTS ix_changes_pending ON changes(vec_done);
-- the one process that writes the embedded Chroma directory (see KnowledgeBase.sync)
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT, beat REAL);
"""


def _meta_from_row(row) -> dict:
    return {
        "id": row[0], "kind": row[1], "title": row[2], "category": row[3], "location": row[4],
        "date": row[5] or 0, "public": bool(row[6]), "jurisdiction_ids": json.loads(row[7] or "[]"),
        "owner_user_ids": json.loads(row[8] or "[]"),
    }


_REC_COLS = "r.id, r.kind, r.title, r.category, r.location, r.date, r.public, r.jids, r.owners"


class RecordStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------- writes
    def upsert(self, rows: list[dict], chunks: list[list[dict]], *, writer: str = "",
               vec_done: bool = True) -> tuple[list[int], list[int], list[str]]:
        """Replace records and their chunks. Returns (removed chunk ids, new chunk ids, ids of other
        records that were replaced because they came from the same source). The change is logged
        for the other processes (``vec_done`` False: Chroma still has to follow)."""
        removed: list[int] = []
        added: list[int] = []
        replaced: list[str] = []
        with self._lock, self._db:
            cur = self._db.cursor()
            for row, chs in zip(rows, chunks):
                if row.get("source"):
                    for (rid,) in cur.execute("SELECT id FROM records WHERE source=? AND id<>?",
                                              (row["source"], row["id"])).fetchall():
                        replaced.append(rid)
                for rid in [row["id"], *replaced]:
                    removed += [c for (c,) in cur.execute("SELECT cid FROM chunks WHERE record_id=?", (rid,))]
                    cur.execute("DELETE FROM chunks WHERE record_id=?", (rid,))
                for rid in replaced:
                    cur.execute("DELETE FROM records WHERE id=?", (rid,))
                cur.execute(
                    "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,strftime('%s','now'))",
                    (row["id"], row["kind"], row["title"], row["category"], row["location"], row["date"],
                     int(row["public"]), json.dumps(row["jurisdiction_ids"]), json.dumps(row["owner_user_ids"]),
                     row["text"], json.dumps(row.get("sections"), ensure_ascii=False) if row.get("sections") else None,
                     row.get("source")),
                )
                for ch in chs:
                    cur.execute("INSERT INTO chunks(record_id, idx, article, text, tokens) VALUES (?,?,?,?,?)",
                                (row["id"], ch["idx"], ch.get("article"), ch["text"], "\t".join(ch["tokens"])))
                    added.append(cur.lastrowid)
                self._log(cur, [row["id"], *replaced], writer, vec_done)
        return removed, added, replaced

    @staticmethod
    def _log(cur, record_ids: list[str], writer: str, vec_done: bool) -> None:
        cur.executemany("INSERT INTO changes(record_id, writer, vec_done) VALUES (?,?,?)",
                        [(rid, writer, int(vec_done)) for rid in record_ids])

    def delete(self, ids: list[str], *, writer: str = "", vec_done: bool = True) -> list[int]:
        removed: list[int] = []
        with self._lock, self._db:
            cur = self._db.cursor()
            for rid in ids:
                removed += [c for (c,) in cur.execute("SELECT cid FROM chunks WHERE record_id=?", (rid,))]
                cur.execute("DELETE FROM chunks WHERE record_id=?", (rid,))
                cur.execute("DELETE FROM records WHERE id=?", (rid,))
            self._log(cur, list(ids), writer, vec_done)
        return removed

    # ---------------------------------------------------------- the change log and the writer lease
    def last_change(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]

    def changes_since(self, seq: int) -> list[tuple[int, str, str]]:
        """(seq, record id, writer) of the changes after ``seq``."""
        with self._lock:
            return self._db.execute("SELECT seq, record_id, writer FROM changes WHERE seq > ? ORDER BY seq",
                                    (seq,)).fetchall()

    def pending_vectors(self, limit: int = 512) -> list[tuple[int, str]]:
        """Changes Chroma has not followed yet (written by a process that did not hold the lease)."""
        with self._lock:
            return self._db.execute("SELECT seq, record_id FROM changes WHERE vec_done = 0 ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()

    def first_change(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(MIN(seq), 0) FROM changes").fetchone()[0]

    def prune_changes(self, older_than: float) -> int:
        """Forget followed changes older than ``older_than`` (epoch seconds); a process that was
        asleep longer than that notices the gap and re-reads the whole store."""
        with self._lock, self._db:
            return self._db.execute("DELETE FROM changes WHERE vec_done = 1 AND at < ?", (older_than,)).rowcount

    def vectors_done(self, seqs: list[int]) -> None:
        with self._lock, self._db:
            self._db.executemany("UPDATE changes SET vec_done = 1 WHERE seq = ?", [(s,) for s in seqs])

    def take_lease(self, holder: str, now: float, stale_after: float) -> bool:
        """Become (or stay) the one writer of the embedded Chroma directory; True when held."""
        with self._lock, self._db:
            self._db.execute("INSERT INTO lease(id, holder, beat) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                             "holder = excluded.holder, beat = excluded.beat "
                             "WHERE lease.holder = excluded.holder OR lease.holder IS NULL OR lease.beat < ?",
                             (holder, now, now - stale_after))
            row = self._db.execute("SELECT holder FROM lease WHERE id = 1").fetchone()
        return bool(row) and row[0] == holder

    def release_lease(self, holder: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE lease SET holder = NULL WHERE id = 1 AND holder = ?", (holder,))

    # ---------------------------------------------------------- reads
    def ids_for_source(self, source: str) -> list[str]:
        with self._lock:
            return [r for (r,) in self._db.execute("SELECT id FROM records WHERE source=?", (source,))]

    def sources_with_prefix(self, prefix: str) -> dict[str, str]:
        with self._lock:
            return {s: r for (r, s) in self._db.execute(
                "SELECT id, source FROM records WHERE source LIKE ?", (prefix.replace("%", "") + "%",))}

    def existing(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        with self._lock:
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                q = f"SELECT id FROM records WHERE id IN ({','.join('?' * len(part))})"
                out |= {r for (r,) in self._db.execute(q, part)}
        return out

    def get(self, rid: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_REC_COLS}, r.text, r.sections, r.source FROM records r WHERE r.id=?",
                                   (rid,)).fetchone()
        if not row:
            return None
        meta = _meta_from_row(row)
        meta["text"] = row[9]
        meta["sections"] = json.loads(row[10]) if row[10] else None
        meta["source"] = row[11]
        return meta

    def chunks_of(self, rid: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT cid, idx, article, text FROM chunks WHERE record_id=? ORDER BY idx",
                                    (rid,)).fetchall()
        return [{"cid": c, "idx": i, "article": a, "text": t} for c, i, a, t in rows]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def all_ids(self) -> list[str]:
        with self._lock:
            return [r for (r,) in self._db.execute("SELECT id FROM records ORDER BY id")]

    def chunk_rows(self, cids: list[int] | None = None):
        """(cid, record_id, article, text, tokens, record meta…) for all chunks or the given ones."""
        base = (f"SELECT c.cid, c.record_id, c.article, c.text, c.tokens, {_REC_COLS}, c.idx "
                "FROM chunks c JOIN records r ON r.id = c.record_id")
        with self._lock:
            if cids is None:
                return self._db.execute(base + " ORDER BY c.cid").fetchall()
            out = []
            for i in range(0, len(cids), 500):
                part = cids[i : i + 500]
                out += self._db.execute(base + f" WHERE c.cid IN ({','.join('?' * len(part))})", part).fetchall()
            return out

    def all_cids(self) -> np.ndarray:
        with self._lock:
            return np.array([c for (c,) in self._db.execute("SELECT cid FROM chunks ORDER BY cid")], dtype=np.int64)


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
    df: np.ndarray | None  # document frequency per vocab id
    alive: np.ndarray = field(default=None)  # bool
    chroma_ids: np.ndarray = field(default=None)  # object: "<record id>::<chunk idx>"

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

    def token_df(self, tokens: list[str]) -> dict[str, int]:
        if self.bm25 is None:
            return {}
        vocab = self.bm25.vocab_dict
        return {t: int(self.df[vocab[t]]) for t in tokens if t in vocab}


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
    df = None
    if n:
        corpus = [r[4].split("\t") if r[4] else [] for r in rows]
        bm = bm25s.BM25()
        bm.index(corpus, show_progress=show_progress)
        indptr = np.asarray(bm.scores["indptr"])
        df = np.diff(indptr)
    return _Segment(
        bm25=bm, cids=cids,
        record_ids=np.array([r[1] for r in rows], dtype=object),
        kinds=np.array([r[6] for r in rows], dtype=object),
        categories=np.array([r[8] or "" for r in rows], dtype=object),
        dates=np.fromiter((r[10] or 0 for r in rows), dtype=np.int64, count=n),
        public=np.fromiter((bool(r[11]) for r in rows), dtype=bool, count=n),
        jpos={k: np.array(v, dtype=np.int64) for k, v in jpos.items()},
        upos={k: np.array(v, dtype=np.int64) for k, v in upos.items()},
        df=df, alive=np.ones(n, dtype=bool),
        chroma_ids=np.array([f"{r[1]}::{r[14]}" for r in rows], dtype=object),
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
                    main_cids = np.load(self.dir / "cids.npy")
                    bm = bm25s.BM25.load(str(self.dir / "bm25"), show_progress=False) if len(main_cids) else None
                    rows = {r[0]: r for r in self.store.chunk_rows([int(c) for c in main_cids])}
                    seg = _build_meta_only(main_cids, rows, bm)
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
            (self.dir / "manifest.json").write_text(json.dumps({"chunks": int(seg.n), "version": 1}))
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
        """Top chunks by BM25 among those the filter allows."""
        self._refresh()
        main, delta = self._main, self._delta  # a consistent snapshot
        toks = list(dict.fromkeys(tokens))
        if not toks:
            return []
        hits: list[KeywordHit] = []
        total = main.n + (delta.n if delta else 0)
        cutoff = max(2, int(rare_df * max(total, 1)))
        df: dict[str, int] = {}
        for seg in (main, delta):
            if seg is not None:
                for t, v in seg.token_df(toks).items():
                    df[t] = df.get(t, 0) + v
        rare = [t for t in toks if len(t) >= 2 and df.get(t, 0) <= cutoff]
        for seg in (main, delta):
            if seg is None or seg.bm25 is None or seg.n == 0:
                continue
            ids = seg.bm25.get_tokens_ids(toks)
            if not ids:
                continue
            scores = seg.bm25.get_scores_from_ids(ids)
            scores = np.where(seg.mask(flt), scores, 0.0)
            nz = np.flatnonzero(scores > 0)
            if not len(nz):
                continue
            top = nz[np.argsort(-scores[nz])[:k]] if len(nz) > k else nz[np.argsort(-scores[nz])]
            rare_ids = seg.bm25.get_tokens_ids(rare) if rare else []
            inv = {seg.bm25.vocab_dict[t]: t for t in rare if t in seg.bm25.vocab_dict}
            for i in top:
                present = _present(seg, int(i), rare_ids) if rare_ids else []
                hits.append(KeywordHit(int(seg.cids[i]), str(seg.record_ids[i]), float(scores[i]), len(present),
                                       len(rare), max((len(inv[t]) for t in present), default=0)))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]


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
    df = np.diff(np.asarray(bm.scores["indptr"])) if bm is not None else None
    seg = _Segment(
        bm25=bm, cids=main_cids.astype(np.int64),
        record_ids=np.array([r[1] for r in ordered], dtype=object),
        kinds=np.array([r[6] for r in ordered], dtype=object),
        categories=np.array([r[8] or "" for r in ordered], dtype=object),
        dates=np.fromiter((r[10] or 0 for r in ordered), dtype=np.int64, count=n),
        public=np.fromiter((bool(r[11]) for r in ordered), dtype=bool, count=n),
        jpos={k: np.array(v, dtype=np.int64) for k, v in jpos.items()},
        upos={k: np.array(v, dtype=np.int64) for k, v in upos.items()},
        df=df, alive=alive,
        chroma_ids=np.array([f"{r[1]}::{r[14]}" for r in ordered], dtype=object),
    )
    return seg
