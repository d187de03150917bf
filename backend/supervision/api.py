"""REST API for supervision items. Every route checks role and jurisdiction:
deputies see their own, co-signed and followed items; procurators those of their
procuratorate; officials their jurisdiction, read-only; citizens nothing."""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from backend.core.deps import CurrentUser, SessionDep, require_roles
from backend.core.policy import Action, Facts, Kind, require
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
async def export_item(number: str, session: SessionDep, user: User = Depends(require_roles(*READERS)),
                      format: Literal["md", "pdf"] = "md"):
    item = await svc.get_by_number(session, number)
    await svc.require_view(session, user, item)
    await audit_read(session, user, Kind.supervision, item.number, channel="export", action="export",
                     detail={"format": format})
    d = await export.summary(session, item, mask=not svc.sees_personal_data(user))
    if format == "md":
        return Response(export.to_markdown(d), media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{item.number}.md"'})
    data = await asyncio.to_thread(export.to_pdf, d)
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{item.number}.pdf"'})


@extra_router.get("/api/stats/supervision")
async def stats(session: SessionDep, user: CurrentUser):
    """Figures as Taizhou reports them, for the caller's jurisdiction (officials, procurators, admins)."""
    require_role(user, Role.official, Role.procurator)
    # no jurisdiction → no figures (city-wide only for people given the city as jurisdiction)
    require(user, Action.read, Kind.stats, Facts.of(place=user.jurisdiction.path if user.jurisdiction else "/"))
    return await metrics.compute(session, None if Role(user.role) == Role.admin and user.jurisdiction is None
                                 else user.jurisdiction)
