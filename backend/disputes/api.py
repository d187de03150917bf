"""REST API for dispute mediation. Every route checks role and jurisdiction through the
service (citizen: own cases; mediator: the unit's; official: the jurisdiction's)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import TZ
from backend.core.deps import CurrentUser, SessionDep, require_roles
from backend.core.errors import DomainError, NotFound
from backend.core.policy import Action, Facts, Kind, require
from backend.disputes import config, routing, service, stats
from backend.disputes.models import Dispute
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import Role, User
from backend.users.tree import Node

router = APIRouter(prefix="/api", tags=["disputes"])
Official = Annotated[User, Depends(require_roles(Role.official))]
Staff = Annotated[User, Depends(require_roles(Role.official, Role.mediator))]


# ---------------------------------------------------------------- schemas
class DisputeCreate(BaseModel):
    category: str = Field(examples=["neighbor"])
    description: str = Field(max_length=10_000)
    place_id: int | None = None
    address: str | None = Field(None, max_length=255)
    lat: float | None = None
    lon: float | None = None
    other_party: str | None = Field(None, max_length=255)
    phone: str | None = Field(None, max_length=32)


class EventOut(BaseModel):
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    actor_id: int | None
    note: str | None


class DisputeOut(BaseModel):
    id: int
    number: str
    category: str
    category_name: str
    description: str
    status: str
    source: str
    place_id: int
    place: str
    unit_id: int
    unit: str
    other_party: str | None
    phone: str  # masked unless the caller handles the case
    risk: str | None  # staff only: None for the reporting citizen
    risk_reasons: list[dict]
    created_at: datetime
    accept_due: datetime | None
    resolve_due: datetime | None
    overdue: bool
    session_at: datetime | None
    session_place: str | None
    outcome: str | None
    agreement: str | None
    referral: str | None
    rating: str | None
    timeline: list[EventOut] | None = None
    actions: list[str] = []  # what the caller may do now (the workflow table; chat shows the same buttons)


class NoteIn(BaseModel):
    note: str = Field(max_length=10_000)


class TransferIn(BaseModel):
    target_id: int
    reason: str = Field(max_length=10_000)


class EscalateIn(BaseModel):
    reason: str | None = Field(None, max_length=10_000)


class ScheduleIn(BaseModel):
    at: datetime
    place: str = Field(max_length=255)


class OutcomeIn(BaseModel):
    success: bool
    agreement: str | None = Field(None, max_length=10_000)
    referral: Literal["litigation", "arbitration", "administrative"] | None = None


class RatingIn(BaseModel):
    value: Literal["satisfied", "basic", "unsatisfied"]
    comment: str | None = Field(None, max_length=1000)


async def out(session: AsyncSession, d: Dispute, user: User, timeline: bool = False) -> DisputeOut:
    o = DisputeOut(
        id=d.id, number=d.number, category=d.category, category_name=config.get().category(d.category).zh,
        description=service.text_for(user, d, d.description), status=d.status, source=d.source, place_id=d.place_id, place=d.place.name,
        unit_id=d.unit_id, unit=d.unit.name, other_party=service.party_for(user, d), phone=service.phone_for(user, d),
        risk=d.risk if service.sees_risk(user, d) else None,
        risk_reasons=(d.risk_reasons or []) if service.sees_risk(user, d) else [], created_at=d.created_at, accept_due=d.accept_due,
        resolve_due=d.resolve_due, overdue=bool(d.overdue), session_at=d.session_at, session_place=d.session_place,
        outcome=d.outcome, agreement=service.text_for(user, d, d.agreement) if d.agreement else None, referral=d.referral, rating=d.rating,
        actions=[a.value for a in service.available_actions(user, d)])
    if timeline:
        o.timeline = [EventOut(at=e.at, action=e.action, from_status=e.from_status, to_status=e.to_status,
                               actor_id=e.actor_id, note=service.text_for(user, d, e.note) if e.note else None)
                      for e in await service.timeline(session, d)]
    return o


# ---------------------------------------------------------------- routes
@router.get("/disputes/categories")
async def categories(user: CurrentUser) -> list[dict]:
    return [{"code": c.code, "name": c.zh, "name_en": c.en, "level": c.level, "description": c.description}
            for c in config.get().categories.values()]


async def resolve_place(session: AsyncSession, body: DisputeCreate) -> Node:
    if body.place_id is not None:
        j = await users.jurisdiction(session, body.place_id)
        if j is None or j.level == "city":
            raise DomainError("disputes.err_place")
        return j
    if body.lat is not None and body.lon is not None:
        if not users.in_taizhou(body.lat, body.lon):
            raise DomainError("disputes.err_place_outside")
        j = await users.nearest(session, body.lat, body.lon)
        if j is not None and j.level != "city":
            return j
    if body.address:
        j = await routing.place_from_text(session, body.address)
        if j is not None:
            return j
    raise DomainError("disputes.err_place_unknown")


@router.post("/disputes", status_code=201)
async def create(body: DisputeCreate, request: Request, session: SessionDep, user: CurrentUser) -> DisputeOut:
    place = await resolve_place(session, body)
    d = await service.create_case(session, citizen=user, category=body.category, description=body.description,
                                  place=place, address=body.address, lat=body.lat, lon=body.lon,
                                  other_party=body.other_party, phone=body.phone, source="api",
                                  store=request.app.state.ctx.files)
    return await out(session, d, user)


@router.get("/disputes")
async def list_(session: SessionDep, user: CurrentUser, status: Annotated[list[str] | None, Query()] = None,
                overdue: bool | None = None, mine: bool = False, limit: int = Query(50, ge=1, le=500),
                offset: int = Query(0, ge=0)) -> list[DisputeOut]:
    rows = await service.list_cases(session, user, status=status, mine=mine, overdue=overdue, limit=limit,
                                    offset=offset)
    if rows:
        await audit_read(session, user, Kind.dispute, None, channel="api", action="list",
                         detail={"numbers": [d.number for d in rows]})
    return [await out(session, d, user) for d in rows]


@router.get("/disputes/overdue")
async def overdue(session: SessionDep, user: Staff) -> list[DisputeOut]:
    return [await out(session, d, user) for d in await service.overdue_cases(session, user)]


@router.get("/disputes/{case_id}")
async def detail(case_id: int, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await audit_read(session, user, Kind.dispute, d.number, channel="api")
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/accept")
async def accept(case_id: int, session: SessionDep, user: CurrentUser, body: NoteIn | None = None) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.accept(session, d, user, body.note if body else None)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/note")
async def note(case_id: int, body: NoteIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.add_note(session, d, user, body.note)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/transfer")
async def transfer(case_id: int, body: TransferIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    target = await users.jurisdiction(session, body.target_id)
    if target is None:
        raise NotFound("disputes.err_transfer_target", name=str(body.target_id))
    await service.transfer(session, d, user, target, body.reason)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/escalate")
async def escalate(case_id: int, body: EscalateIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.escalate(session, d, user, body.reason)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/schedule")
async def schedule(case_id: int, body: ScheduleIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    at = body.at if body.at.tzinfo else body.at.replace(tzinfo=TZ)
    if not body.place.strip():
        raise DomainError("disputes.err_session_place")
    await service.schedule_session(session, d, user, at, body.place.strip())
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/outcome")
async def outcome(case_id: int, body: OutcomeIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.record_outcome(session, d, user, body.success, agreement=body.agreement, referral=body.referral)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/close")
async def close(case_id: int, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.close(session, d, user)
    return await out(session, d, user, timeline=True)


@router.post("/disputes/{case_id}/rating")
async def rating(case_id: int, body: RatingIn, session: SessionDep, user: CurrentUser) -> DisputeOut:
    d = await service.get_case(session, case_id, user)
    await service.rate(session, d, user, body.value, body.comment)
    return await out(session, d, user, timeline=True)


@router.get("/stats/disputes", tags=["stats"], responses={200: {"content": {"image/png": {}}, "description": "JSON, or a chart with format=png"}})
async def dispute_stats(session: SessionDep, user: Official, jurisdiction_id: int | None = None,
                        month_from: str | None = Query(None, pattern=r"^\d{4}-\d{2}$"),
                        month_to: str | None = Query(None, pattern=r"^\d{4}-\d{2}$"),
                        format: Literal["json", "png"] = "json"):
    scope = user.jurisdiction
    if jurisdiction_id is not None:
        scope = await users.jurisdiction(session, jurisdiction_id)
        if scope is None:
            raise NotFound("common.err_not_found")
    # no jurisdiction → no statistics at all (city-wide only by an explicit city jurisdiction)
    require(user, Action.read, Kind.stats, Facts.of(place=scope.path if scope else "/"))
    rows = await stats.compute(session, scope, month_from=month_from, month_to=month_to)
    if format == "png":
        return Response(stats.chart_png(rows), media_type="image/png")
    return {"jurisdiction": scope.name if scope else "台州市", "jurisdiction_id": scope.id if scope else None,
            "summary": stats.summary(rows), "rows": [r.as_dict() for r in rows],
            "definitions": {
                "local_resolution_rate": "resolved (调解成功) below county level / cases with an outcome",
                "avg_resolution_days": "mean days from report to 调解成功",
                "satisfaction_rate": "(满意 + 基本满意) / rated cases",
                "overdue_rate": "cases that missed any deadline / all cases"}}


# ---------------------------------------------------------------- evidence (证据)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class EvidenceOut(BaseModel):
    id: int
    mime: str
    size: int
    filename: str | None
    url: str
    thumbnail_url: str | None  # images only


@router.get("/disputes/{case_id}/evidence")
async def evidence_list(case_id: int, session: SessionDep, user: CurrentUser) -> list[EvidenceOut]:
    """The case's files, for whoever may see the case (audited)."""
    d = await service.get_case(session, case_id, user)
    base = f"/api/disputes/{d.id}/evidence"
    return [EvidenceOut(id=f.id, mime=f.mime, size=f.size, filename=f.filename, url=f"{base}/{f.id}",
                        thumbnail_url=f"{base}/{f.id}/thumbnail" if f.mime.startswith("image/") else None)
            for f in await service.evidence(session, d, user)]


