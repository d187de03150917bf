"""Content-addressed file store: evidence photos and documents, kept by SHA-256."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime
from backend.core.storage import ObjectStore

MAX_FILE_BYTES = 20 * 1024 * 1024


class StoredFile(Base):
    __tablename__ = "stored_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(64), default="application/octet-stream")
    filename: Mapped[str | None] = mapped_column(String(255))
    owner_kind: Mapped[str | None] = mapped_column(String(32), index=True)  # "dispute", "item", ...
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)


MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"GIF8": "image/gif",
         b"RIFF": "image/webp", b"%PDF": "application/pdf"}


def sniff_mime(data: bytes) -> str | None:
    """Image or PDF by magic bytes; None for anything else. The type a client declares is never
    trusted: every stored file's type is the sniffed one."""
    for magic, mime in MAGIC.items():
        if data.startswith(magic):
            if magic == b"RIFF" and data[8:12] != b"WEBP":
                return None
            return mime
    return None


def blob_key(sha: str) -> str:
    """The object-store key of a blob: ``files/<first two hex digits>/<sha256>`` (in the local
    store: ``<data_dir>/files/ab/ab…``, the layout Hehe always had)."""
    return f"files/{sha[:2]}/{sha}"


async def read_blob(store: ObjectStore, sha: str) -> bytes | None:
    """The bytes of a stored file, or None when they are gone (erased, or never kept)."""
    return await store.get(blob_key(sha))


async def keep_blob(store: ObjectStore, data: bytes) -> str:
    """Keep ``data`` content-addressed; returns its SHA-256. Written again when it is already
    there: its time is then recent, and the orphan sweep (:func:`remove_orphans`) leaves it."""
    sha = hashlib.sha256(data).hexdigest()
    await store.put(blob_key(sha), data)
    return sha


async def store_file(
    session: AsyncSession,
    store: ObjectStore,
    data: bytes,
    *,
    mime: str = "application/octet-stream",
    filename: str | None = None,
    owner_kind: str | None = None,
    owner_id: int | None = None,
    uploaded_by: int | None = None,
) -> StoredFile:
    """Keep ``data`` (content-addressed) and its row. ``mime`` is what the client declared; the
    row gets the sniffed type instead (or application/octet-stream)."""
    sha = await keep_blob(store, data)
    f = StoredFile(
        sha256=sha, size=len(data), mime=sniff_mime(data) or "application/octet-stream", filename=filename,
        owner_kind=owner_kind, owner_id=owner_id, uploaded_by=uploaded_by,
    )
    session.add(f)
    await session.flush()
    return f


async def files_of(session: AsyncSession, owner_kind: str, owner_id: int) -> list[StoredFile]:
    rows = await session.scalars(
        select(StoredFile).where(StoredFile.owner_kind == owner_kind, StoredFile.owner_id == owner_id)
        .order_by(StoredFile.id)
    )
    return list(rows)


async def attach(session: AsyncSession, file_ids: list[int], owner_kind: str, owner_id: int) -> None:
    for fid in file_ids:
        f = await session.get(StoredFile, fid)
        if f is not None:
            f.owner_kind, f.owner_id = owner_kind, owner_id


async def remove_orphans(session: AsyncSession, store: ObjectStore, older_than_seconds: float) -> int:
    """Delete blobs that no stored file refers to and that were last written more than
    ``older_than_seconds`` ago: evidence kept during a report that was never submitted (the
    StoredFile row is only written with the case). Returns how many were removed."""
    import time

    known = set(await session.scalars(select(StoredFile.sha256)))
    cutoff = time.time() - older_than_seconds
    removed = 0
    for o in await store.list("files/"):
        sha = o.key.rsplit("/", 1)[-1]
        if sha in known or o.modified >= cutoff:
            continue
        await store.delete(o.key)  # another replica may have removed it first: no error
        removed += 1
    return removed
