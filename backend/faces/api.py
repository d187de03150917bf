"""Face-matching HTTP API: detect faces on a photo, search a gallery. Officers and admins only
(citizens are refused: a face search is a search of other people's biometric data); results are
limited to the cases the officer may open (backend/core/policy.py) and every search is audited."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy import select

from backend.core.deps import SessionDep, get_ctx, require_roles
from backend.core.errors import DomainError, NotFound
from backend.core.policy import Kind
from backend.faces.errors import FacesNotReady
from backend.faces.images import MAX_UPLOAD_BYTES
from backend.users.audit import audit_read
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
    data = await _assist_photo(session, user, assist_request_id, ctx) if assist_request_id else None
    if data is None:
        if file is None:
            raise DomainError("faces.err_no_photo")
        data = await _read(file)
    pool = min(max(k * 20, 100), 1000)  # search wide, then keep what the officer may see
    matches = await faces.asearch(gallery, data, pool, choose=None if choose is None else choose - 1)
    out = [m.as_dict() for m in matches]
    from backend.missing.models import PersonCase
    from backend.missing.service import can_see_case

    keys = [m["person_id"] for m in out]
    rows = {c.face_key: c for c in await session.scalars(select(PersonCase).where(PersonCase.face_key.in_(keys)))}
    shown = []
    for m in out:
        c = rows.get(m["person_id"])
        if c is None or not can_see_case(user, c):
            continue
        shown.append(dict(m, case_no=c.case_no, above_threshold=m["score"] >= faces.threshold))
        if len(shown) >= k:
            break
    await audit_read(session, user, Kind.missing, None, channel="faces", action="search",
                     detail={"gallery": gallery, "assist_request": assist_request_id,
                             "results": [m["case_no"] for m in shown]})
    return {"gallery": gallery, "threshold": faces.threshold, "candidates": shown}


async def _assist_photo(session, user: User, request_id: int, ctx) -> bytes:
    """The photo of a cross-region request, for an officer it was sent to (an officer of another
    county than the requester's) or its requester; anyone else: 404."""
    from backend.core.files import StoredFile, read_blob
    from backend.missing.models import AssistRequest
    from backend.users import service as users

    req = await session.get(AssistRequest, request_id)
    if req is None:
        raise NotFound("faces.err_no_request")
    requester = await session.get(User, req.requester_id)
    theirs = await users.county_of(session, requester.jurisdiction) if requester and requester.jurisdiction else None
    mine = await users.county_of(session, user.jurisdiction) if user.jurisdiction else None
    sent_to_me = mine is not None and (theirs is None or mine.id != theirs.id)
    if not (req.requester_id == user.id or sent_to_me or Role(user.role) == Role.admin):
        raise NotFound("faces.err_no_request")
    f = await session.get(StoredFile, req.photo_id)
    data = await read_blob(ctx.files, f.sha256) if f else None
    if data is None:
        raise NotFound("faces.err_no_request")
    await audit_read(session, user, Kind.assist, request_id, channel="faces", action="download")
    return data
