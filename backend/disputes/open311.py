"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) at ``/open311/v2``.

JSON and XML (``.json`` / ``.xml`` on every path). Field names, status values (open/closed) and
the error format ``[{"code": 400, "description": "..."}]`` (``<errors><error>`` in XML) follow the
specification; ``jurisdiction_id``, when sent, must be ours (``HEHE_OPEN311_JURISDICTION_ID``).
Requests posted here become ordinary cases (same routing, deadlines, notifications);
``service_code`` is the category code and ``service_request_id`` the case number.

GET is a *public* view, without authentication, so it carries only what a city would publish
(docs/access-policy.md): service, status, the township-level place and its agency, dates, and a
position on a ~1 km grid. Never the citizen's name, phone, address, exact position, photo or the
free-text description (no citizen agreed to publish it). ``HEHE_OPEN311_PUBLIC=false`` turns the
view off (404).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from backend.core.clock import now
from backend.core.errors import DomainError
from backend.core.i18n import gettext
from backend.core.security import same_bytes
from backend.disputes import config, routing, service
from backend.disputes.models import Dispute, Status
from backend.users import service as users

router = APIRouter(prefix="/open311/v2", tags=["open311"])
CLOSED = (Status.resolved.value, Status.failed.value, Status.visited.value, Status.archived.value)
MAX_PAGE = 1000
DEFAULT_DAYS = 90
FORMATS = ("json", "xml")
GRID = 100  # positions are published on a 1/100 degree grid: ~1.1 km north-south, ~1 km east-west here
PUBLIC_LEVELS = ("city", "county", "township")


class _Fail(Exception):
    def __init__(self, code: int, description: str):
        self.code, self.description = code, description


def _xml_value(parent: ET.Element, tag: str, value) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, list):
        for v in value:
            _xml_value(el, tag[:-1] if tag.endswith("s") else "item", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = str(value)


def _xml(root: str, item: str | None, body) -> bytes:
    top = ET.Element(root)
    if item is None:
        for k, v in body.items():
            _xml_value(top, k, v)
    else:
        for row in body:
            _xml_value(top, item, row)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="unicode").encode("utf-8")


def respond(fmt: str, body, *, root: str, item: str | None, status: int = 200, headers: dict | None = None):
    """The same body as JSON, or as GeoReport XML (``<root><item>…</item></root>``)."""
    if fmt == "xml":
        return Response(_xml(root, item, body), status_code=status, headers=headers,
                        media_type="text/xml; charset=utf-8")
    return JSONResponse(status_code=status, content=body, headers=headers)


def error(code: int, description: str, fmt: str = "json"):
    return respond(fmt, [{"code": code, "description": description}], root="errors", item="error", status=code)


def _check(request: Request, fmt: str, jurisdiction_id: str | None) -> None:
    if fmt not in FORMATS:
        raise _Fail(404, f"format {fmt!r} not supported (json, xml)")
    ours = request.app.state.ctx.settings.open311_jurisdiction_id
    if jurisdiction_id not in (None, "") and jurisdiction_id.strip() != ours:
        raise _Fail(404, f"jurisdiction_id {jurisdiction_id!r} not found (this endpoint serves {ours!r})")