@router.get("/disputes/{case_id}/evidence/{file_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "application/pdf": {}}}})
async def evidence_file(case_id: int, file_id: int, request: Request, session: SessionDep,
                        user: CurrentUser) -> Response:
    d = await service.get_case(session, case_id, user)
    f, data = await service.evidence_file(session, d, user, file_id, request.app.state.ctx.files)
    name = f.filename or f"evidence-{f.id}"
    return Response(data, media_type=f.mime, headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}", "X-Content-Type-Options": "nosniff"})


@router.get("/disputes/{case_id}/evidence/{file_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
async def evidence_thumbnail(case_id: int, file_id: int, request: Request, session: SessionDep,
                             user: CurrentUser) -> Response:
    d = await service.get_case(session, case_id, user)
    f, data = await service.evidence_file(session, d, user, file_id, request.app.state.ctx.files)
    thumb = service.thumbnail(data, f.mime)
    if thumb is None:
        raise NotFound("disputes.err_no_thumbnail")
    return Response(thumb, media_type="image/jpeg")


@router.get("/disputes/{case_id}/export", response_class=Response,
            responses={200: {"content": {DOCX: {}}}})
async def export_case(case_id: int, request: Request, session: SessionDep, user: CurrentUser,
                      format: Literal["docx"] = "docx") -> Response:
    """The case as a Word document with the evidence as thumbnails (for whoever may see the case)."""
    from backend.disputes import export

    d = await service.get_case(session, case_id, user)
    data = await export.to_docx(session, d, user, request.app.state.ctx.files,
                                "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh")
    return Response(data, media_type=DOCX, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(d.number)}.docx"})


from backend.disputes.open311 import router as extra_router  # noqa: E402  (Open311 GeoReport v2)
