"""工作台 — the staff console at ``/console``: server-rendered pages (Jinja2) behind the web
sign-in (a staff session with its second factor). Buttons post to the same REST routes and
service functions as the API and the chat (``/api/disputes/{id}/accept`` …); the pages only
read, through :mod:`backend.console.queries`. Which role opens which page is the table
:data:`PAGES`; the route-table authorization test reads it from each route's dependency."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select

from backend.auth.guards import PUBLIC, FreshSecondFactor, StepUpRequired
from backend.auth.sessions import WebUser
from backend.core.clock import fmt_local, now
from backend.core.deps import SessionDep, Unauthorized
from backend.core.errors import DomainError, Forbidden, NotFound
from backend.core.i18n import LANGUAGES, Translator, gettext
from backend.core.policy import Kind
from backend.console import board as board_data
from backend.console import exports
from backend.console import queries
from backend.console.models import SavedView
from backend.disputes import config as dconfig
from backend.disputes import service as disputes
from backend.disputes.models import Status
from backend.users import audit as audit_log
from backend.users import service as users
from backend.users.audit import audit_read
from backend.users.models import AuditLog, InviteCode, Level, Role, User

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "hehe_console_lang"
MAX_BULK = 500

router = APIRouter(tags=["console"], include_in_schema=False)
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["local"] = fmt_local


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    roles: frozenset  # admins open every page
    label: str  # locale key of the menu entry


R = Role
PAGES = (
    Page("cases", "/console/cases", frozenset({R.mediator, R.official}), "console.menu_cases"),
    Page("board", "/console/board", frozenset({R.official}), "console.menu_board"),
    Page("faces", "/console/faces", frozenset({R.officer}), "console.menu_faces"),
    Page("supervision", "/console/supervision", frozenset({R.procurator, R.deputy}), "console.menu_supervision"),
    Page("admin", "/console/admin", frozenset(), "console.menu_admin"),
    Page("templates", "/console/templates", frozenset({R.mediator}), "console_ops.menu_templates"),
    Page("assist", "/console/assist", frozenset({R.officer}), "console_ops.menu_assist"),
)
BY_NAME = {p.name: p for p in PAGES}


def may_open(user: User, page: Page) -> bool:
    return Role(user.role) == Role.admin or Role(user.role) in page.roles


def page_user(name: str):
    """Dependency: a signed-in web staff person whose role opens page ``name``."""
    page = BY_NAME[name]

    async def dep(user: WebUser) -> User:
        if not may_open(user, page):
            raise Forbidden("console.err_not_your_page")
        return user

    dep.allowed_roles = page.roles | {Role.admin}  # read by tests/web/test_route_table.py
    return dep


CasesUser = Annotated[User, Depends(page_user("cases"))]
BoardUser = Annotated[User, Depends(page_user("board"))]
SupervisionUser = Annotated[User, Depends(page_user("supervision"))]
FacesUser = Annotated[User, Depends(page_user("faces"))]
AdminUser = Annotated[User, Depends(page_user("admin"))]


# ---------------------------------------------------------------- rendering
def lang_of(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "zh")
    return lang if lang in LANGUAGES else "zh"


def render(request: Request, template: str, user: User | None, status: int = 200, **ctx) -> HTMLResponse:
    lang = lang_of(request)

    def t(key: str, /, **params) -> str:
        return gettext(lang, key if "." in key else f"console.{key}", **params)

    menu = [p for p in PAGES if user is not None and may_open(user, p)]
    html = env.get_template(template).render(
        t=t, lang=lang, user=user, menu=menu, path=request.url.path,
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        role_name=t(f"console.role_{user.role}") if user else "", cat=dconfig.get().category, **ctx)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def install(app: FastAPI) -> None:
    """Console pages answer a missing sign-in or a wrong role with a page (the sign-in form, a
    refusal) and the same status; every other path keeps the JSON errors."""
    json_error = app.exception_handlers[DomainError]

    async def page_error(request: Request, exc: DomainError):
        path = request.url.path
        if not path.startswith("/console") or path.startswith("/console/api"):
            return await json_error(request, exc)
        if isinstance(exc, Unauthorized):
            return render(request, "signin.html", None, status=exc.status, reason=exc.code)
        return render(request, "refused.html", None, status=exc.status, stepup=isinstance(exc, StepUpRequired),
                      message=gettext(lang_of(request), exc.key, **exc.params))

    async def step_up_error(request: Request, exc: DomainError):
        """A page that reveals a face match asks for the TOTP on the page; downloads and posts get the
        JSON error, which the console's script answers with its step-up dialog."""
        if request.url.path.startswith("/console/faces/"):
            return await page_error(request, exc)
        return await json_error(request, exc)

    app.add_exception_handler(StepUpRequired, step_up_error)
    app.add_exception_handler(Unauthorized, page_error)
    app.add_exception_handler(Forbidden, page_error)
    app.add_exception_handler(NotFound, page_error)


