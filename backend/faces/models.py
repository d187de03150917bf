"""Face embeddings in the application database: the source of truth of every gallery.

Each replica searches an in-memory index of its own (backend/faces/gallery.py) that it
loads from here at start and keeps in step by reading the rows whose ``seq`` is above
the last one it applied (backend/faces/store.py, docs/faces.md "Galleries in the database").
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime


class FaceEmbedding(Base):
    """One enrolled face (a 512-d float32 unit vector, 2048 bytes) — or, once erased, its
    tombstone: ``deleted`` set, ``vector`` emptied (the biometric template is gone from the
    row at once) and a new ``seq``, so every replica sees the erasure as a change."""

    __tablename__ = "face_embeddings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[str] = mapped_column(String(200))  # the case's face_key
    vector_id: Mapped[str] = mapped_column(String(64))  # which photo (number or content hash)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once erased
    seq: Mapped[int] = mapped_column(BigInteger)  # of the last change of the row (add, then erase)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)

    __table_args__ = (
        Index("ix_face_embeddings_changes", "gallery", "seq", unique=True),
        Index("ix_face_embeddings_person", "gallery", "person_id"),
    )


class FaceSequence(Base):
    """The change counter of one gallery. A writer bumps it first thing in its transaction:
    the row lock (PostgreSQL) or the write lock (SQLite) holds the next writer until the
    commit, so changes become visible in ``seq`` order and a reader that has seen ``seq``
    has seen everything below it. ``epoch`` names this database's log: a replica's local
    cache written from another database (or a restored one) is thrown away."""

    __tablename__ = "face_sequences"

    gallery: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    epoch: Mapped[str] = mapped_column(String(32))
