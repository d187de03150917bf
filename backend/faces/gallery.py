"""Face galleries: 512-d unit vectors keyed by (person_id, vector_id), searched by cosine.

One :class:`Gallery` per name ("missing", "found") under ``settings.faces_dir/<name>/``.

Search
------
* up to ``hnsw_threshold`` vectors: exact search (one matrix-vector product);
* above it: an hnswlib HNSW index (inner product on unit vectors = cosine), built
  lazily on the first search (in the background if ``background_build``; searches
  stay exact until it is ready), then updated incrementally by every ``add``.

Results are the best score per person (a person may have several photos).

Files (``<faces_dir>/<name>/``)
-------------------------------
``state.json``            the commit point, replaced atomically: generation, next label,
                          and which HNSW file (if any) is current.
``vectors.<gen>.f32``     raw float32 rows, appended (fsync) on ``add``; memory-mapped.
``records.<gen>.jsonl``   one ``{"l": label, "p": person_id, "v": vector_id}`` per row.
``hnsw.<gen>.<n>.bin``    the saved HNSW index (saved after a build, a delete, ``flush()``).

Rows appended after the last HNSW save are re-inserted into it at load (labels are
never reused, so re-inserting is idempotent). A torn append (crash mid-write) is cut
back to the last complete row at load.

Deletion (biometric data)
-------------------------
``delete(person_id)`` writes a new generation of the vector/record files without the
person, overwrites the person's vectors *inside* the HNSW index with random vectors
before marking them deleted (hnswlib's mark_deleted alone keeps the data in the
saved file), saves the index, switches ``state.json`` and removes the old files.
Files not named by ``state.json`` (left over by a crash) are removed at load.
As with any file deletion, blocks freed by the filesystem are not wiped: keep the
data directory on an encrypted volume.

Thread safety: every public method takes the gallery's lock. An HNSW build runs
outside it (in a background thread when ``background_build``, as the service does),
so a gallery crossing the threshold keeps answering (exactly) while the index builds.
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
_OUR_FILES = re.compile(r"^(vectors\.\d+\.f32|records\.\d+\.jsonl|hnsw\.\d+\.\d+\.bin|.*\.tmp)$")


@dataclass(frozen=True)
class HnswParams:
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 512  # docs/faces.md: true match found 200/200 at 1M, ~9 ms; recall@10 0.975 at 100k
    build_threads: int = 0  # 0 = all cores (building only; queries use one thread)


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


class Gallery:
    def __init__(self, name: str, faces_dir: str | Path, *, hnsw_threshold: int = 20000,
                 hnsw: HnswParams | None = None, background_build: bool = False):
        if not GALLERY_NAME.match(name or ""):
            raise ValueError(f"invalid gallery name {name!r}")
        self.name = name
        self.dir = Path(faces_dir) / name
        self.hnsw_threshold = int(hnsw_threshold)
        self.params = hnsw or HnswParams()
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
        self._index = None  # hnswlib.Index when active
        self._index_upto = 0  # every live label < this is in the index
        self._index_file: str | None = None
        self._index_saves = 0
        self._index_dirty = False
        self.last_build_seconds: float | None = None

    # ------------------------------------------------------------------ paths / state
    def _reset_memory(self) -> None:
        self._n = 0
        self._labels = np.empty(0, dtype=np.int64)
        self._persons: list[str] = []
        self._vids: list[str] = []
        self._label_row: dict[int, int] = {}
        self._person_rows: dict[str, list[int]] = {}

    def _vec_path(self, gen: int | None = None) -> Path:
        return self.dir / f"vectors.{self._gen if gen is None else gen}.f32"

    def _rec_path(self, gen: int | None = None) -> Path:
        return self.dir / f"records.{self._gen if gen is None else gen}.jsonl"

    @property
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _write_state(self) -> None:
        hnsw = None
        if self._index is not None and self._index_file:
            hnsw = {
                "file": self._index_file,
                "upto_label": self._index_upto,
                "elements": int(self._index.element_count),
                "M": self.params.M,
                "ef_construction": self.params.ef_construction,
            }
        _atomic_write_json(self._state_path, {
            "version": 1, "dim": DIM, "gen": self._gen, "next_label": self._next_label, "hnsw": hnsw,
        })

    # ------------------------------------------------------------------ loading
    def load(self) -> "Gallery":
        """(Re)load from disk. Safe to call again: drops in-memory state first."""
        with self._exclusive():
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
            hnsw_state = state.get("hnsw")
            keep = {"state.json", self._vec_path().name, self._rec_path().name}
            if hnsw_state:
                keep.add(hnsw_state["file"])
            for p in self.dir.iterdir():  # leftovers of an interrupted write or delete
                if p.is_file() and p.name not in keep and _OUR_FILES.match(p.name):
                    p.unlink()
            self._load_rows()
            if not state:
                self._write_state()
            if self._n > self.hnsw_threshold and hnsw_state and (self.dir / hnsw_state["file"]).exists():
                self._load_index(hnsw_state)
            elif hnsw_state:  # below the threshold now (deletions or a new setting)
                (self.dir / hnsw_state["file"]).unlink(missing_ok=True)
                self._write_state()
            self._loaded = True
            return self

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

    def _reindex(self) -> None:
        self._label_row = {int(label): i for i, label in enumerate(self._labels.tolist())}
        self._person_rows = {}
        for i, p in enumerate(self._persons):
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
        return (st.st_ino, st.st_mtime_ns, st.st_size, rec.st_ino, rec.st_size)

    def _sync(self) -> None:
        """Load on first use; reload when another process (e.g. ``hehe faces delete``
        while the server runs) changed the files since we last read or wrote them."""
        if not self._loaded:
            self.load()
        elif self._disk_token() != self._token:
            log.info("gallery %s changed on disk (another process); reloading", self.name)
            self.load()

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
        with self._lock:
            self._sync()
            return self._n

    @property
    def uses_hnsw(self) -> bool:
        return self._n > self.hnsw_threshold

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
        with self._exclusive():
            self._sync()
            out: list[str] = []
            rows: list[int] = []
            seen: set[tuple[str, str]] = set()
            for j, (p, v) in enumerate(zip(person_ids, vector_ids)):
                v = str(v) if v else uuid.uuid4().hex
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
            for i, (label, p) in enumerate(zip(labels.tolist(), new_p)):
                self._label_row[label] = base + i
                self._person_rows.setdefault(p, []).append(base + i)
            self._n += k
            self._next_label += k
            if self._index is not None:
                self._index_add(new, labels)
                self._index_upto = self._next_label
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

    # ------------------------------------------------------------------ hnsw
    def _new_index(self, capacity: int):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=max(1024, capacity), M=self.params.M,
                         ef_construction=self.params.ef_construction, random_seed=100,
                         allow_replace_deleted=True)
        index.set_ef(self.params.ef_search)
        return index

    def _build_threads(self) -> int:
        return self.params.build_threads or (os.cpu_count() or 1)

    def _index_add(self, vecs: np.ndarray, labels: np.ndarray) -> None:
        index = self._index
        need = index.element_count + len(labels)
        if need > index.get_max_elements():
            index.resize_index(max(need, int(index.get_max_elements() * 1.5)))
        threads = 1 if len(labels) < 1000 else self._build_threads()
        index.add_items(vecs, labels, num_threads=threads, replace_deleted=True)

    def build_index(self, save: bool = True) -> float:
        """Build the HNSW index from all rows now (otherwise done on the first search).

        The build itself runs without the gallery lock (searches, adds and deletes go
        on meanwhile, searches exactly); at the end, rows added during the build are
        inserted and rows deleted during it are scrubbed before the index is installed.
        """
        with self._build_lock:
            with self._lock:
                self._sync()
                if self._index is not None:
                    return 0.0
                n0, labels0, next0 = self._n, self._labels.copy(), self._next_label
                mat = self._matrix()  # this mapping stays valid even if a delete replaces the file
            t0 = time.perf_counter()
            index = self._new_index(int(n0 * 1.25) + 1)
            step = 50_000
            for s in range(0, n0, step):
                if self._closed:
                    return 0.0
                index.add_items(np.ascontiguousarray(mat[s:s + step]), labels0[s:s + step],
                                num_threads=self._build_threads())
            del mat
            with self._exclusive():
                if self._closed:
                    return 0.0
                self._sync()
                if self._index is not None:  # a reload picked up an index another process saved
                    return 0.0
                gone = labels0[~np.isin(labels0, self._labels)]
                self._index = index
                self._index_upto = next0
                if len(gone):
                    self._scrub_index(gone)  # deleted while building: never saved
                new_rows = np.nonzero(self._labels >= next0)[0]
                if len(new_rows):
                    self._index_add(np.ascontiguousarray(self._matrix()[new_rows]), self._labels[new_rows])
                self._index_upto = self._next_label
                self._index_dirty = True
                self.last_build_seconds = time.perf_counter() - t0
                log.info("gallery %s: HNSW index of %d vectors built in %.1fs", self.name, n0,
                         self.last_build_seconds)
                if self._n <= self.hnsw_threshold:
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
                log.exception("gallery %s: HNSW build failed; searches stay exact", self.name)

        self._build_thread = threading.Thread(target=run, name=f"hnsw-build-{self.name}", daemon=True)
        self._build_thread.start()

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background build (returns True when an index is in use)."""
        t = self._build_thread
        if t is not None:
            t.join(timeout)
        return self._index is not None

    def _load_index(self, hnsw_state: dict) -> None:
        import hnswlib

        path = self.dir / hnsw_state["file"]
        index = hnswlib.Index(space="ip", dim=DIM)
        try:
            index.load_index(str(path), max_elements=0, allow_replace_deleted=True)
        except Exception as e:  # corrupt file: rebuild from the vectors
            log.warning("gallery %s: cannot load %s (%s); will rebuild", self.name, path.name, e)
            path.unlink(missing_ok=True)
            return
        if int(index.element_count) != int(hnsw_state.get("elements", -1)):
            log.warning("gallery %s: %s does not match state.json; will rebuild", self.name, path.name)
            path.unlink(missing_ok=True)
            return
        index.set_ef(self.params.ef_search)
        self._index = index
        self._index_file = hnsw_state["file"]
        self._index_saves = int(hnsw_state["file"].split(".")[2]) if hnsw_state["file"].count(".") == 3 else 0
        self._index_upto = int(hnsw_state.get("upto_label", 0))
        missing = np.nonzero(self._labels >= self._index_upto)[0]
        if len(missing):
            mat = self._matrix()
            self._index_add(np.ascontiguousarray(mat[missing]), self._labels[missing])
            self._index_dirty = True
        self._index_upto = self._next_label

    def _save_index(self) -> None:
        """Save the index to a new file and switch state.json to it (then drop the old file)."""
        if self._index is None:
            return
        self._index_saves += 1
        name = f"hnsw.{self._gen}.{self._index_saves}.bin"
        tmp = self.dir / (name + ".tmp")
        self._index.save_index(str(tmp))
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
        """Persist the HNSW index if it changed since it was last saved."""
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
        q = normalize_rows(vec)[0]
        if k <= 0:
            return []
        with self._lock:
            self._sync()
            if self._n == 0:
                return []
            if self._n > self.hnsw_threshold:
                if self._index is None:
                    if self.background_build:
                        self._start_background_build()  # exact search until it is ready
                        return self._search_exact(q, k)
                    self.build_index()
                if self._index is not None:
                    return self._search_hnsw(q, k)
            return self._search_exact(q, k)

    def exact_search(self, vec, k: int = 5) -> list[tuple[str, float]]:
        """Brute-force search whatever the size (baseline for tests and benchmarks)."""
        q = normalize_rows(vec)[0]
        with self._lock:
            self._sync()
            return self._search_exact(q, k) if self._n and k > 0 else []

    def _best_per_person(self, rows, scores, k: int) -> list[tuple[str, float]]:
        out: dict[str, float] = {}
        for r, s in zip(rows, scores):
            p = self._persons[int(r)]
            if p not in out:
                out[p] = float(s)
                if len(out) == k:
                    break
        return list(out.items())

    def _search_exact(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores = np.asarray(self._matrix() @ q)
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

    def _search_hnsw(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        n = self._n
        m = min(n, max(4 * k, 32))
        while True:
            self._index.set_ef(max(self.params.ef_search, m))
            try:
                labels, dists = self._index.knn_query(q, k=m, num_threads=1)
            except RuntimeError:  # hnswlib could not find m live neighbours
                return self._search_exact(q, k)
            pairs = [(self._label_row[lb], 1.0 - float(d))
                     for lb, d in zip(labels[0].tolist(), dists[0].tolist()) if lb in self._label_row]
            res = self._best_per_person([r for r, _ in pairs], [s for _, s in pairs], k)
            if len(res) >= k or m >= n:
                return res
            m = min(n, m * 4)

    # ------------------------------------------------------------------ delete
    def delete(self, person_id: str) -> int:
        """Remove every vector of ``person_id`` from memory, the index and the disk.

        Returns how many vectors were removed (0 if the person was not enrolled).
        """
        with self._exclusive():
            self._sync()
            rows = self._person_rows.get(person_id)
            if not rows:
                return 0
            keep = np.ones(self._n, dtype=bool)
            keep[rows] = False
            gone_labels = self._labels[~keep]
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

            old_files = [self._vec_path(), self._rec_path()]
            if self._index_file:
                old_files.append(self.dir / self._index_file)
            self._mm = None
            self._gen = new_gen
            self._labels, self._persons, self._vids = labels, persons, vids
            self._n = len(labels)
            self._reindex()

            if self._index is not None:
                # overwrite the stored vectors, then hide them (mark_deleted alone keeps the data)
                self._scrub_index(gone_labels)
                if self._n > self.hnsw_threshold:
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
            log.info("gallery %s: deleted %d vectors of one person", self.name, len(rows))
            return len(rows)

    def _scrub_index(self, labels: np.ndarray) -> None:
        in_index = np.asarray([lb for lb in labels.tolist() if lb < self._index_upto], dtype=np.int64)
        if not len(in_index):
            return
        rng = np.random.default_rng()
        noise = normalize_rows(rng.standard_normal((len(in_index), DIM)).astype(np.float32))
        self._index.add_items(noise, in_index, num_threads=1)  # update in place
        for lb in in_index.tolist():
            self._index.mark_deleted(int(lb))
        self._index_dirty = True
