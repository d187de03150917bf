"""The face galleries' rows in the database, and their change log (``seq``).

Synchronous SQLAlchemy Core on its own small engine (psycopg2 on PostgreSQL, pysqlite on
SQLite): the gallery is used from worker threads (the face engine's thread, the poller),
never on the event loop, and a write here commits at once, like the file gallery's fsync.

Writers (``append``, ``erase``) first bump the gallery's row of ``face_sequences``; that row
lock (PostgreSQL) or write lock (SQLite) is held to the commit, so the next writer takes
its numbers only after this one's rows are visible: a reader that has applied everything up
to ``seq`` never finds a smaller ``seq`` appearing later. Numbers may have gaps.

Erasure keeps a tombstone: the row's vector is emptied, ``deleted`` set and a new ``seq``
given, so every replica applies it. Tombstones hold no biometric data (a person key and a
photo number) and are kept, so a replica whose cache is weeks old still sees every erasure.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import cast

import numpy as np
from sqlalchemy import Table, create_engine, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from backend.core.clock import now
from backend.core.db import _sqlite_pragmas
from backend.faces.models import FaceEmbedding, FaceSequence

DIM = 512
E = cast(Table, FaceEmbedding.__table__)
S = cast(Table, FaceSequence.__table__)


@dataclass
class Changes:
    """Rows changed after a given ``seq``, in ``seq`` order. ``vectors[i]`` is None for a tombstone."""

    seqs: list[int]
    persons: list[str]
    vector_ids: list[str]
    vectors: list[bytes | None]

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    def runs(self):
        """Consecutive adds as ``("add", persons, vids, matrix)`` and consecutive tombstones as
        ``("erase", persons)``, in order (applying them in order gives the database's state)."""
        i, n = 0, len(self.seqs)
        while i < n:
            j = i
            add = self.vectors[i] is not None
            while j < n and (self.vectors[j] is not None) == add:
                j += 1
            if add:
                mat = np.frombuffer(b"".join(v for v in self.vectors[i:j] if v is not None), dtype=np.float32).reshape(j - i, DIM)
                yield "add", self.persons[i:j], self.vector_ids[i:j], mat
            else:
                yield "erase", list(dict.fromkeys(self.persons[i:j]))
            i = j


_COPY_FROM = 1000  # rows: a bulk load (an import, the benchmark) goes through COPY on PostgreSQL


def _copy_rows(conn, rows: list[dict]) -> None:
    """``COPY ... FROM STDIN`` (text format, bytea in hex): ~10× faster than INSERT for many rows."""
    import io

    def text(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    buf = io.StringIO()
    for r in rows:
        buf.write(f"{text(r['gallery'])}\t{text(r['person_id'])}\t{text(r['vector_id'])}\t"
                  f"\\\\x{r['vector'].hex()}\t{r['seq']}\tf\t{r['changed_at'].isoformat()}\n")
    buf.seek(0)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.copy_expert("COPY face_embeddings (gallery, person_id, vector_id, vector, seq, deleted, changed_at) "
                        "FROM STDIN", buf)
    finally:
        cur.close()


class FaceStore:
    def __init__(self, sync_url: str, *, create_tables: bool = False, pool_size: int = 2):
        kw = {} if sync_url.startswith("sqlite") else {"pool_size": pool_size, "max_overflow": 2,
                                                        "pool_pre_ping": True}
        self.engine = create_engine(sync_url, **kw)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if create_tables:  # SQLite's own file (``faces.db``): not migrated with the main database
            FaceEmbedding.metadata.create_all(self.engine, tables=[E, S])

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ reads
    def head(self, gallery: str) -> tuple[int, str | None]:
        """The gallery's last ``seq`` and the log's epoch (0, None before the first write)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(S.c.seq, S.c.epoch).where(S.c.gallery == gallery)).first()
        return (int(row.seq), row.epoch) if row else (0, None)

    def changes(self, gallery: str, after: int, limit: int = 50_000) -> Changes:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(E.c.seq, E.c.person_id, E.c.vector_id, E.c.vector)
                .where(E.c.gallery == gallery, E.c.seq > after).order_by(E.c.seq).limit(limit)).all()
        return Changes([int(r[0]) for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                       [None if r[3] is None else bytes(r[3]) for r in rows])

    def count(self, gallery: str) -> int:
        """Vectors that can be found (tombstones not counted)."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(E).where(
                E.c.gallery == gallery, E.c.deleted.is_(False))) or 0)

    # ------------------------------------------------------------------ writes
    def _lock(self, conn, gallery: str) -> tuple[int, str]:
        """Take the gallery's counter (held to the commit); returns its seq and epoch."""
        stmt = update(S).where(S.c.gallery == gallery).values(seq=S.c.seq).returning(S.c.seq, S.c.epoch)
        row = conn.execute(stmt).first()
        if row is None:  # the gallery's first write ever (two replicas may race to create it)
            try:
                with conn.begin_nested():
                    conn.execute(insert(S).values(gallery=gallery, seq=0, epoch=uuid.uuid4().hex))
            except IntegrityError:
                pass
            row = conn.execute(stmt).first()
        assert row is not None  # the row exists now (ours or the other writer's)
        return int(row.seq), row.epoch

    def append(self, gallery: str, persons: list[str], vector_ids: list[str], vecs: np.ndarray) -> int:
        """Add rows (an existing live (person, vector id) is kept as is); returns the last seq."""
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        with self.engine.begin() as conn:
            seq, _ = self._lock(conn, gallery)
            live: set[tuple[str, str]] = set()
            distinct = sorted(set(persons))
            for s in range(0, len(distinct), 500):
                chunk = distinct[s:s + 500]
                live.update((r[0], r[1]) for r in conn.execute(select(E.c.person_id, E.c.vector_id).where(
                    E.c.gallery == gallery, E.c.person_id.in_(chunk), E.c.deleted.is_(False))))
            at, rows = now(), []
            for p, v, vec in zip(persons, vector_ids, vecs):
                if (p, v) in live:
                    continue
                live.add((p, v))
                seq += 1
                rows.append({"gallery": gallery, "person_id": p, "vector_id": v, "vector": vec.tobytes(),
                             "seq": seq, "deleted": False, "changed_at": at})
            if len(rows) >= _COPY_FROM and conn.dialect.name == "postgresql":
                _copy_rows(conn, rows)
            else:
                for s in range(0, len(rows), 10_000):
                    conn.execute(insert(E), rows[s:s + 10_000])
            conn.execute(update(S).where(S.c.gallery == gallery).values(seq=seq))
        return seq

    def erase(self, gallery: str, person_id: str) -> int:
        """Tombstone every live row of the person (vector emptied); returns how many."""
        with self.engine.begin() as conn:
            seq, _ = self._lock(conn, gallery)
            ids: list[int] = list(conn.scalars(select(E.c.id).where(
                E.c.gallery == gallery, E.c.person_id == person_id, E.c.deleted.is_(False)).order_by(E.c.id)))
            if not ids:
                return 0
            at = now()
            for i in ids:
                seq += 1
                conn.execute(update(E).where(E.c.id == i).values(deleted=True, vector=None, seq=seq, changed_at=at))
            conn.execute(update(S).where(S.c.gallery == gallery).values(seq=seq))
        return len(ids)
