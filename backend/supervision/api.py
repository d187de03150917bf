"""REST API for supervision items. Every route checks role and jurisdiction:
deputies see their own, co-signed and followed items; procurators those of their
procuratorate; officials their jurisdiction, read-only; citizens nothing."""
from __future__ import annotations

import asyncio
from typing import Literal

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from backend.core.deps import CurrentUser, SessionDep, require_roles
from backend.core.errors import NotFound
from backend.core.files import read_blob
from backend.core.policy import Action as Access
from backend.core.policy import Facts, Kind, require
from backend.core.security import require_role
from backend.supervision import export, metrics, service as svc
from backend.supervision.models import SupervisionItem
from backend.users.audit import audit_read
from backend.users.models import Role, User

router = APIRouter(prefix="/api/supervision", tags=["supervision"])
extra_router = APIRouter(tags=["supervision"])

READERS = (Role.deputy, Role.procurator, Role.official)


class ItemPublic(BaseModel):
    number: str
    title: str
    area: str
    place: str
    procuratorate: str
    status: str
    status_label: str
    created_at: str
    updated_at: str
    closed_at: str | None
    rating: str | None


class EventPublic(BaseModel):
    at: str
    who: str
    what: str
    note: str


class ItemDetail(ItemPublic):
    description: str
    agency: str | None
    deputies: list[str]
    timeline: list[EventPublic]
    suggestions: list[dict]


def _public(i: SupervisionItem) -> dict:
    return dict(number=i.number, title=i.title, area=i.area, place=i.jurisdiction.name,
                procuratorate=i.procuratorate.name, status=i.status, status_label=svc.status_label(i.status),
                created_at=i.created_at.isoformat(), updated_at=i.updated_at.isoformat(),
                closed_at=i.closed_at.isoformat() if i.closed_at else None, rating=i.rating)


@router.get("/items", response_model=list[ItemPublic])
async def list_items(session: SessionDep, user: User = Depends(require_roles(*READERS)),
                     open_only: bool = False, limit: int = Query(50, ge=1, le=500)):
    return [_public(i) for i in await svc.list_items(session, user, open_only=open_only, limit=limit)]


@router.get("/items/{number}", response_model=ItemDetail)
async def get_item(number: str, session: SessionDep, user: User = Depends(require_roles(*READERS))):
    item = await svc.get_by_number(session, number)
    await svc.require_view(session, user, item)
    await audit_read(session, user, Kind.supervision, item.number, channel="api")
    d = await export.summary(session, item, mask=not svc.sees_personal_data(user))
    return ItemDetail(**_public(item), description=d["description"], agency=item.agency,
                      deputies=d["participants"], timeline=[EventPublic(**e) for e in d["events"]],
                      suggestions=d["suggestions"])


@router.get("/items/{number}/export")
async def export_item(number: str, request: Request, session: SessionDep, user: User = Depends(require_roles(*READERS)),
                      format: Literal["md", "pdf", "docx"] = "md"):
    item = await svc.get_by_number(session, number)
    await svc.require_view(session, user, item)
    await audit_read(session, user, Kind.supervision, item.number, channel="export", action="export",
                     detail={"format": format})
    d = await export.summary(session, item, mask=not svc.sees_personal_data(user),
                             store=request.app.state.ctx.files)
    data = await asyncio.to_thread(export.render, d, format)
    return Response(data, media_type=export.FORMATS[format][0],
                    headers={"Content-Disposition": f'attachment; filename="{item.number}.{format}"'})


@extra_router.get("/api/stats/supervision")
async def stats(session: SessionDep, user: CurrentUser):
    """Figures as Taizhou reports them, for the caller's jurisdiction (officials, procurators, admins)."""
    require_role(user, Role.official, Role.procurator)
    # no jurisdiction → no figures (city-wide only for people given the city as jurisdiction)
    require(user, Access.read, Kind.stats, Facts.of(place=user.jurisdiction.path if user.jurisdiction else "/"))
    return await metrics.compute(session, None if Role(user.role) == Role.admin and user.jurisdiction is None
                                 else user.jurisdiction)


# ---------------------------------------------------------------- evidence and available actions
class EvidencePublic(BaseModel):
    n: int
    filename: str | None
    size: int
    mime: str
    url: str


@router.get("/items/{number}/evidence", response_model=list[EvidencePublic])
async def list_evidence(number: str, request: Request, session: SessionDep,
                        user: User = Depends(require_roles(*READERS))):
    """The evidence files of an item, for whoever may open the item (the read is audited)."""
    item = await svc.get_by_number(session, number)
    files = await svc.evidence(session, user, item)
    store = request.app.state.ctx.files
    return [EvidencePublic(n=n, filename=f.filename, size=f.size, mime=await _sniffed(store, f),
                           url=f"/api/supervision/items/{item.number}/evidence/{n}")
            for n, f in enumerate(files, 1)]


@router.get("/items/{number}/evidence/{n}")
async def get_evidence(number: str, n: int, request: Request, session: SessionDep,
                       user: User = Depends(require_roles(*READERS))):
    """One file: images inline with their sniffed type, anything else as an attachment."""
    item = await svc.get_by_number(session, number)
    f = await svc.evidence_file(session, user, item, n)
    data = await read_blob(request.app.state.ctx.files, f.sha256)
    if data is None:
        raise NotFound("common.err_not_found")
    image = svc.is_image(data)
    name = quote(f.filename or f"{item.number}-{n}")
    return Response(data, media_type=svc.image_type(data) if image else "application/octet-stream",
                    headers={"Content-Disposition": f"{'inline' if image else 'attachment'}; filename*=UTF-8''{name}",
                             "X-Content-Type-Options": "nosniff"})


async def _sniffed(store, f) -> str:
    head = (await read_blob(store, f.sha256) or b"")[:16]
    return svc.image_type(head) or "application/octet-stream"


@router.get("/items/{number}/actions", response_model=list[str])
async def item_actions(number: str, session: SessionDep, user: User = Depends(require_roles(*READERS))):
    """What the caller may do to the item now: the same list the chat's buttons come from."""
    item = await svc.get_by_number(session, number)
    await svc.require_view(session, user, item)
    return [a.value for a in await svc.available_actions(session, user, item)]
