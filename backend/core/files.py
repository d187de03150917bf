"""Content-addressed file store: evidence photos and documents, kept by SHA-256."""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime

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


def blob_path(files_dir: Path, sha: str) -> Path:
    return files_dir / sha[:2] / sha


async def store_file(
    session: AsyncSession,
    files_dir: Path,
    data: bytes,
    *,
    mime: str = "application/octet-stream",
    filename: str | None = None,
    owner_kind: str | None = None,
    owner_id: int | None = None,
    uploaded_by: int | None = None,
) -> StoredFile:
    sha = hashlib.sha256(data).hexdigest()
    p = blob_path(files_dir, sha)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(p)
    f = StoredFile(
        sha256=sha, size=len(data), mime=mime, filename=filename,
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