# ---------------------------------------------------------------- home, language, assets
ASSETS = {"console.css": "text/css", "console.js": "text/javascript", "board.js": "text/javascript",
          "echarts.min.js": "text/javascript"}


@router.get("/console/static/{name}", dependencies=[PUBLIC])
async def asset(name: str):
    if name not in ASSETS:
        raise NotFound("common.err_not_found")
    return FileResponse(HERE / "static" / name, media_type=ASSETS[name],
                        headers={"cache-control": "public, max-age=3600"})


@router.get("/console")
async def home(request: Request, user: WebUser):
    pages = [p for p in PAGES if may_open(user, p)]
    if pages:
        return RedirectResponse(pages[0].path, status_code=303)
    return render(request, "home.html", user)


@router.get("/console/lang/{lang}", dependencies=[PUBLIC])
async def set_lang(lang: str, next: str = "/console"):
    target = next if next.startswith("/console") and "//" not in next else "/console"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(LANG_COOKIE, lang if lang in LANGUAGES else "zh", max_age=365 * 86400, samesite="lax",
                    httponly=True, path="/console")
    return resp


# ---------------------------------------------------------------- case lists
def _categories() -> list:
    return list(dconfig.get().categories.values())


async def _places(session, user: User) -> list:
    """The places a list can be narrowed to: the townships (or counties, for the city and for
    admins) under the person's jurisdiction."""
    base = user.jurisdiction or await users.city(session)
    if base.level in (Level.city.value, Level.county.value):
        return await users.children(session, base.id)
    return [base]


async def _views(session, user: User, page: str) -> list[SavedView]:
    return list(await session.scalars(select(SavedView).where(
        SavedView.page == page, or_(SavedView.owner_id == user.id, SavedView.shared.is_(True)))
        .order_by(SavedView.shared, SavedView.name)))


