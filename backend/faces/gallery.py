"""Face galleries: 512-d unit vectors keyed by (person_id, vector_id), searched by cosine.

One :class:`Gallery` per name ("missing", "found") under ``settings.faces_dir/<name>/``.

Search
------
* up to ``index_threshold`` vectors: exact search (one matrix-vector product);
* above it: a compressed full scan plus exact re-rank. A faiss ``IndexPQFastScan``
  (product quantization, ``M`` sub-quantizers of 4 bits = ``M/2`` bytes per vector,
  scanned with SIMD shuffles) scores every row approximately; the best ``shortlist``
  rows are re-scored exactly against the float32 rows of the vector file and ranked.
  The index is built lazily on the first search (in the background if
  ``background_build``; searches stay exact until it is ready), then updated by every
  ``add``. Why not a graph index (HNSW): on face-like vectors, which are nearly random
  at the scale of impostor scores, HNSW needed ~55 ms for recall@10 0.98 at 1M and a
  25–100 minute build; the scan + re-rank gives recall@10 0.99 in ~14 ms after an 11 s
  build (docs/faces.md, "Gallery search").

Results are the best score per person (a person may have several photos); scores
are always exact cosines (the re-rank), only the candidate set is approximate.

Files (``<faces_dir>/<name>/``)
-------------------------------
``state.json``            the commit point, replaced atomically: generation, next label,
                          and which index file (if any) is current.
``vectors.<gen>.f32``     raw float32 rows, appended (fsync) on ``add``; memory-mapped.
``records.<gen>.jsonl``   one ``{"l": label, "p": person_id, "v": vector_id}`` per row.
``pq.<gen>.<n>.faiss``    the saved index (saved after a build, a delete, ``flush()``).
``tomb.<gen>.txt``        labels erased since the generation was written (one per line).

Index entry ``i`` is row ``i`` of the vector file. Rows appended after the last index
save are encoded into it at load. A torn append (crash mid-write) is cut back to the
last complete row at load. Files of an older layout (``hnsw.*.bin``) are removed.

Deletion (biometric data)
-------------------------
``erase(person_id)`` is the fast path (≤ 1 s at 1M rows, bench/faces.py ``gallery``): the
person's labels are appended to ``tomb.<gen>.txt`` (fsync), their rows in the vector file are
overwritten with zeros in place (fsync) and their codes in the in-memory index are zeroed;
searches skip tombstoned rows from then on, so every other result is unchanged. The rows
are dropped for good by :meth:`compact` (in a background thread when ``background_build``),
which is what ``delete`` does at once. ``compact`` (and ``delete``) writes a new generation of the vector/record files without the
person, removes the person's codes from the index (faiss compacts the packed codes;
the slots past the end of the last 32-vector block, where ``remove_ids`` leaves a
stale copy of the last code, are then overwritten with zeros), saves the index,
switches ``state.json`` and removes the old files. Files not named by ``state.json``
(left over by a crash) are removed at load. The PQ codebooks (16 centroids per 4-d
sub-space, each the mean of thousands of training sub-vectors, padded with random
vectors for small galleries) are not per-person data and are kept. As with any file
deletion, blocks freed by the filesystem are not wiped: keep the data directory on an
encrypted volume.

The database as the source of truth (``store``, ``face_store=db``)
------------------------------------------------------------------
With a :class:`backend.faces.store.FaceStore`, ``add_many`` and ``erase`` commit to the table
``face_embeddings`` first, then apply the change here through :meth:`pull`, which applies every
row whose change number (``seq``) is above the last one applied, in order: adds as
``add_many``, tombstones as ``erase``. The files above are then this process' cache of the
database, ``sync.json`` saying up to which ``seq`` of which log (``epoch``); the service's
poller calls :meth:`pull` every ``face_sync_seconds`` so other replicas' changes arrive.
Lock order: ``_pull_lock`` before the gallery lock, never the reverse. :meth:`pull` reads a
batch of changes and applies it under the gallery lock and the folder's ``flock``, so processes
sharing one folder never apply a change twice (a search waits for that query, ~1 ms, and the
apply).

Threads: every public method takes the gallery's lock. An index build runs outside
it (in a background thread when ``background_build``, as the service does), so a
gallery crossing the threshold keeps answering (exactly) while the index builds.
faiss' OpenMP thread count is per calling thread: a query's scan uses
``search_threads`` (1: on the busy 2-core host a second thread barely changed the
latency of a single query, and the service runs queries concurrently), a build
``build_threads`` (1: OpenMP threads competing with another busy process made the
1M build 6× slower, 64 s instead of 11 s).
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

log = logging.getLogger(__name__)

DIM = 512
_ROW_BYTES = DIM * 4
GALLERY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# hnsw.*.bin: the index files of the former HNSW version, removed at load
_OUR_FILES = re.compile(
    r"^(vectors\.\d+\.f32|records\.\d+\.jsonl|tomb\.\d+\.txt|pq\.\d+\.\d+\.faiss|hnsw\.\d+\.\d+\.bin|.*\.tmp)$")
_MIN_TRAIN = 1024  # training rows; small galleries are padded with random unit vectors


@dataclass(frozen=True)
class IndexParams:
    M: int = 128  # 4-bit sub-quantizers: M/2 = 64 bytes per vector, 4 dimensions each
    shortlist: int = 5000  # rows re-ranked exactly (docs/faces.md: recall@10 ≥ 0.99 at 1M)
    train_rows: int = 65536  # codebook training sample
    build_threads: int = 1  # 0 = all cores; 2 OpenMP threads built 1M in 64 s instead of 11 s on the busy 2-core host
    search_threads: int = 1  # OpenMP threads for one query's scan


def _faiss():
    import faiss  # imported on first use: galleries below the threshold never need it

    return faiss


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def normalize_rows(vecs) -> np.ndarray:
    a = np.asarray(vecs, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != DIM:
        raise ValueError(f"expected vectors of dimension {DIM}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("vectors contain NaN or inf")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("zero vector")
    return np.ascontiguousarray(a / norms, dtype=np.float32)


def index_slots(index) -> np.ndarray:
    """Every packed code slot of an ``IndexPQFastScan``, unpacked (one row per slot,
    including the padding of the last block): what the index, or its file, holds."""
    faiss = _faiss()
    packer = index.get_CodePacker()
    n2 = -(-index.ntotal // index.bbs) * index.bbs
    out = np.zeros((n2, index.code_size), dtype=np.uint8)
    for s in range(n2):
        packer.unpack_1_c(index.codes.get(), s, faiss.swig_ptr(out[s]))
    return out


class Gallery:
    def __init__(self, name: str, faces_dir: str | Path, *, index_threshold: int = 20000,
                 params: IndexParams | None = None, background_build: bool = False, store=None):
        if not GALLERY_NAME.match(name or ""):
            raise ValueError(f"invalid gallery name {name!r}")
        self.name = name
        self.dir = Path(faces_dir) / name
        self.index_threshold = int(index_threshold)
        self.params = params or IndexParams()
        self.background_build = background_build
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._build_thread: threading.Thread | None = None
        self._closed = False
        self._loaded = False
        self._lockfd: int | None = None
        self._flock_depth = 0
        self._token = None  # what the files looked like after our last load or write
        self._reset_memory()
        self._gen = 0
        self._next_label = 0
        self._mm: np.memmap | None = None
        self._index = None  # faiss.IndexPQFastScan when active; entry i = row i
        self._index_file: str | None = None
        self._index_saves = 0
        self._index_dirty = False
        self.last_build_seconds: float | None = None
        # the database as the source of truth (backend.faces.store.FaceStore); the files are then
        # this process' cache of it, valid up to change ``_seq`` of the log ``_epoch``
        self.store = store
        self._seq = 0
        self._epoch: str | None = None
        self._pull_lock = threading.RLock()

    # ------------------------------------------------------------------ paths / state
    def _reset_memory(self) -> None:
        self._n = 0
        self._labels = np.empty(0, dtype=np.int64)
        self._persons: list[str] = []
        self._vids: list[str] = []
        self._person_rows: dict[str, list[int]] = {}
        self._dead: set[int] = set()  # tombstoned rows (erased, not yet compacted)

    def _tomb_path(self, gen: int | None = None) -> Path:
        return self.dir / f"tomb.{self._gen if gen is None else gen}.txt"

    def _vec_path(self, gen: int | None = None) -> Path:
        return self.dir / f"vectors.{self._gen if gen is None else gen}.f32"

    def _rec_path(self, gen: int | None = None) -> Path:
        return self.dir / f"records.{self._gen if gen is None else gen}.jsonl"

    @property
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _write_state(self) -> None:
        index = None
        if self._index is not None and self._index_file:
            index = {"file": self._index_file, "rows": int(self._index.ntotal), "M": int(self._index.M)}
        _atomic_write_json(self._state_path, {
            "version": 1, "dim": DIM, "gen": self._gen, "next_label": self._next_label, "index": index,
        })

    # ------------------------------------------------------------------ loading
    def load(self) -> "Gallery":
        """(Re)load from disk, then (with a store) apply the database's changes since the cache
        was written. Safe to call again: drops in-memory state first."""
        self._load_cache()
        if self.store is not None:
            self.pull()
        return self

    def _load_cache(self) -> None:
        """The files only (with a store: what this process had applied, up to ``_seq``).
        Never reads the database: it runs under the gallery lock, and ``pull`` takes its own
        lock first and the gallery lock second."""
        with self._exclusive():
            self._load_files()
            sync = self._read_sync() if self.store is not None else None
            if sync:  # what the files hold (another process sharing the folder may have moved on)
                self._epoch, self._seq = sync.get("epoch"), int(sync.get("seq", 0))

    def _load_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._mm = None
        self._index = None
        self._index_file = None
        self._index_dirty = False
        state = {}
        if self._state_path.exists():
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            if state.get("dim", DIM) != DIM:
                raise RuntimeError(f"gallery {self.name}: dimension {state.get('dim')} != {DIM}")
        self._gen = int(state.get("gen", 0))
        self._next_label = int(state.get("next_label", 0))
        index_state = state.get("index")
        keep = {"state.json", self._vec_path().name, self._rec_path().name, self._tomb_path().name}
        if index_state:
            keep.add(index_state["file"])
        for p in self.dir.iterdir():  # leftovers of an interrupted write or delete, old HNSW files
            if p.is_file() and p.name not in keep and _OUR_FILES.match(p.name):
                p.unlink()
        self._load_rows()
        if not state or "hnsw" in state:
            self._write_state()
        if self._n > self.index_threshold and index_state and (self.dir / index_state["file"]).exists():
            self._load_index(index_state)
        elif index_state:  # below the threshold now (deletions or a new setting)
            (self.dir / index_state["file"]).unlink(missing_ok=True)
            self._write_state()
        self._loaded = True

    def _load_rows(self) -> None:
        self._reset_memory()
        vec_path, rec_path = self._vec_path(), self._rec_path()
        vec_path.touch(exist_ok=True)
        rec_path.touch(exist_ok=True)
        labels, persons, vids = [], [], []
        ends = [0]  # byte offset after each complete record
        with open(rec_path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line (crash during an append)
            try:
                r = json.loads(data[pos:nl])
                label, person, vid = int(r["l"]), str(r["p"]), str(r["v"])
            except (ValueError, KeyError, TypeError):
                if nl + 1 < len(data):  # records follow: not a torn append, refuse to guess
                    raise RuntimeError(f"gallery {self.name}: corrupt record at byte {pos} of {rec_path}") from None
                break  # a damaged last line is a torn append too
            labels.append(label)
            persons.append(person)
            vids.append(vid)
            pos = nl + 1
            ends.append(pos)
        del data
        vec_rows = vec_path.stat().st_size // _ROW_BYTES
        n = min(len(labels), vec_rows)
        if ends[n] != rec_path.stat().st_size:
            os.truncate(rec_path, ends[n])
            log.warning("gallery %s: cut torn record file back to %d rows", self.name, n)
        if vec_path.stat().st_size != n * _ROW_BYTES:
            os.truncate(vec_path, n * _ROW_BYTES)
            log.warning("gallery %s: cut torn vector file back to %d rows", self.name, n)
        self._n = n
        self._labels = np.asarray(labels[:n], dtype=np.int64)
        self._persons = persons[:n]
        self._vids = vids[:n]
        self._reindex()
        if n:
            self._next_label = max(self._next_label, int(self._labels.max()) + 1)
        self._load_tombstones()

    def _load_tombstones(self) -> None:
        path = self._tomb_path()
        if not path.exists():
            return
        gone = {int(x) for x in path.read_text(encoding="ascii").split() if x.strip().isdigit()}
        if not gone:
            return
        rows = np.nonzero(np.isin(self._labels, np.fromiter(gone, dtype=np.int64)))[0].tolist()
        self._dead = set(rows)
        self._zero_rows(rows)  # a crash between the tombstone and the zeroing: zero them now
        for p in {self._persons[r] for r in rows}:
            left = [r for r in self._person_rows.get(p, []) if r not in self._dead]
            if left:
                self._person_rows[p] = left
            else:
                self._person_rows.pop(p, None)

    def _reindex(self) -> None:
        self._person_rows = {}
        for i, p in enumerate(self._persons):
            if i not in self._dead:
                self._person_rows.setdefault(p, []).append(i)

    def _matrix(self) -> np.ndarray:
        if self._n == 0:
            return np.empty((0, DIM), dtype=np.float32)
        if self._mm is None or self._mm.shape[0] != self._n:
            self._mm = np.memmap(self._vec_path(), dtype=np.float32, mode="r", shape=(self._n, DIM))
        return self._mm

    def _disk_token(self):
        try:
            st, rec = self._state_path.stat(), self._rec_path().stat()
        except FileNotFoundError:
            return None
        tomb = self._tomb_path()
        return (st.st_ino, st.st_mtime_ns, st.st_size, rec.st_ino, rec.st_size,
                tomb.stat().st_size if tomb.exists() else 0)

    def _sync(self) -> None:
        """Load on first use; reload when another process (e.g. ``hehe faces delete``
        while the server runs) changed the files since we last read or wrote them."""
        if not self._loaded:
            self._load_cache()
        elif self._disk_token() != self._token:
            log.info("gallery %s changed on disk (another process); reloading", self.name)
            self._load_cache()

    @contextmanager
    def _exclusive(self):
        """The gallery lock plus an advisory file lock, so processes sharing the folder
        (server, CLI, a separate bot process) never write at the same time."""
        with self._lock:
            if self._flock_depth == 0 and fcntl is not None:
                if self._lockfd is None:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    self._lockfd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._lockfd, fcntl.LOCK_EX)
            self._flock_depth += 1
            try:
                yield
            finally:
                self._flock_depth -= 1
                if self._flock_depth == 0:
                    self._token = self._disk_token()
                    if fcntl is not None and self._lockfd is not None:
                        fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ info
    def __len__(self) -> int:
        """Vectors that can be found (erased rows awaiting compaction do not count)."""
        with self._lock:
            self._sync()
            return self._n - len(self._dead)

    @property
    def uses_index(self) -> bool:
        return self._n > self.index_threshold

    def persons(self) -> list[str]:
        with self._lock:
            self._sync()
            return list(self._person_rows)

    def __contains__(self, person_id: str) -> bool:
        with self._lock:
            self._sync()
            return person_id in self._person_rows

    def vector_ids(self, person_id: str) -> list[str]:
        with self._lock:
            self._sync()
            return [self._vids[i] for i in self._person_rows.get(person_id, [])]

    def vectors(self, person_id: str) -> tuple[list[str], np.ndarray]:
        """The person's live rows: their vector ids and unit vectors (a copy, shape (n, 512))."""
        with self._lock:
            self._sync()
            rows = [r for r in self._person_rows.get(person_id, []) if r not in self._dead]
            vecs = np.array(self._matrix()[rows], dtype=np.float32) if rows else np.empty((0, DIM), np.float32)
            return [self._vids[r] for r in rows], vecs

    # ------------------------------------------------------------------ add
    def add(self, person_id: str, vec, vector_id: str | None = None) -> str:
        """Add one vector; returns its vector_id. An existing (person_id, vector_id) is kept as is."""
        return self.add_many([person_id], normalize_rows(vec), [vector_id])[0]

    def add_many(self, person_ids: list[str], vecs, vector_ids: list[str | None] | None = None) -> list[str]:
        vecs = normalize_rows(vecs)
        m = len(person_ids)
        if vecs.shape[0] != m:
            raise ValueError("person_ids and vecs differ in length")
        vector_ids = list(vector_ids) if vector_ids is not None else [None] * m
        if len(vector_ids) != m:
            raise ValueError("vector_ids and vecs differ in length")
        for p in person_ids:
            if not isinstance(p, str) or not p or len(p) > 200:
                raise ValueError(f"invalid person_id {p!r}")
        out = [str(v) if v else uuid.uuid4().hex for v in vector_ids]
        if self.store is None:
            return self._add_local(person_ids, vecs, out)
        if any(len(v) > 64 for v in out):
            raise ValueError("vector ids are at most 64 characters")
        self.store.append(self.name, list(person_ids), out, vecs)  # committed: the source of truth
        self.pull()  # searchable here at once (and on other replicas at their next poll)
        return out

    def _add_local(self, person_ids: list[str], vecs: np.ndarray, vector_ids: list[str]) -> list[str]:
        with self._exclusive():
            self._sync()
            out: list[str] = []
            rows: list[int] = []
            seen: set[tuple[str, str]] = set()
            for j, (p, v) in enumerate(zip(person_ids, vector_ids)):
                out.append(v)
                key = (p, v)
                if key in seen or any(self._vids[i] == v for i in self._person_rows.get(p, ())):
                    continue  # same photo enrolled again: idempotent
                seen.add(key)
                rows.append(j)
            if not rows:
                return out
            new = vecs[rows]
            k = len(rows)
            labels = np.arange(self._next_label, self._next_label + k, dtype=np.int64)
            new_p = [person_ids[j] for j in rows]
            new_v = [out[j] for j in rows]
            self._append_files(new, labels, new_p, new_v)
            base = self._n
            self._labels = np.concatenate([self._labels, labels])
            self._persons.extend(new_p)
            self._vids.extend(new_v)
            for i, p in enumerate(new_p):
                self._person_rows.setdefault(p, []).append(base + i)
            self._n += k
            self._next_label += k
            if self._index is not None:
                self._index_add(self._index, new)
                self._index_dirty = True
            return out

    def _append_files(self, vecs: np.ndarray, labels: np.ndarray, persons: list[str], vids: list[str]) -> None:
        vec_path, rec_path = self._vec_path(), self._rec_path()
        vec_size, rec_size = self._n * _ROW_BYTES, rec_path.stat().st_size
        lines = "".join(
            json.dumps({"l": int(label), "p": p, "v": v}, ensure_ascii=False) + "\n"
            for label, p, v in zip(labels.tolist(), persons, vids)
        ).encode("utf-8")
        try:
            with open(vec_path, "ab") as fh:
                fh.write(vecs.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            with open(rec_path, "ab") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            os.truncate(vec_path, vec_size)  # keep rows and records aligned
            os.truncate(rec_path, rec_size)
            raise

    # ------------------------------------------------------------------ index
    def _build_threads(self) -> int:
        return self.params.build_threads or (os.cpu_count() or 1)

    def _index_add(self, index, vecs: np.ndarray) -> None:
        """Encode rows into the index (they become its next entries)."""
        _faiss().omp_set_num_threads(1 if len(vecs) < 1000 else self._build_threads())
        index.add(np.ascontiguousarray(vecs, dtype=np.float32))

    def _new_index(self, mat: np.ndarray, n: int):
        """Train the codebooks on a sample of ``mat[:n]`` and encode those rows (None if closed meanwhile)."""
        faiss = _faiss()
        faiss.omp_set_num_threads(self._build_threads())
        index = faiss.IndexPQFastScan(DIM, self.params.M, 4, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        t = min(n, self.params.train_rows)
        sample = np.sort(rng.choice(n, t, replace=False)) if t < n else np.arange(n)
        train = np.asarray(mat[sample], dtype=np.float32)
        if len(train) < _MIN_TRAIN:  # k-means needs points; tiny galleries get random padding
            pad = rng.standard_normal((_MIN_TRAIN - len(train), DIM)).astype(np.float32)
            train = np.concatenate([train, pad / np.linalg.norm(pad, axis=1, keepdims=True)])
        index.train(np.ascontiguousarray(train))
        del train
        step = 65536
        for s in range(0, n, step):
            if self._closed:
                return None
            index.add(np.ascontiguousarray(mat[s:min(n, s + step)]))
        return index

    @staticmethod
    def _remove_rows(index, rows: np.ndarray) -> None:
        """Remove entries (= rows) from the index, then zero the slots past its end: faiss'
        remove_ids compacts the packed codes but leaves the previous last code(s) in the
        padding of the last 32-vector block (it would be saved with the index)."""
        if not len(rows):
            return
        faiss = _faiss()
        index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64)))
        packer = index.get_CodePacker()
        zero = np.zeros(index.code_size, dtype=np.uint8)
        end = -(-index.ntotal // index.bbs) * index.bbs
        for s in range(int(index.ntotal), end):
            packer.pack_1_c(faiss.swig_ptr(zero), s, index.codes.get())

    def build_index(self, save: bool = True) -> float:
        """Build the index from all rows now (otherwise done on the first search).

        The build itself runs without the gallery lock (searches, adds and deletes go
        on meanwhile, searches exactly); at the end, rows deleted during the build are
        removed and rows added during it are encoded before the index is installed.
        """
        with self._build_lock:
            with self._lock:
                self._sync()
                if self._index is not None:
                    return 0.0
                n0, labels0, next0 = self._n, self._labels.copy(), self._next_label
                mat = self._matrix()  # this mapping stays valid even if a delete replaces the file
            t0 = time.perf_counter()
            index = self._new_index(mat, n0)
            del mat
            if index is None:
                return 0.0
            with self._exclusive():
                if self._closed:
                    return 0.0
                self._sync()
                if self._index is not None:  # a reload picked up an index another process saved
                    return 0.0
                still = np.isin(labels0, self._labels)
                self._remove_rows(index, np.nonzero(~still)[0])  # deleted while building: never saved
                new_rows = np.nonzero(self._labels >= next0)[0]
                if len(new_rows):
                    self._index_add(index, self._matrix()[new_rows])
                if index.ntotal != self._n or not np.array_equal(
                        np.concatenate([labels0[still], self._labels[new_rows]]), self._labels):
                    log.error("gallery %s: index does not line up with the rows; dropped", self.name)
                    return 0.0
                self._index = index
                self._index_dirty = True
                self.last_build_seconds = time.perf_counter() - t0
                log.info("gallery %s: index of %d vectors built in %.1fs", self.name, n0, self.last_build_seconds)
                if self._n <= self.index_threshold:
                    self._index = None  # shrank below the threshold meanwhile
                elif save:
                    self._save_index()
                return self.last_build_seconds

    def _start_background_build(self) -> None:
        if self._build_thread is not None and self._build_thread.is_alive():
            return

        def run():
            try:
                self.build_index()
            except Exception:  # pragma: no cover - logged, searches stay exact
                log.exception("gallery %s: index build failed; searches stay exact", self.name)

        self._build_thread = threading.Thread(target=run, name=f"index-build-{self.name}", daemon=True)
        self._build_thread.start()

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background build (returns True when an index is in use)."""
        t = self._build_thread
        if t is not None:
            t.join(timeout)
        return self._index is not None

    def _load_index(self, index_state: dict) -> None:
        faiss = _faiss()
        name = index_state["file"]
        path = self.dir / name
        try:
            index = faiss.read_index(str(path))
        except Exception as e:  # corrupt file: rebuild from the vectors
            log.warning("gallery %s: cannot load %s (%s); will rebuild", self.name, name, e)
            path.unlink(missing_ok=True)
            self._write_state()
            return
        ok = (isinstance(index, faiss.IndexPQFastScan) and index.d == DIM and index.M == self.params.M
              and int(index.ntotal) == int(index_state.get("rows", -1)) and index.ntotal <= self._n
              and name.startswith(f"pq.{self._gen}."))
        if not ok:  # other parameters, or does not match the rows: rebuild
            log.warning("gallery %s: %s does not match the gallery; will rebuild", self.name, name)
            path.unlink(missing_ok=True)
            self._write_state()
            return
        self._index = index
        self._index_file = name
        self._index_saves = int(name.split(".")[2])
        if index.ntotal < self._n:  # rows appended after the last save
            self._index_add(index, self._matrix()[int(index.ntotal):])
            self._index_dirty = True

    def _save_index(self) -> None:
        """Save the index to a new file and switch state.json to it (then drop the old file)."""
        if self._index is None:
            return
        self._index_saves += 1
        name = f"pq.{self._gen}.{self._index_saves}.faiss"
        tmp = self.dir / (name + ".tmp")
        _faiss().write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / name)
        old = self._index_file
        self._index_file = name
        self._write_state()
        if old and old != name:
            (self.dir / old).unlink(missing_ok=True)
        self._index_dirty = False

    def flush(self) -> None:
        """Persist the index if it changed since it was last saved."""
        with self._exclusive():
            self._sync()
            if self._index is not None and self._index_dirty:
                self._save_index()

    def close(self) -> None:
        """Save a changed index. A background build still running is abandoned (rebuilt next time)."""
        self.flush()
        with self._lock:
            if self._build_thread is not None and self._build_thread.is_alive():
                self._closed = True
            self._mm = None

    # ------------------------------------------------------------------ search
    def search(self, vec, k: int = 5) -> list[tuple[str, float]]:
        """Top ``k`` persons by their best cosine score, best first."""
        return [(p, s) for p, s, _ in self._search(vec, k)]

    def search_vectors(self, vec, k: int = 5) -> list[tuple[str, float, str]]:
        """Like :meth:`search`, with the vector id of each person's best row (which photo matched)."""
        with self._lock:
            return [(p, s, self._vids[r]) for p, s, r in self._search(vec, k)]

    def _search(self, vec, k: int) -> list[tuple[str, float, int]]:
        q = normalize_rows(vec)[0]
        if k <= 0:
            return []
        with self._lock:
            self._sync()
            if self._n == 0:
                return []
            if self._n > self.index_threshold:
                if self._index is None:
                    if self.background_build:
                        self._start_background_build()  # exact search until it is ready
                        return self._search_exact(q, k)
                    self.build_index()
                if self._index is not None:
                    return self._search_index(q, k)
            return self._search_exact(q, k)

    def exact_search(self, vec, k: int = 5) -> list[tuple[str, float]]:
        """Brute-force search whatever the size (baseline for tests and benchmarks)."""
        q = normalize_rows(vec)[0]
        with self._lock:
            self._sync()
            return [(p, s) for p, s, _ in self._search_exact(q, k)] if self._n and k > 0 else []

    def _best_per_person(self, rows, scores, k: int) -> list[tuple[str, float, int]]:
        out: dict[str, tuple[str, float, int]] = {}
        dead = self._dead
        for r, s in zip(rows, scores):
            r = int(r)
            if dead and r in dead:
                continue
            p = self._persons[r]
            if p not in out:
                out[p] = (p, float(s), r)
                if len(out) == k:
                    break
        return list(out.values())

    def _search_exact(self, q: np.ndarray, k: int) -> list[tuple[str, float, int]]:
        scores = np.array(self._matrix() @ q)
        if self._dead:
            scores[np.fromiter(self._dead, dtype=np.int64)] = -np.inf
        n = self._n
        m = min(n, max(4 * k, 32))
        while True:
            top = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            res = self._best_per_person(top, scores[top], k)
            # persons absent from the top m score below all of them: exact once k are found
            if len(res) >= k or m >= n:
                return res
            m = min(n, m * 4)

    def _search_index(self, q: np.ndarray, k: int) -> list[tuple[str, float, int]]:
        """Approximate scores of every row from the codes; the best ``shortlist`` re-scored exactly."""
        faiss = _faiss()
        n = self._n
        m = max(self.params.shortlist, 4 * k)
        while m < n:
            faiss.omp_set_num_threads(self.params.search_threads)
            _, ids = self._index.search(q[None, :], m)
            rows = np.sort(ids[0][ids[0] >= 0])  # file order: sequential-ish reads
            scores = np.empty(len(rows), dtype=np.float32)
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(q),
                                             faiss.swig_ptr(self._matrix()), faiss.swig_ptr(rows),
                                             DIM, 1, len(rows))
            order = np.argsort(-scores, kind="stable")
            res = self._best_per_person(rows[order], scores[order], k)
            if len(res) >= k:
                return res
            m *= 4  # persons with many rows filled the shortlist: widen it
        return self._search_exact(q, k)  # the shortlist would be every row

    # ------------------------------------------------------------------ delete
    def delete(self, person_id: str) -> int:
        """Remove every vector of ``person_id`` from memory, the index and the disk, and
        compact the files at once. Returns how many vectors were removed (0 if not enrolled)."""
        if self.store is not None:
            n = self.store.erase(self.name, person_id)
            self._pull(compact_later=False)
            self.compact()
            return n
        with self._exclusive():
            n = self._erase_local(person_id, compact_later=False)
            self.compact()
            return n

    def erase(self, person_id: str, *, compact_later: bool = True) -> int:
        """Erase ``person_id`` now (tombstone, zeroed rows and codes); the files are compacted
        later (a background thread when ``background_build``, else the next :meth:`compact`).
        With a store: the database rows become tombstones (vectors emptied) in one commit, then
        this process applies the change at once; other replicas within their poll interval."""
        if self.store is not None:
            n = self.store.erase(self.name, person_id)
            self._pull(compact_later=compact_later)
            return n
        return self._erase_local(person_id, compact_later=compact_later)

    def _erase_local(self, person_id: str, *, compact_later: bool = True) -> int:
        with self._exclusive():
            self._sync()
            rows = self._person_rows.pop(person_id, None)
            if not rows:
                return 0
            labels = self._labels[rows].tolist()
            with open(self._tomb_path(), "a", encoding="ascii") as fh:
                fh.write("".join(f"{lb}\n" for lb in labels))
                fh.flush()
                os.fsync(fh.fileno())
            self._dead.update(rows)
            self._zero_rows(rows)
            if self._index is not None:
                faiss = _faiss()
                packer = self._index.get_CodePacker()
                zero = np.zeros(self._index.code_size, dtype=np.uint8)
                for r in rows:
                    if r < self._index.ntotal:
                        packer.pack_1_c(faiss.swig_ptr(zero), int(r), self._index.codes.get())
                self._index_dirty = True
            log.info("gallery %s: erased %d vectors of one person (compaction pending)", self.name, len(rows))
        if compact_later and self.background_build:
            self._start_background_compaction()
        return len(rows)

    def _zero_rows(self, rows) -> None:
        if not rows:
            return
        zero = bytes(_ROW_BYTES)
        fd = os.open(self._vec_path(), os.O_WRONLY)
        try:
            for r in sorted(rows):
                os.pwrite(fd, zero, int(r) * _ROW_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _start_background_compaction(self) -> None:
        t = getattr(self, "_compact_thread", None)
        if t is not None and t.is_alive():
            return  # the running one picks up what was erased before it took the lock

        def run():
            try:
                self.compact()
            except Exception:  # pragma: no cover - logged; the tombstones keep searches right
                log.exception("gallery %s: compaction failed; tombstones stay in force", self.name)

        self._compact_thread = threading.Thread(target=run, name=f"compact-{self.name}", daemon=True)
        self._compact_thread.start()

    def wait_for_compaction(self, timeout: float | None = None) -> None:
        t = getattr(self, "_compact_thread", None)
        if t is not None:
            t.join(timeout)

    def compact(self) -> int:
        """Write a new generation without the erased rows; returns how many rows were dropped."""
        with self._exclusive():
            self._sync()
            if not self._dead:
                return 0
            rows = sorted(self._dead)
            keep = np.ones(self._n, dtype=bool)
            keep[rows] = False
            mat = self._matrix()
            new_gen = self._gen + 1
            new_vec, new_rec = self._vec_path(new_gen), self._rec_path(new_gen)
            keep_idx = np.nonzero(keep)[0]
            with open(new_vec, "wb") as fh:
                for s in range(0, len(keep_idx), 65536):
                    fh.write(np.ascontiguousarray(mat[keep_idx[s:s + 65536]]).tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            labels = self._labels[keep_idx]
            persons = [self._persons[i] for i in keep_idx.tolist()]
            vids = [self._vids[i] for i in keep_idx.tolist()]
            with open(new_rec, "wb") as fh:
                fh.write("".join(
                    json.dumps({"l": int(lb), "p": p, "v": v}, ensure_ascii=False) + "\n"
                    for lb, p, v in zip(labels.tolist(), persons, vids)
                ).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())

            old_files = [self._vec_path(), self._rec_path(), self._tomb_path()]
            if self._index_file:
                old_files.append(self.dir / self._index_file)
            del mat
            self._mm = None
            self._gen = new_gen
            self._labels, self._persons, self._vids = labels, persons, vids
            self._n = len(labels)
            self._dead = set()
            self._reindex()

            if self._index is not None:
                self._remove_rows(self._index, np.asarray(rows, dtype=np.int64))
                if self._n > self.index_threshold:
                    self._index_saves = 0
                    self._save_index()  # writes state.json (the commit point)
                else:
                    self._index = None
                    self._index_file = None
                    self._write_state()
            else:
                self._write_state()
            for p in old_files:
                if self.dir / (self._index_file or "") != p:
                    p.unlink(missing_ok=True)
            _fsync_dir(self.dir)
            log.info("gallery %s: compacted, %d erased vectors dropped", self.name, len(rows))
            return len(rows)

    # ------------------------------------------------------------------ database (store)
    @property
    def _sync_path(self) -> Path:
        return self.dir / "sync.json"

    def _read_sync(self) -> dict:
        try:
            return json.loads(self._sync_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _write_sync(self) -> None:
        _atomic_write_json(self._sync_path, {"epoch": self._epoch, "seq": self._seq})

    @property
    def seq(self) -> int:
        """The last change of the database's log applied here."""
        return self._seq

    def pull(self) -> int:
        """Apply the database's changes since the last one applied here; returns how many rows
        changed. Called by the service's poller every ``face_sync_seconds`` and after each
        write of this process. Without a store: 0."""
        return self._pull()

    def _pull(self, *, compact_later: bool = True, batch: int = 50_000) -> int:
        if self.store is None:
            return 0
        with self._pull_lock:  # one pull at a time; always taken before the gallery lock
            if not self._loaded:
                self._load_cache()
            head, epoch = self.store.head(self.name)
            if epoch is None and self._epoch is None and self._n:
                return self._import_local()
            if epoch != self._epoch:
                if self._n or self._epoch is not None:
                    log.warning("gallery %s: local cache is not of this database's log; reloading it "
                                "from the database", self.name)
                    self._wipe_local()
                self._epoch, self._seq = epoch, 0
            applied = 0
            while True:
                # Under the folder's lock from reading the changes to recording how far they were
                # applied: a process sharing the folder (replicas on one data volume) has then either
                # applied a change and said so in sync.json, which _sync() reads, or not at all.
                with self._exclusive():
                    self._sync()
                    if head <= self._seq:
                        return applied
                    ch = self.store.changes(self.name, self._seq, batch)
                    if not len(ch):  # nothing between: numbers may have gaps
                        self._seq = head
                        return applied
                    # after each step: the files it wrote are ours, not another process' to reload
                    for run in ch.runs():
                        if run[0] == "add":
                            self._add_local(run[1], run[3], run[2])  # unit rows: add_many normalized them
                            self._token = self._disk_token()
                        else:
                            for p in run[1]:
                                self._erase_local(p, compact_later=compact_later)
                                self._token = self._disk_token()
                    self._seq = ch.last_seq
                    self._write_sync()
                applied += len(ch)

    def _wipe_local(self) -> None:
        with self._exclusive():
            self._mm = None
            self._index = None
            self._index_file = None
            for p in self.dir.iterdir():
                if p.is_file() and (p.name in ("state.json", "sync.json") or _OUR_FILES.match(p.name)):
                    p.unlink()
            self._load_files()

    def _import_local(self) -> int:
        """A file gallery of an earlier version meets an empty database: its rows go in."""
        with self._exclusive():
            live = np.array(sorted(r for rows in self._person_rows.values() for r in rows), dtype=np.int64)
            if not len(live):  # only erased rows: nothing to keep
                self._wipe_local()
                return 0
            mat = self._matrix()
            for s in range(0, len(live), 50_000):
                idx = live[s:s + 50_000]
                self.store.append(self.name, [self._persons[i] for i in idx],
                                        [self._vids[i] for i in idx], np.asarray(mat[idx]))
            _, self._epoch = self.store.head(self.name)
            self._seq = 0
            log.info("gallery %s: %d local vectors imported into the database", self.name, len(live))
        self._write_sync()
        return self._pull() + len(live)
