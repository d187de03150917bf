"""The ingestion seam: an outbox table that domain services write to inside their own
transaction, a registry of record builders per kind, and the drain that applies the queue.

In a slice (e.g. ``backend/disputes/kb_source.py``, imported by :func:`discover_sources`)::

    from knowledge_base.models import register_source, enqueue
    async def build(session, ref_id) -> Record | None: ...     # None = the item is gone → delete
    async def all_ids(session) -> list: ...                    # for `hehe kb reindex`
    register_source("dispute", build, all_ids)

and in the service, in the same transaction as the change::

    await enqueue(session, "dispute", dispute.id)              # or op="delete"
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime

log = logging.getLogger(__name__)

OPS = ("upsert", "delete")


class KbQueue(Base):
    __tablename__ = "kb_queue"
    __table_args__ = (Index("ix_kb_queue_pending", "done_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8), default="upsert")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


_PENDING = "kb_enqueued"


async def enqueue(session, kind: str, ref_id, op: str = "upsert") -> KbQueue | None:
    """Record that ``kind``/``ref_id`` changed. Call inside the caller's transaction; no commit
    here. One queue row per record and operation per transaction (None when already queued)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}")
    key = (kind, str(ref_id), op)
    pending = session.sync_session.info.setdefault(_PENDING, set())
    if key in pending:
        return None
    pending.add(key)
    row = KbQueue(kind=kind, ref_id=str(ref_id), op=op, created_at=now())
    session.add(row)
    return row


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _transaction_ended(sync_session: Session) -> None:
    sync_session.info.pop(_PENDING, None)


# ----------------------------------------------------------------------------- sources
Builder = Callable[[object, str], Awaitable[object]]
AllIds = Callable[[object], Awaitable[list]]


@dataclass
class Source:
    kind: str
    builder: Builder
    all_ids: AllIds | None = None


_SOURCES: dict[str, Source] = {}


def register_source(kind: str, builder: Builder, all_ids: AllIds | None = None) -> None:
    """``builder(session, ref_id) -> Record | None`` (None = delete); ``all_ids(session)`` for reindex."""
    _SOURCES[kind] = Source(kind, builder, all_ids)


def unregister_source(kind: str) -> None:
    _SOURCES.pop(kind, None)


def sources() -> dict[str, Source]:
    return dict(_SOURCES)


def slice_modules(leaf: str, package: str = "backend") -> list:
    """Import ``<package>.<slice>.<leaf>`` for every slice that has one (a slice without it is skipped;
    a module that exists but fails to import is logged)."""
    found = []
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        return found
    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{package}.{m.name}.{leaf}"
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                log.warning("cannot import %s: %s", name, e)
    return found


def discover_sources(package: str = "backend") -> list[str]:
    """Import every ``<package>.<slice>.kb_source`` module (each registers its sources / stats providers)."""
    return [m.__name__ for m in slice_modules("kb_source", package)]


# ----------------------------------------------------------------------------- drain
MAX_ATTEMPTS = 5


