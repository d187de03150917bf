"""The record store: the knowledge base's records, chunks and tokens in the application database
(SQLite by default, PostgreSQL with several replicas), through SQLAlchemy, synchronously (the
knowledge base runs in worker threads: ``asyncio.to_thread``).

Every write also appends one row per record to ``kb_changes`` under a sequence number taken from
the ``kb_counters`` row in the same transaction. That row stays locked until commit, so sequence
numbers become visible in commit order: a process that has followed the log up to N has seen
every change ≤ N. Each process's keyword index follows that log (``KnowledgeBase.sync``).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, delete, event, func, insert, inspect, select, update
from sqlalchemy.engine import Engine

from backend.core.clock import now
from knowledge_base.models import KbChange, KbChunk, KbCounter, KbLease, KbRecord

log = logging.getLogger(__name__)

R = KbRecord.__table__
C = KbChunk.__table__
CH = KbChange.__table__
CNT = KbCounter.__table__
LEASE = KbLease.__table__
SEQ = "changes"  # the kb_counters row of the change log
IN_BATCH = 500  # ids per IN (…) list

_REC_COLS = (R.c.id, R.c.kind, R.c.title, R.c.category, R.c.location, R.c.date, R.c.public, R.c.jids, R.c.owners)


def _meta_from_row(row) -> dict:
    return {
        "id": row[0], "kind": row[1], "title": row[2], "category": row[3], "location": row[4],
        "date": row[5] or 0, "public": bool(row[6]), "jurisdiction_ids": json.loads(row[7] or "[]"),
        "owner_user_ids": json.loads(row[8] or "[]"),
    }


def make_store_engine(sync_url: str) -> Engine:
    """A small synchronous pool on the application database (the app's own engine is async)."""
    if sync_url.startswith("sqlite"):
        from backend.core.db import _sqlite_pragmas

        engine = create_engine(sync_url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(sync_url, pool_size=4, max_overflow=4, pool_pre_ping=True)


def store_tables_exist(settings) -> bool:
    """Whether the application database has the record store's tables (migrated)."""
    url = settings.sync_db_url
    if url.startswith("sqlite") and not (settings.data_dir / "hehe.db").exists() and not settings.database_url:
        return False
    engine = make_store_engine(url)
    try:
        return inspect(engine).has_table(R.name)
    finally:
        engine.dispose()


def _chunked(xs: list, n: int = IN_BATCH):
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


class RecordStore:
    def __init__(self, engine: Engine, lease_name: str = "chroma"):
        self.engine = engine
        self.lease_name = lease_name[:255]
        self.identity = engine.url.render_as_string(hide_password=True)  # which database (the BM25 files name it)
        self._lock = threading.RLock()  # one writer per process at a time (the database serialises processes)

    @classmethod
    def open(cls, settings, lease_name: str = "chroma", migrate: bool = False) -> "RecordStore":
        """The store on ``settings``' database. Its tables come from the migrations: with ``migrate``
        (``hehe kb`` on a fresh data dir) they are run here when missing; otherwise a missing schema
        is an error that says what to do."""
        url = settings.sync_db_url
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_store_engine(url)
        if not inspect(engine).has_table(R.name):
            if not migrate:
                engine.dispose()
                raise RuntimeError(f"the database has no knowledge-base tables ({R.name}): run `hehe db upgrade`")
            from backend.core import migrate as migrations

            log.info("knowledge base: migrating the database (its record store tables are missing)")
            migrations.upgrade(url)
        store = cls(engine, lease_name)
        store.import_legacy(settings.data_dir / "kb" / "records.sqlite")
        return store

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------- writes
    def upsert(self, rows: list[dict], chunks: list[list[dict]], *, writer: str = "",
               vec_done: bool = True) -> tuple[list[int], list[int], list[str]]:
        """Replace records and their chunks. Returns (removed chunk ids, new chunk ids, ids of other
        records that were replaced because they came from the same source). The change is logged
        for the other processes (``vec_done`` False: Chroma still has to follow)."""
        removed: list[int] = []
        added: list[int] = []
        replaced: list[str] = []
        t = now()
        with self._lock, self.engine.begin() as conn:
            ids = [row["id"] for row in rows]
            sources = [row["source"] for row in rows if row.get("source")]
            for part in _chunked(sources):
                replaced += [rid for (rid,) in conn.execute(select(R.c.id).where(R.c.source.in_(part)))
                             if rid not in set(ids)]
            gone = list(dict.fromkeys(ids + replaced))
            for part in _chunked(gone):
                removed += [c for (c,) in conn.execute(select(C.c.cid).where(C.c.record_id.in_(part)))]
                conn.execute(delete(C).where(C.c.record_id.in_(part)))
                conn.execute(delete(R).where(R.c.id.in_(part)))
            conn.execute(insert(R), [{
                "id": row["id"], "kind": row["kind"], "title": row["title"], "category": row["category"] or "",
                "location": row["location"] or "", "date": row["date"] or 0, "public": bool(row["public"]),
                "jids": json.dumps(row["jurisdiction_ids"]), "owners": json.dumps(row["owner_user_ids"]),
                "text": row["text"], "source": row.get("source"), "updated_at": t,
                "sections": json.dumps(row["sections"], ensure_ascii=False) if row.get("sections") else None,
            } for row in rows])
            params = [{"record_id": row["id"], "idx": ch["idx"], "article": ch.get("article"), "text": ch["text"],
                       "tokens": "\t".join(ch["tokens"])} for row, chs in zip(rows, chunks) for ch in chs]
            if params:
                res = conn.execute(insert(C).returning(C.c.cid, sort_by_parameter_order=True), params)
                added = [c for (c,) in res]
            self._log(conn, gone, writer, vec_done)
        return removed, added, replaced

    @staticmethod
    def _log(conn, record_ids: list[str], writer: str, vec_done: bool) -> None:
        """Number the changes from the counter (locked until commit: numbers appear in order)."""
        if not record_ids:
            return
        last = conn.execute(update(CNT).where(CNT.c.name == SEQ).values(value=CNT.c.value + len(record_ids))
                            .returning(CNT.c.value)).scalar_one()
        first = last - len(record_ids) + 1
        at = time.time()
        conn.execute(insert(CH), [{"seq": first + i, "record_id": rid, "writer": writer, "vec_done": vec_done,
                                   "at": at} for i, rid in enumerate(record_ids)])

    def delete(self, ids: list[str], *, writer: str = "", vec_done: bool = True) -> list[int]:
        removed: list[int] = []
        with self._lock, self.engine.begin() as conn:
            for part in _chunked(list(ids)):
                removed += [c for (c,) in conn.execute(select(C.c.cid).where(C.c.record_id.in_(part)))]
                conn.execute(delete(C).where(C.c.record_id.in_(part)))
                conn.execute(delete(R).where(R.c.id.in_(part)))
            self._log(conn, list(ids), writer, vec_done)
        return removed

    # ---------------------------------------------------------- the change log and the writer lease
    def last_change(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(CNT.c.value).where(CNT.c.name == SEQ)).scalar() or 0

    def changes_since(self, seq: int) -> list[tuple[int, str, str]]:
        """(seq, record id, writer) of the changes after ``seq``."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(CH.c.seq, CH.c.record_id, CH.c.writer)
                                                    .where(CH.c.seq > seq).order_by(CH.c.seq))]

    def pending_vectors(self, limit: int = 512) -> list[tuple[int, str]]:
        """Changes Chroma has not followed yet (written by a process that did not hold the lease)."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(CH.c.seq, CH.c.record_id).where(CH.c.vec_done.is_(False))
                                                    .order_by(CH.c.seq).limit(limit))]

    def first_change(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(CH.c.seq))).scalar() or 0

    def prune_changes(self, older_than: float) -> int:
        """Forget followed changes older than ``older_than`` (epoch seconds); a process that was
        asleep longer than that notices the gap and re-reads the whole store."""
        with self.engine.begin() as conn:
            return conn.execute(delete(CH).where(CH.c.vec_done.is_(True), CH.c.at < older_than)).rowcount

    def vectors_done(self, seqs: list[int]) -> None:
        with self.engine.begin() as conn:
            for part in _chunked(seqs):
                conn.execute(update(CH).where(CH.c.seq.in_(part)).values(vec_done=True))

    def take_lease(self, holder: str, now_s: float, stale_after: float) -> bool:
        """Become (or stay) the one writer of the embedded Chroma directory; True when held."""
        from sqlalchemy.exc import IntegrityError

        with self.engine.connect() as conn:  # a read first: only a free or stale lease costs a write
            row = conn.execute(select(LEASE.c.holder, LEASE.c.beat).where(LEASE.c.name == self.lease_name)).first()
        if row is not None and row[0] not in (None, holder) and row[1] >= now_s - stale_after:
            return False
        with self.engine.begin() as conn:
            n = conn.execute(update(LEASE).where(LEASE.c.name == self.lease_name).where(
                (LEASE.c.holder == holder) | LEASE.c.holder.is_(None) | (LEASE.c.beat < now_s - stale_after))
                .values(holder=holder, beat=now_s)).rowcount
            if n:
                return True
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(LEASE.c.name).where(LEASE.c.name == self.lease_name)).first() is not None:
                    return False  # held by a live process
                conn.execute(insert(LEASE).values(name=self.lease_name, holder=holder, beat=now_s))
            return True
        except IntegrityError:  # another process created it at the same moment
            return False

    def release_lease(self, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(LEASE).where(LEASE.c.name == self.lease_name, LEASE.c.holder == holder)
                         .values(holder=None))

    # ---------------------------------------------------------- reads
    def ids_for_source(self, source: str) -> list[str]:
        with self.engine.connect() as conn:
            return [r for (r,) in conn.execute(select(R.c.id).where(R.c.source == source))]

    def sources_with_prefix(self, prefix: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {s: r for (r, s) in conn.execute(select(R.c.id, R.c.source).where(
                R.c.source.startswith(prefix, autoescape=True)))}

    def existing(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        with self.engine.connect() as conn:
            for part in _chunked(list(ids)):
                out |= {r for (r,) in conn.execute(select(R.c.id).where(R.c.id.in_(part)))}
        return out

    def get(self, rid: str) -> dict | None:
        return self.get_many([rid]).get(rid)

    def get_many(self, ids: list[str]) -> dict[str, dict]:
        """{id: record} for those of ``ids`` that exist (one query per 500: a search reads its hits at once)."""
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for part in _chunked(list(ids)):
                for row in conn.execute(select(*_REC_COLS, R.c.text, R.c.sections, R.c.source).where(R.c.id.in_(part))):
                    meta = _meta_from_row(row)
                    meta["text"] = row[9]
                    meta["sections"] = json.loads(row[10]) if row[10] else None
                    meta["source"] = row[11]
                    out[meta["id"]] = meta
        return out

    def chunks_of(self, rid: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(C.c.cid, C.c.idx, C.c.article, C.c.text).where(C.c.record_id == rid)
                                .order_by(C.c.idx)).all()
        return [{"cid": c, "idx": i, "article": a, "text": t} for c, i, a, t in rows]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(R)).scalar_one()

    def all_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r for (r,) in conn.execute(select(R.c.id).order_by(R.c.id))]

    def chunk_rows(self, cids: list[int] | None = None):
        """(cid, record_id, article, text, tokens, record meta…, idx) for all chunks or the given ones."""
        base = select(C.c.cid, C.c.record_id, C.c.article, C.c.text, C.c.tokens, *_REC_COLS, C.c.idx).join(
            R, R.c.id == C.c.record_id)
        with self.engine.connect() as conn:
            if cids is None:
                return [tuple(r) for r in conn.execute(base.order_by(C.c.cid))]
            out = []
            for part in _chunked(list(cids)):
                out += [tuple(r) for r in conn.execute(base.where(C.c.cid.in_(part)))]
            return out

    def all_cids(self) -> np.ndarray:
        with self.engine.connect() as conn:
            return np.array([c for (c,) in conn.execute(select(C.c.cid).order_by(C.c.cid))], dtype=np.int64)

    # ---------------------------------------------------------- the store before #19
    def import_legacy(self, path: Path) -> int:
        """Copy a pre-database store (``<data_dir>/kb/records.sqlite``) into the database once, when
        the database holds no records yet; the file is renamed ``records.sqlite.imported``. Chroma
        keeps its vectors (chunk ids are ``<record id>::<idx>``); the keyword index reconciles."""
        if not path.exists() or self.count():
            return 0
        src = sqlite3.connect(str(path))
        try:
            recs = src.execute("SELECT id, kind, title, category, location, date, public, jids, owners, text, "
                               "sections, source FROM records").fetchall()
            chunks = src.execute("SELECT record_id, idx, article, text, tokens FROM chunks ORDER BY cid").fetchall()
        finally:
            src.close()
        keys = ("id", "kind", "title", "category", "location", "date", "public", "jids", "owners", "text",
                "sections", "source")
        t = now()
        with self._lock, self.engine.begin() as conn:
            for part in _chunked(recs, 2000):
                conn.execute(insert(R), [{**dict(zip(keys, r)), "public": bool(r[6]), "category": r[3] or "",
                                          "location": r[4] or "", "date": r[5] or 0, "updated_at": t} for r in part])
            for part in _chunked(chunks, 2000):
                conn.execute(insert(C), [dict(zip(("record_id", "idx", "article", "text", "tokens"), c)) for c in part])
            self._log(conn, [r[0] for r in recs], "legacy-import", True)
        path.rename(path.with_name(path.name + ".imported"))
        log.info("knowledge base: %d records copied from %s into the database", len(recs), path)
        return len(recs)
