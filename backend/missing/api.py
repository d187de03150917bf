"""灯塔工程 REST API. Citizens see their own reports only (never candidates, never other
people's photos); officers see their jurisdiction and work the review queue."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from backend.auth.guards import FreshSecondFactor
from backend.core.deps import CurrentUser, SessionDep, get_ctx, require_roles
from backend.core.errors import NotFound
from backend.core.files import read_blob
from backend.core.policy import Kind
from backend.missing import service
from backend.users.audit import audit_read
from backend.users.models import Role, User

router = APIRouter(prefix="/api/missing", tags=["missing"])
Officer = Annotated[User, Depends(require_roles(Role.officer))]


class Decision(BaseModel):
    note: str | None = Field(None, max_length=500)
    # confirm: the points the officer checked (service.CHECKLIST; the face at least); None = all
    checklist: list[str] | None = Field(None, max_length=5)
    # reject: one of workflow.REJECT_REASONS (default "other", which needs a note in chat)
    reason: str | None = Field(None, max_length=24)


@router.get("/cases")
async def list_cases(user: CurrentUser, session: SessionDep, kind: str | None = None,
                     status: str | None = None) -> list[dict]:
    return [service.case_public(user, c) for c in await service.list_cases(session, user, kind=kind, status=status)]


@router.get("/cases/{case_id}")
async def get_case(case_id: int, user: CurrentUser, session: SessionDep) -> dict:
    case = await service.get_case(session, user, case_id)
    await audit_read(session, user, Kind.missing, case.case_no, channel="api")
    return service.case_public(user, case)


@router.get("/cases/{case_id}/photos/{n}")
async def case_photo(case_id: int, n: int, user: CurrentUser, session: SessionDep, ctx=Depends(get_ctx)):
    data, mime = await service.photo_of(session, user, case_id, n, ctx.files)
    await audit_read(session, user, Kind.missing, case_id, channel="file", action="download", detail={"photo": n})
    return Response(content=data, media_type=mime, headers={"Cache-Control": "private, no-store"})


@router.post("/cases/{case_id}/close")
async def close_case(case_id: int, user: CurrentUser, session: SessionDep, body: Decision | None = None,
                     ctx=Depends(get_ctx)) -> dict:
    case = await service.close_case(session, user, case_id, ctx.faces, ctx.settings,
                                    note=body.note if body else None, store=ctx.files)
    return service.case_public(user, case)


@router.get("/reviews")
async def reviews(user: Officer, session: SessionDep) -> list[dict]:
    rows = await service.pending_reviews(session, user)
    await audit_read(session, user, Kind.match, None, channel="api", action="queue",
                     detail={"candidates": [c.id for c in rows]})
    return [service.candidate_public(c) for c in rows]


@router.get("/reviews/{cid}/image")
async def review_image(cid: int, user: Officer, session: SessionDep, _fresh: FreshSecondFactor,
                       ctx=Depends(get_ctx)):
    """The review card (the matched faces side by side): a web session shows it only after a fresh
    second factor (an API token, issued by the operator, passes)."""
    c = await service.get_candidate(session, user, cid)
    f = await service.review_image(session, ctx.files, c)
    data = await read_blob(ctx.files, f.sha256) if f is not None else None
    if data is None:
        raise NotFound("missing.err_photo_not_found")
    await audit_read(session, user, Kind.match, cid, channel="file", action="download")
    return Response(content=data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@router.post("/reviews/{cid}/confirm")
async def confirm(cid: int, user: Officer, session: SessionDep, body: Decision | None = None) -> dict:
    return service.candidate_public(await service.confirm(session, user, cid, body.note if body else None,
                                                          checklist=body.checklist if body else None))


@router.post("/reviews/{cid}/reject")
async def reject(cid: int, user: Officer, session: SessionDep, body: Decision | None = None) -> dict:
    return service.candidate_public(await service.reject(session, user, cid, body.note if body else None,
                                                         reason=body.reason if body else None))


# ---- added for the two-step review, evidence and help requests (issue #17)
@router.post("/reviews/{cid}/second")
async def second_confirm(cid: int, user: Officer, session: SessionDep, body: Decision | None = None) -> dict:
    """Step two of a confirmation: another officer of the place, or an admin."""
    return service.candidate_public(await service.second_confirm(session, user, cid, body.note if body else None))


@router.post("/reviews/{cid}/undo")
async def undo_decision(cid: int, user: Officer, session: SessionDep) -> dict:
    """Take a decision back while its undo window is open (nobody has been told yet)."""
    return service.candidate_public(await service.undo(session, user, cid))


@router.get("/reviews/{cid}/evidence")
async def review_evidence(cid: int, user: Officer, session: SessionDep, _fresh: FreshSecondFactor,
                          ctx=Depends(get_ctx)) -> dict:
    """What the officer decides on: the matched photo of each side (face box, quality), every
    photo of both cases, the flags, and the actions this officer may take now."""
    return await service.review_evidence(session, user, cid, ctx.files)


@router.get("/cases/{case_id}/timeline")
async def case_timeline(case_id: int, user: CurrentUser, session: SessionDep) -> list[dict]:
    return [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status, "to": e.to_status, "note": e.note}
            for e in await service.timeline(session, user, case_id)]


@router.get("/assist")
async def assist_requests(user: Officer, session: SessionDep) -> list[dict]:
    """The officer's cross-region help requests, with status, target and answers."""
    return await service.my_assist_requests(session, user)
