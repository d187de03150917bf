"""Face-matching HTTP API: detect faces on a photo, search a gallery. Officers and admins only
(citizens are refused: a face search is a search of other people's biometric data); results are
limited to the cases the officer may open (backend/core/policy.py) and every search is audited."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.deps import SessionDep, get_ctx, require_roles
from backend.core.errors import DomainError
from backend.core.policy import Kind
from backend.faces.errors import FacesNotReady
from backend.faces.images import MAX_UPLOAD_BYTES
from backend.users.audit import audit_read
from backend.users.models import Role, User

router = APIRouter(prefix="/api/faces", tags=["faces"])
Officer = Annotated[User, Depends(require_roles(Role.officer))]


@dataclass(frozen=True)
class FaceCases:
    """What the search route needs to know about cases; the composition root (backend/context.py)
    supplies the missing slice's answers, so this slice does not import it."""

    # (session, officer, face keys) -> {face key: case number} of the cases the officer may open
    visible: Callable[[AsyncSession, User, list[str]], Awaitable[dict[str, str]]]
    # (session, officer, request id, object store) -> the photo of a cross-region request sent to
    # the officer (NotFound for anyone else); the read is audited
    assist_photo: Callable[[AsyncSession, User, int, Any], Awaitable[bytes]]


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
async def search(user: Officer, session: SessionDep, file: Annotated[UploadFile | None, File()] = None,
                 gallery: Annotated[str, Form()] = "missing", k: Annotated[int, Form(ge=1, le=50)] = 5,
                 choose: Annotated[int | None, Form(ge=1)] = None,
                 assist_request_id: Annotated[int | None, Form(ge=1)] = None, ctx=Depends(get_ctx)) -> dict:
    """Top-k persons of ``gallery`` (missing | found) with cosine scores, among the cases the
    officer may open (their jurisdiction, by the access policy): a face search never names a case
    elsewhere. ``assist_request_id`` searches with the photo of a cross-region request (人像协作)
    sent to this officer instead of an upload. Several faces on the photo → 422
    ``multiple_faces``; pass ``choose`` (1-based, left to right). Every search is audited."""
    faces = _service(ctx)
    cases: FaceCases = ctx.face_cases
    data = await cases.assist_photo(session, user, assist_request_id, ctx.files) if assist_request_id else None
    if data is None:
        if file is None:
            raise DomainError("faces.err_no_photo")
        data = await _read(file)
    pool = min(max(k * 20, 100), 1000)  # search wide, then keep what the officer may see
    matches = await faces.asearch(gallery, data, pool, choose=None if choose is None else choose - 1)
    out = [m.as_dict() for m in matches]
    numbers = await cases.visible(session, user, [m["person_id"] for m in out])
    shown = []
    for m in out:
        if (case_no := numbers.get(m["person_id"])) is None:
            continue
        shown.append(dict(m, case_no=case_no, above_threshold=m["score"] >= faces.threshold))
        if len(shown) >= k:
            break
    await audit_read(session, user, Kind.missing, None, channel="faces", action="search",
                     detail={"gallery": gallery, "assist_request": assist_request_id,
                             "results": [m["case_no"] for m in shown]})
    return {"gallery": gallery, "threshold": faces.threshold, "candidates": shown}