@router.get("/console/cases")
async def cases(request: Request, session: SessionDep, user: CasesUser):
    f = queries.Filters.parse(request.query_params)
    rows, counts = await queries.case_list(session, user, f)
    total = counts[f.tab]
    if rows:
        await audit_read(session, user, Kind.dispute, None, channel="web", action="list",
                         detail={"numbers": [d.number for d in rows]})
    return render(request, "cases.html", user, f=f, rows=rows, total=total, counts=counts,
                  pages=max(1, -(-total // queries.PAGE_SIZE)), tabs=queries.TABS,
                  categories=_categories(), places=await _places(session, user), statuses=list(Status),
                  risks=queries.RISKS, views=await _views(session, user, "cases"),
                  text_for=disputes.text_for, bulk=Role(user.role) in (Role.mediator, Role.admin),
                  units=await _units(session, user), max_bulk=MAX_BULK, **await _bulk_options(session, user))


@router.get("/console/cases/export.{fmt}")
async def export(fmt: str, request: Request, session: SessionDep, user: CasesUser, _fresh: FreshSecondFactor):
    """The list as CSV or XLSX, with the personal data this person may see: a fresh second
    factor first (docs/security.md), and an audit entry with the filters and the row count."""
    if fmt not in ("csv", "xlsx"):
        raise NotFound("common.err_not_found")
    f = queries.Filters.parse(request.query_params)
    if (queued := await exports.start_if_large(request, session, user, f, fmt, lang_of(request))) is not None:
        return queued  # larger than the inline limit: a background job (backend/console/exports.py)
    rows = await queries.export_rows(session, user, f)
    lang = lang_of(request)
    header = [gettext(lang, f"console.col_{c}") for c in queries.EXPORT_COLUMNS]
    await audit_read(session, user, Kind.dispute, None, channel="export", action="export",
                     detail={"format": fmt, "rows": len(rows), "filters": f.query()})
    stamp = now().strftime("%Y%m%d-%H%M")
    if fmt == "csv":
        body, mime = queries.to_csv(header, rows), "text/csv; charset=utf-8"
    else:
        body, mime = queries.to_xlsx(header, rows), \
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=mime,
                    headers={"content-disposition": f'attachment; filename="cases-{stamp}.{fmt}"'})


async def _units(session, user: User) -> list:
    """Units a case can be transferred to: the places under the person's county."""
    if user.jurisdiction is None:
        return []
    county = await users.county_of(session, user.jurisdiction) or user.jurisdiction
    return [county, *await users.children(session, county.id)]


@router.get("/console/cases/{case_id}")
async def case_page(case_id: int, request: Request, session: SessionDep, user: CasesUser):
    d = await disputes.get_case(session, case_id, user)
    events = await disputes.timeline(session, d)
    actors = {u.id: u for u in await session.scalars(select(User).where(
        User.id.in_({e.actor_id for e in events if e.actor_id})))} if events else {}
    files = await disputes.evidence(session, d, user)
    await audit_read(session, user, Kind.dispute, d.number, channel="web")
    return render(request, "case.html", user, d=d, events=events, actors=actors, files=files,
                  actions=[a.value for a in disputes.available_actions(user, d)], text_for=disputes.text_for,
                  other_party=disputes.party_for(user, d),
                  phone=disputes.phone_for(user, d), category=dconfig.get().category(d.category),
                  units=await _units(session, user))


# ---------------------------------------------------------------- saved views
class ViewIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    query: str = Field(max_length=1000)
    shared: bool = False


@router.post("/console/api/views", status_code=201)
async def save_view(body: ViewIn, session: SessionDep, user: CasesUser) -> dict:
    query = queries.Filters.parse(_params(body.query)).query(page=1)  # only known filters are kept
    v = SavedView(owner_id=user.id, name=body.name.strip(), page="cases", query=query, shared=body.shared)
    session.add(v)
    await session.flush()
    await users.audit(session, f"user:{user.id}", "console.view_saved", f"view:{v.id}", shared=body.shared)
    return {"id": v.id, "url": f"/console/cases?{query}"}


@router.delete("/console/api/views/{view_id}")
async def delete_view(view_id: int, session: SessionDep, user: CasesUser) -> dict:
    v = await session.get(SavedView, view_id)
    if v is None or v.owner_id != user.id:
        raise NotFound("common.err_not_found")
    await session.delete(v)
    return {"ok": True}


def _params(query: str):
    from starlette.datastructures import QueryParams

    return QueryParams(query.lstrip("?"))


# ---------------------------------------------------------------- dashboard
@router.get("/console/board")
async def board(request: Request, session: SessionDep, user: BoardUser):
    scope = user.jurisdiction
    if Role(user.role) != Role.admin and scope is None:
        raise Forbidden("common.err_out_of_jurisdiction")
    if Role(user.role) == Role.admin:
        scope = None  # an admin's board is the whole city
    b = await board_data.board(session, scope, cache=board_data.cache_of(request.app.state),
                               ttl=request.app.state.ctx.settings.console_board_cache_seconds)
    return render(request, "board.html", user, b=b, scope_name=scope.name if scope else "台州市")


# ---------------------------------------------------------------- face review (officer, 灯塔)
@router.get("/console/faces")
async def faces_queue(request: Request, session: SessionDep, user: FacesUser):
    from backend.missing import service as missing

    rows = await missing.pending_reviews(session, user)
    await audit_read(session, user, Kind.match, None, channel="web", action="queue",
                     detail={"candidates": [c.id for c in rows]})
    t = Translator(lang_of(request))
    return render(request, "faces.html", user, rows=rows,
                  flags={c.id: missing.explain_flags(t, c.flags).splitlines() for c in rows})


@router.get("/console/faces/{cid}")
async def face_review(cid: int, request: Request, session: SessionDep, user: FacesUser, _fresh: FreshSecondFactor):
    """The missing slice's review evidence (it audits the read): the matched crops side by side
    (the review card), every photo of both cases, the consistency flags, and the actions this
    officer may take now — confirm (checklist), second confirmation, reject (reason), undo."""
    from backend.missing import service as missing
    from backend.missing.models import MatchCandidate
    from backend.missing.workflow import CHECKLIST, REJECT_REASONS

    ev = await missing.review_evidence(session, user, cid, request.app.state.ctx.files)
    c = await session.get(MatchCandidate, cid)
    t = Translator(lang_of(request))
    return render(request, "face.html", user, ev=ev, c=c, flags=missing.explain_flags(t, c.flags).splitlines(),
                  checklist=CHECKLIST, reasons=REJECT_REASONS,
                  first=await session.get(User, c.first_reviewer_id) if c.first_reviewer_id else None)


# ---------------------------------------------------------------- supervision (procurator / deputy)
@router.get("/console/supervision")
async def supervision_page(request: Request, session: SessionDep, user: SupervisionUser):
    from backend.supervision import service as sup
    from backend.supervision.models import Suggestion

    items = await sup.list_items(session, user, limit=200)
    ids = [i.id for i in items]
    pending = list(await session.scalars(select(Suggestion).where(
        Suggestion.item_id.in_(ids), Suggestion.replied_at.is_(None)).order_by(Suggestion.reply_due))) if ids else []
    followups = list(await session.scalars(select(Suggestion).where(
        Suggestion.item_id.in_(ids), Suggestion.followup_at.is_not(None)).order_by(Suggestion.followup_at))) \
        if ids else []
    numbers = {i.id: i.number for i in items}
    # the items this person may rate now (a deputy's own closed items): the slice's own answer
    rateable = {i.id for i in items if sup.Action.rate in await sup.available_actions(session, user, i)}
    return render(request, "supervision.html", user, items=items, pending=pending, followups=followups,
                  numbers=numbers, at=now(), rateable=rateable)


class RatingIn(BaseModel):
    rating: str = Field(pattern="^(satisfied|basic|unsatisfied)$")
    comment: str | None = Field(None, max_length=2000)


@router.post("/console/api/supervision/{item_id}/rate")
async def rate_item(item_id: int, body: RatingIn, session: SessionDep, user: SupervisionUser) -> dict:
    """A deputy rates their own item, through the service the chat's rating buttons use."""
    from backend.supervision import service as sup

    item = await sup.rate(session, user, item_id, body.rating, body.comment)
    return {"number": item.number, "rating": item.rating, "status": item.status}


# ---------------------------------------------------------------- admin
@router.get("/console/admin")
async def admin_page(request: Request, session: SessionDep, user: AdminUser,
                     actor: str = "", action: str = "", subject: str = "",
                     since: str = Query("", pattern=r"^(\d{4}-\d{2}-\d{2})?$"),
                     until: str = Query("", pattern=r"^(\d{4}-\d{2}-\d{2})?$")):
    people = list(await session.scalars(select(User).where(User.role != Role.citizen.value).order_by(User.id)
                                        .limit(500)))
    invites = list(await session.scalars(select(InviteCode).order_by(InviteCode.id.desc()).limit(200)))
    redeemers = {u.id: u for u in await session.scalars(select(User).where(
        User.id.in_({i.used_by for i in invites if i.used_by})))} if invites else {}
    log = await audit_log.search(session, actor=actor or None, action=action.strip() or None,
                                 target=subject or None, since=_day(since) if since else None,
                                 until=_day(until, 1) if until else None, limit=200)
    names = await audit_log.actors(session, log)
    total = await session.scalar(select(func.count(AuditLog.id)))
    await audit_read(session, user, Kind.audit, None, channel="web", action="search",
                     detail={"actor": actor, "action": action, "target": subject, "since": since, "until": until})
    return render(request, "admin.html", user, people=people, invites=invites, redeemers=redeemers, log=log,
                  names=names,
                  audit_total=total, filters={"actor": actor, "action": action, "subject": subject,
                                              "since": since, "until": until},
                  roles=[r for r in Role if r != Role.citizen], at=now())


def _day(text: str, plus: int = 0):
    from datetime import datetime, time, timedelta

    from backend.core.clock import TZ

    return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date() + timedelta(days=plus), time(), TZ)


@router.post("/console/api/invites/{invite_id}/revoke")
async def revoke_invite(invite_id: int, session: SessionDep, user: AdminUser) -> dict:
    inv = await users.revoke_invite(session, invite_id, actor=f"user:{user.id}")
    return {"id": inv.id, "expires_at": inv.expires_at.isoformat()}


# ---------------------------------------------------------------- background exports (我的导出)
from backend.console import export_pages  # noqa: E402  (its routes use this module's page dependencies)

router.include_router(export_pages.router)
async def _bulk_options(session, user: User) -> dict:
    from backend.console.bulk import bulk_options

    return await bulk_options(session, user)


# More routes on the same router (kept in their own modules): bulk actions and reply templates,
# supervision item pages, administration, cross-region help requests.
from backend.console import admin, assist, bulk, supervision_pages  # noqa: E402,F401
