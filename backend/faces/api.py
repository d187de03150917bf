"""Face-matching HTTP API: detect faces on a photo, search a gallery. Officers and admins only
(citizens are refused: a face search is a search of other people's biometric data)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy import select

from backend.core.deps import SessionDep, get_ctx, require_roles
from backend.core.errors import DomainError
from backend.faces.errors import FacesNotReady
from backend.faces.images import MAX_UPLOAD_BYTES
from backend.users.models import Role, User

router = APIRouter(prefix="/api/faces", tags=["faces"])
Officer = Annotated[User, Depends(require_roles(Role.officer))]


class UploadTooLarge(DomainError):
    status = 413
    code = "too_large"


async def _read(file: UploadFile) -> bytes:
    data = await file.read(MAX_UPLOAD_BYTES + 1)  # never more than the limit into memory
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge("faces.err_too_large", max_mb=MAX_UPLOAD_BYTES // (1024 * 1024))
    return data


def _service(ctx):
    faces = ctx.faces
    if faces is None or not getattr(faces, "ready", False):
        raise FacesNotReady()
    return faces


@router.post("/detect")
async def detect(user: Officer, file: Annotated[UploadFile, File()], ctx=Depends(get_ctx)) -> dict:
    """Every face on the photo: box (x1, y1, x2, y2 in pixels of the upright image), detection score, size."""
    faces = _service(ctx)
    data = await _read(file)
    found = await faces.adetect_bytes(data)
    return {"faces": [{"box": [round(v, 1) for v in f.box], "det_score": round(f.det_score, 4), "size": f.size}
                      for f in found]}


@router.post("/search")
async def search(user: Officer, session: SessionDep, file: Annotated[UploadFile, File()],
                 gallery: Annotated[str, Form()] = "missing", k: Annotated[int, Form(ge=1, le=50)] = 5,
                 choose: Annotated[int | None, Form(ge=1)] = None, ctx=Depends(get_ctx)) -> dict:
    """Top-k persons of ``gallery`` (missing | found) with cosine scores. Several faces on the
    photo → 422 ``multiple_faces``; pass ``choose`` (1-based, left to right)."""
    faces = _service(ctx)
    data = await _read(file)
    matches = await faces.asearch(gallery, data, k, choose=None if choose is None else choose - 1)
    out = [m.as_dict() for m in matches]
    try:  # name the case behind each person id when the missing slice is installed
        from backend.missing.models import PersonCase

        keys = [m["person_id"] for m in out]
        rows = {c.face_key: c for c in await session.scalars(select(PersonCase).where(PersonCase.face_key.in_(keys)))}
        for m in out:
            c = rows.get(m["person_id"])
            m["case_no"] = c.case_no if c else None
    except ImportError:  # pragma: no cover
        pass
    return {"gallery": gallery, "threshold": faces.threshold,
            "candidates": [dict(m, above_threshold=m["score"] >= faces.threshold) for m in out]}