async def drain(sessionmaker, kb, batch: int = 200, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Apply pending queue rows to the knowledge base. Several rows for the same item collapse
    into the last one. A failing item is retried on the next drain, up to ``max_attempts``.
    Returns the number of queue rows completed."""
    done_total = 0
    while True:
        async with sessionmaker() as session:
            rows = (await session.execute(
                select(KbQueue).where(KbQueue.done_at.is_(None), KbQueue.attempts < max_attempts)
                .order_by(KbQueue.id).limit(batch)
            )).scalars().all()
            if not rows:
                return done_total
            latest: dict[tuple[str, str], KbQueue] = {}
            group: dict[tuple[str, str], list[KbQueue]] = {}
            for r in rows:
                latest[(r.kind, r.ref_id)] = r
                group.setdefault((r.kind, r.ref_id), []).append(r)
            upserts = []
            upsert_keys = []
            failed: dict[tuple[str, str], str] = {}
            deletes: list[tuple[str, str]] = []
            for key, r in latest.items():
                kind, ref = key
                src = _SOURCES.get(kind)
                if r.op == "delete":
                    deletes.append(key)
                    continue
                if src is None:
                    failed[key] = f"no source registered for kind {kind!r}"
                    continue
                try:
                    rec = await src.builder(session, ref)
                except Exception as e:  # noqa: BLE001 - the row records the failure
                    failed[key] = f"{type(e).__name__}: {e}"[:500]
                    continue
                if rec is None:
                    deletes.append(key)
                else:
                    rec.source = f"{kind}:{ref}"
                    upserts.append(rec)
                    upsert_keys.append(key)
            try:
                for kind, ref in deletes:
                    await asyncio.to_thread(kb.delete_source, kind, ref)
                if upserts:
                    await asyncio.to_thread(kb.upsert, upserts)
            except Exception as e:  # noqa: BLE001
                msg = f"{type(e).__name__}: {e}"[:500]
                for key in deletes + upsert_keys:
                    failed[key] = msg
            t = now()
            for key, rs in group.items():
                for r in rs:
                    if key in failed:
                        r.attempts = (r.attempts or 0) + 1
                        r.error = failed[key]
                    else:
                        r.done_at = t
                        done_total += 1
            await session.commit()
            if len(rows) < batch:
                return done_total


async def drain_forever(sessionmaker, kb, interval: float = 2.0) -> None:
    """For the app lifespan: ``asyncio.create_task(drain_forever(sm, kb))``."""
    while True:
        try:
            if kb.ready:
                await drain(sessionmaker, kb)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("kb drain failed")
        await asyncio.sleep(interval)


async def reindex_all(sessionmaker, kb, kinds: list[str] | None = None, progress: bool = True,
                      batch: int = 64) -> dict[str, int]:
    """Rebuild the index of every registered source (or ``kinds``) from the database; records of
    those sources that no longer exist are removed. Returns {kind: records indexed}."""
    from tqdm import tqdm

    out: dict[str, int] = {}
    for kind, src in sorted(_SOURCES.items()):
        if kinds and kind not in kinds:
            continue
        if src.all_ids is None:
            log.warning("source %s has no all_ids(); skipped", kind)
            continue
        async with sessionmaker() as session:
            ids = [str(i) for i in await src.all_ids(session)]
            seen: set[str] = set()
            n = 0
            bar = tqdm(total=len(ids), desc=f"reindex {kind}", unit="rec", disable=not progress)
            for i in range(0, len(ids), batch):
                recs = []
                for ref in ids[i : i + batch]:
                    rec = await src.builder(session, ref)
                    if rec is not None:
                        rec.source = f"{kind}:{ref}"
                        recs.append(rec)
                        seen.add(f"{kind}:{ref}")
                if recs:
                    n += await asyncio.to_thread(kb.upsert, recs)
                bar.update(len(ids[i : i + batch]))
            bar.close()
        stale = [rid for s, rid in kb.store.sources_with_prefix(f"{kind}:").items() if s not in seen]
        if stale:
            await asyncio.to_thread(kb.delete, stale)
        out[kind] = n
    await asyncio.to_thread(kb.compact)
    return out


# ----------------------------------------------------------------------------- the record store
# The source of truth for texts, chunks and their tokens, in the application database (SQLite or
# PostgreSQL), read and written by ``knowledge_base.store.RecordStore``. Every write appends one
# row per record to ``kb_changes`` under a number taken from ``kb_counters`` in the same
# transaction: the counter row is locked until commit, so the numbers become visible in order and a
# process that has followed up to N has seen every change ≤ N (each replica's keyword index follows
# this sequence, ``KnowledgeBase.sync``).
class KbRecord(Base):
    __tablename__ = "kb_records"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    location: Mapped[str] = mapped_column(String(128), default="")
    date: Mapped[int] = mapped_column(Integer, default=0)  # yyyymmdd, 0 = none
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    jids: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of jurisdiction ids (with ancestors)
    owners: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of owner user ids
    text: Mapped[str] = mapped_column(Text, default="")
    sections: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON [[label, body], …]
    source: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)  # "dispute:17"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)


class KbChunk(Base):
    __tablename__ = "kb_chunks"
    # never reuse a chunk id (SQLite would reuse the highest after a delete): the keyword index
    # tells chunks apart by id
    __table_args__ = {"sqlite_autoincrement": True}

    cid: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(128), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    article: Mapped[str | None] = mapped_column(String(128), nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    tokens: Mapped[str] = mapped_column(Text, default="")  # jieba tokens, tab-separated


class KbChange(Base):
    __tablename__ = "kb_changes"
    __table_args__ = (Index("ix_kb_changes_vec_pending", "vec_done", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    record_id: Mapped[str] = mapped_column(String(128))
    writer: Mapped[str] = mapped_column(String(64))  # the process that wrote it (KnowledgeBase.writer)
    vec_done: Mapped[bool] = mapped_column(Boolean, default=True)  # False: the Chroma writer must follow
    at: Mapped[float] = mapped_column(Float)  # epoch seconds (pruning)


class KbCounter(Base):
    __tablename__ = "kb_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class KbLease(Base):
    """The one process that writes an embedded Chroma directory (``name`` = that directory)."""

    __tablename__ = "kb_leases"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    beat: Mapped[float] = mapped_column(Float, default=0.0)