def _w3c(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _parse_w3c(raw: str) -> datetime:
    s = raw.strip().replace("Z", "+00:00").replace(" ", "+")  # '+' arrives as ' ' in query strings
    dt = datetime.fromisoformat(s)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def coarse(v: float | None) -> float | None:
    """A coordinate on the public ~1 km grid."""
    return None if v is None else round(round(v * GRID) / GRID, 2)


def service_json(code: str) -> dict:
    c = config.get().categories[code]
    return {"service_code": c.code, "service_name": c.zh, "description": c.description, "metadata": False,
            "type": "realtime", "keywords": ",".join(c.keywords), "group": "矛盾纠纷调解"}


async def request_json(session, d: Dispute) -> dict:
    """The public view of one case (nothing that names, reaches or pinpoints a person)."""
    closed = d.status in CLOSED
    county = await users.jurisdiction(session, d.county_id)
    township = await users.jurisdiction(session, d.township_id) if d.township_id else None
    area = township or county
    agency = d.unit.name if d.unit.level in PUBLIC_LEVELS else area.name
    lat = d.lat if d.lat is not None else (area.lat if area.lat is not None else county.lat)
    lon = d.lon if d.lon is not None else (area.lon if area.lon is not None else county.lon)
    return {
        "service_request_id": d.number,
        "status": "closed" if closed else "open",
        "status_notes": gettext("zh", f"disputes.status_{d.status}")
        + (f"；{service.REFERRAL_ZH.get(d.referral, '')}" if d.referral else ""),
        "service_name": config.get().category(d.category).zh,
        "service_code": d.category,
        "description": None,
        "agency_responsible": agency,
        "service_notice": "",
        "requested_datetime": _w3c(d.created_at),
        "updated_datetime": _w3c(d.updated_at),
        "expected_datetime": _w3c(d.resolve_due or d.accept_due),
        "address": county.name + (township.name if township else ""),
        "address_id": str(area.id),
        "zipcode": None,
        "lat": coarse(lat),
        "long": coarse(lon),
        "media_url": None,
    }


async def _form(request: Request) -> dict[str, str | None]:
    """The POST body as strings. URL-encoded bodies are decoded in their declared charset
    (UTF-8 when none is declared): raw UTF-8 bytes are common from Chinese clients, and the
    framework's parser reads them as Latin-1."""
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        form = dict(await request.json())
    elif ctype.startswith("multipart/"):
        form = dict(await request.form())
    else:
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip('"')
        text = (await request.body()).decode(charset)
        form = dict(parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict"))
    return {k: (str(v) if v is not None else None) for k, v in form.items()}


def _key_ok(request: Request, key: str | None) -> bool:
    """Constant-time comparison on bytes (a str with non-ASCII characters cannot be compared)."""
    keys = [k.strip() for k in request.app.state.ctx.settings.open311_api_keys.split(",") if k.strip()]
    return bool(key) and any(same_bytes(key, k) for k in keys)


def _float(v) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        raise ValueError(v) from None


@router.get("/services.{fmt}")
async def services(request: Request, fmt: str, jurisdiction_id: str | None = None):
    try:
        _check(request, fmt, jurisdiction_id)
    except _Fail as f:
        return error(f.code, f.description, fmt if fmt in FORMATS else "json")
    return respond(fmt, [service_json(c) for c in config.get().categories], root="services", item="service")


@router.get("/services/{service_code}.{fmt}")
async def service_definition(request: Request, service_code: str, fmt: str, jurisdiction_id: str | None = None):
    try:
        _check(request, fmt, jurisdiction_id)
        if service_code not in config.get().categories:
            raise _Fail(404, f"service_code {service_code!r} not found")
    except _Fail as f:
        return error(f.code, f.description, fmt if fmt in FORMATS else "json")
    # metadata=false for every service: no extra attributes
    return respond(fmt, {"service_code": service_code, "attributes": []}, root="service_definition", item=None)


@router.post("/requests.{fmt}")
async def create_request(request: Request, fmt: str):
    try:
        form = await _form(request)
    except UnicodeDecodeError:
        return error(400, "the request body is not valid text in its charset (send UTF-8)",
                     fmt if fmt in FORMATS else "json")
    except Exception:  # noqa: BLE001
        return error(400, "malformed request body", fmt if fmt in FORMATS else "json")
    try:
        _check(request, fmt, form.get("jurisdiction_id"))
    except _Fail as f:
        return error(f.code, f.description, fmt if fmt in FORMATS else "json")
    if not _key_ok(request, form.get("api_key")):
        return error(403, "invalid or missing api_key", fmt)
    code = form.get("service_code") or ""
    if code not in config.get().categories:
        return error(400 if not code else 404, "service_code missing" if not code else f"service_code {code!r} not found",
                     fmt)
    try:
        lat, lon = _float(form.get("lat")), _float(form.get("long"))
    except ValueError:
        return error(400, "lat/long must be numbers", fmt)
    address = (form.get("address_string") or "").strip()[:255] or None
    ctx = request.app.state.ctx
    async with ctx.sm() as session:
        place = None
        if lat is not None and lon is not None:
            if not users.in_taizhou(lat, lon):
                return error(400, "location is outside Taizhou (台州市)", fmt)
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
                              "a county/township", fmt)
        name = " ".join(x for x in (form.get("first_name"), form.get("last_name")) if x) or None
        try:
            d = await service.create_case(
                session, citizen=None, category=code, description=form.get("description") or "", place=place,
                address=address, lat=lat, lon=lon, phone=form.get("phone"), source="open311",
                contact_name=name[:128] if name else None, contact_email=(form.get("email") or "")[:128] or None,
                media_url=(form.get("media_url") or "")[:512] or None, store=ctx.files)
            await session.commit()
        except DomainError as e:
            await session.rollback()
            return error(400, gettext("en", e.key, **e.params), fmt)
    ctx.deliverer.wake.set()
    return respond(fmt, [{"service_request_id": d.number, "service_notice": "", "account_id": None}],
                   root="service_requests", item="request", status=201)


def _public(request: Request, fmt: str, jurisdiction_id: str | None) -> None:
    _check(request, fmt, jurisdiction_id)
    if not request.app.state.ctx.settings.open311_public:
        raise _Fail(404, "the public list of requests is not published here")


@router.get("/requests.{fmt}")
async def list_requests(request: Request, fmt: str, service_request_id: str | None = None,
                        service_code: str | None = None, start_date: str | None = None,
                        end_date: str | None = None, status: str | None = None, page: str | None = "1",
                        page_size: str | None = None, jurisdiction_id: str | None = None):
    q = select(Dispute)
    try:
        _public(request, fmt, jurisdiction_id)
        try:
            page_n = max(1, int(page or 1))
            size = min(MAX_PAGE, max(1, int(page_size or MAX_PAGE)))
            start = _parse_w3c(start_date) if start_date else None
            end = _parse_w3c(end_date) if end_date else None
        except ValueError:
            raise _Fail(400, "bad start_date/end_date (W3C format, e.g. 2026-11-01T00:00:00Z) or page/page_size") from None
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
                    raise _Fail(400, "status must be open and/or closed")
                if wanted == {"open"}:
                    q = q.where(Dispute.status.not_in(CLOSED))
                elif wanted == {"closed"}:
                    q = q.where(Dispute.status.in_(CLOSED))
    except _Fail as f:
        return error(f.code, f.description, fmt if fmt in FORMATS else "json")
    async with request.app.state.ctx.sm() as session:
        total = await session.scalar(select(func.count()).select_from(q.subquery()))
        rows = list(await session.scalars(q.order_by(Dispute.created_at.desc(), Dispute.id.desc())
                                          .limit(size).offset((page_n - 1) * size)))
        body = [await request_json(session, d) for d in rows]
    headers = {"X-Total-Count": str(total), "X-Page": str(page_n), "X-Page-Size": str(size)}
    return respond(fmt, body, root="service_requests", item="request", headers=headers)


@router.get("/requests/{service_request_id}.{fmt}")
async def get_request(request: Request, service_request_id: str, fmt: str, jurisdiction_id: str | None = None):
    try:
        _public(request, fmt, jurisdiction_id)
    except _Fail as f:
        return error(f.code, f.description, fmt if fmt in FORMATS else "json")
    async with request.app.state.ctx.sm() as session:
        d = await service.get_by_number(session, service_request_id)
        if d is None:
            return error(404, f"service_request_id {service_request_id!r} not found", fmt)
        return respond(fmt, [await request_json(session, d)], root="service_requests", item="request")
