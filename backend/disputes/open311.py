"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) at ``/open311/v2``.

JSON format only. Field names, status values (open/closed) and the error format
``[{"code": 400, "description": "..."}]`` follow the specification. Requests posted here
become ordinary cases (same routing, deadlines, notifications); ``service_code`` is the
category code and ``service_request_id`` the case number.
"""
from __future__ import annotations

import hmac
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from backend.core.clock import now
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.core.masking import mask_personal
from backend.disputes import config, routing, service
from backend.disputes.models import Dispute, Status
from backend.users import service as users

router = APIRouter(prefix="/open311/v2", tags=["open311"])
CLOSED = (Status.resolved.value, Status.failed.value, Status.visited.value, Status.archived.value)
MAX_PAGE = 1000
DEFAULT_DAYS = 90


def error(code: int, description: str) -> JSONResponse:
    return JSONResponse(status_code=code, content=[{"code": code, "description": description}])


def _w3c(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _parse_w3c(raw: str) -> datetime:
    s = raw.strip().replace("Z", "+00:00").replace(" ", "+")  # '+' arrives as ' ' in query strings
    dt = datetime.fromisoformat(s)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def service_json(code: str) -> dict:
    c = config.get().categories[code]
    return {"service_code": c.code, "service_name": c.zh, "description": c.description, "metadata": False,
            "type": "realtime", "keywords": ",".join(c.keywords), "group": "矛盾纠纷调解"}


def request_json(d: Dispute) -> dict:
    closed = d.status in CLOSED
    return {
        "service_request_id": d.number,
        "status": "closed" if closed else "open",
        "status_notes": gettext("zh", f"disputes.status_{d.status}")
        + (f"；{service.REFERRAL_ZH.get(d.referral, '')}" if d.referral else ""),
        "service_name": config.get().category(d.category).zh,
        "service_code": d.category,
        "description": mask_personal(d.description),
        "agency_responsible": d.unit.name,
        "service_notice": "",
        "requested_datetime": _w3c(d.created_at),
        "updated_datetime": _w3c(d.updated_at),
        "expected_datetime": _w3c(d.resolve_due or d.accept_due),
        "address": d.address or d.place.name,
        "address_id": str(d.place_id),
        "zipcode": None,
        "lat": d.lat if d.lat is not None else d.place.lat,
        "long": d.lon if d.lon is not None else d.place.lon,
        "media_url": d.media_url,
    }


@router.get("/services.json")
async def services() -> list[dict]:
    return [service_json(c) for c in config.get().categories]


@router.get("/services/{service_code}.json")
async def service_definition(service_code: str):
    if service_code not in config.get().categories:
        return error(404, f"service_code {service_code!r} not found")
    # metadata=false for every service: no extra attributes
    return {"service_code": service_code, "attributes": []}


def _key_ok(request: Request, key: str | None) -> bool:
    keys = [k.strip() for k in request.app.state.ctx.settings.open311_api_keys.split(",") if k.strip()]
    return bool(key) and any(hmac.compare_digest(key, k) for k in keys)


def _float(v) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        raise ValueError(v) from None


@router.post("/requests.json")
async def create_request(request: Request):
    ctype = request.headers.get("content-type", "")
    try:
        form = dict(await request.json()) if "json" in ctype else dict(await request.form())
    except Exception:  # noqa: BLE001
        return error(400, "malformed request body")
    form = {k: (str(v) if v is not None else None) for k, v in form.items()}
    if not _key_ok(request, form.get("api_key")):
        return error(403, "invalid or missing api_key")
    code = form.get("service_code") or ""
    if code not in config.get().categories:
        return error(400 if not code else 404, "service_code missing" if not code else f"service_code {code!r} not found")
    try:
        lat, lon = _float(form.get("lat")), _float(form.get("long"))
    except ValueError:
        return error(400, "lat/long must be numbers")
    address = (form.get("address_string") or "").strip()[:255] or None
    ctx = request.app.state.ctx
    async with ctx.sm() as session:
        place = None
        if lat is not None and lon is not None:
            if not users.in_taizhou(lat, lon):
                return error(400, "location is outside Taizhou (台州市)")
            place = await users.nearest(session, lat, lon)
        if place is None and form.get("address_id"):
            try:
                place = await users.jurisdiction(session, int(form["address_id"]))
            except ValueError:
                place = None
        if place is None and address:
            place = await routing.place_from_text(session, address)
        if place is None or place.level == "city":
            return error(400, "a location inside Taizhou is required: lat & long, or an address_string naming "
                              "a county/township")
        name = " ".join(x for x in (form.get("first_name"), form.get("last_name")) if x) or None
        try:
            d = await service.create_case(
                session, citizen=None, category=code, description=form.get("description") or "", place=place,
                address=address, lat=lat, lon=lon, phone=form.get("phone"), source="open311",
                contact_name=name[:128] if name else None, contact_email=(form.get("email") or "")[:128] or None,
                media_url=(form.get("media_url") or "")[:512] or None, files_dir=ctx.settings.files_dir)
            await session.commit()
        except DomainError as e:
            await session.rollback()
            return error(400, gettext("en", e.key, **e.params))
    ctx.deliverer.wake.set()
    return JSONResponse(status_code=201, content=[{"service_request_id": d.number, "service_notice": "",
                                                   "account_id": None}])


@router.get("/requests.json")
async def list_requests(request: Request, service_request_id: str | None = None, service_code: str | None = None,
                        start_date: str | None = None, end_date: str | None = None, status: str | None = None,
                        page: str | None = "1", page_size: str | None = None):
    q = select(Dispute)
    try:
        page_n = max(1, int(page or 1))
        size = min(MAX_PAGE, max(1, int(page_size or MAX_PAGE)))
        start = _parse_w3c(start_date) if start_date else None
        end = _parse_w3c(end_date) if end_date else None
    except ValueError:
        return error(400, "bad start_date/end_date (W3C format, e.g. 2026-11-01T00:00:00Z) or page/page_size")
    if service_request_id:
        q = q.where(Dispute.number.in_([x.strip() for x in service_request_id.split(",") if x.strip()]))
    else:
        if start is None and end is None:
            start = now() - timedelta(days=DEFAULT_DAYS)
        if start is not None:
            q = q.where(Dispute.created_at >= start)
        if end is not None:
            q = q.where(Dispute.created_at <= end)
        if service_code:
            q = q.where(Dispute.category.in_([x.strip() for x in service_code.split(",")]))
        if status:
            wanted = {x.strip() for x in status.split(",")}
            if not wanted <= {"open", "closed"}:
                return error(400, "status must be open and/or closed")
            if wanted == {"open"}:
                q = q.where(Dispute.status.not_in(CLOSED))
            elif wanted == {"closed"}:
                q = q.where(Dispute.status.in_(CLOSED))
    async with request.app.state.ctx.sm() as session:
        total = await session.scalar(select(func.count()).select_from(q.subquery()))
        rows = list(await session.scalars(q.order_by(Dispute.created_at.desc(), Dispute.id.desc())
                                          .limit(size).offset((page_n - 1) * size)))
        body = [request_json(d) for d in rows]
    headers = {"X-Total-Count": str(total), "X-Page": str(page_n), "X-Page-Size": str(size)}
    return JSONResponse(content=body, headers=headers)


@router.get("/requests/{service_request_id}.json")
async def get_request(request: Request, service_request_id: str):
    async with request.app.state.ctx.sm() as session:
        d = await service.get_by_number(session, service_request_id)
        if d is None:
            return error(404, f"service_request_id {service_request_id!r} not found")
        return [request_json(d)]
