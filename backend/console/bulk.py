"""Bulk actions on the case list and the reply templates they use.

``POST /console/api/bulk`` takes one action on up to 500 cases, each through the disputes service
as if its button had been pressed (the service checks the workflow table, ``workflow.check``,
for every case), each in its own savepoint: a refused case keeps its state and says why, the
others go on; every case gets an audit entry with its result. Besides the workflow's steps
(accept, transfer, escalate, note, close) it assigns the cases to another mediator
(``disputes.assign``) and replies to each citizen from a template (``disputes.reply``: the
timeline and the notification outbox).

Reply templates (答复模板, table ``console_reply_templates``) are kept on ``/console/templates`` by
mediation supervisors (a mediator with the title ``supervisor`` or ``chief``) and admins; every
mediator reads them there and uses them in the bulk form."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from backend.console.api import MAX_BULK, CasesUser, page_user, render, router
from backend.console.models import ReplyTemplate
from backend.core.clock import now
from backend.core.deps import SessionDep
from backend.core.errors import Conflict, DomainError, Forbidden, NotFound
from backend.core.i18n import gettext
from backend.disputes import service as disputes
from backend.users import service as users
from backend.users.models import Role, User

TemplatesUser = Annotated[User, Depends(page_user("templates"))]
KEEPER_TITLES = ("supervisor", "chief")
ACTIONS = ("accept", "transfer", "escalate", "note", "close", "assign", "reply")


def keeps_templates(user: User) -> bool:
    """Mediation supervisors and admins keep the reply templates."""
    role = Role(user.role)
    return role == Role.admin or (role == Role.mediator and user.title in KEEPER_TITLES)


async def active_templates(session) -> list[ReplyTemplate]:
    return list(await session.scalars(select(ReplyTemplate).where(ReplyTemplate.active.is_(True))
                                      .order_by(ReplyTemplate.name)))


async def assignable(session, user: User) -> list[User]:
    """Mediators a case of this person's county can be handed to (the service checks each case)."""
    if user.jurisdiction is None:
        return await users.users_with_role(session, Role.mediator)
    county = await users.county_of(session, user.jurisdiction) or user.jurisdiction
    return await users.users_with_role(session, Role.mediator, county, exact=False)


async def bulk_options(session, user: User) -> dict:
    """What the case list's bulk form offers besides the units: mediators and templates."""
    return {"mediators": await assignable(session, user), "templates": await active_templates(session)}


# ---------------------------------------------------------------- bulk
class BulkIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=MAX_BULK)
    action: str = Field(pattern=f"^({'|'.join(ACTIONS)})$")
    target_id: int | None = None  # transfer: the unit
    mediator_id: int | None = None  # assign: the mediator
    template_id: int | None = None  # reply: the template
    reason: str | None = Field(None, max_length=1000)


async def _prepare(session, body: BulkIn):
    """What the action needs once for every case (the unit, the mediator, the template), or a
    clear refusal before any case is touched."""
    if body.action == "transfer":
        target = await users.jurisdiction(session, body.target_id) if body.target_id else None
        if target is None:
            raise DomainError("console.err_bulk_target")
        return target
    if body.action == "assign":
        mediator = await session.get(User, body.mediator_id) if body.mediator_id else None
        if mediator is None:
            raise DomainError("console_ops.err_bulk_mediator")
        return mediator
    if body.action == "reply":
        tpl = await session.get(ReplyTemplate, body.template_id) if body.template_id else None
        if tpl is None or not tpl.active:
            raise DomainError("console_ops.err_bulk_template")
        return tpl
    return None


async def _one(session, d, user: User, body: BulkIn, what) -> None:
    a = body.action
    if a == "accept":
        await disputes.accept(session, d, user, body.reason)
    elif a == "transfer":
        await disputes.transfer(session, d, user, what, body.reason or "")
    elif a == "escalate":
        await disputes.escalate(session, d, user, body.reason)
    elif a == "close":
        await disputes.close(session, d, user, body.reason)
    elif a == "assign":
        await disputes.assign(session, d, user, what, body.reason)
    elif a == "reply":
        await disputes.reply(session, d, user, what.body.replace("{number}", d.number))
    else:
        await disputes.add_note(session, d, user, body.reason or "")


@router.post("/console/api/bulk")
async def bulk(body: BulkIn, session: SessionDep, user: CasesUser) -> dict:
    """One action on up to 500 cases, each through the service as if its button were pressed,
    each in its own savepoint: a refused case keeps its state and says why, the others go on.
    Every case gets an audit entry with its result."""
    what = await _prepare(session, body)
    results = []
    for cid in dict.fromkeys(body.ids):
        try:
            async with session.begin_nested():
                d = await disputes.get_case(session, cid, user)
                await _one(session, d, user, body, what)
            results.append({"id": cid, "ok": True, "status": d.status})
        except DomainError as e:
            results.append({"id": cid, "ok": False, "error": gettext("zh", e.key, **e.params)})
        await users.audit(session, f"user:{user.id}", "console.bulk", f"dispute:{cid}", bulk_action=body.action,
                          ok=results[-1]["ok"], error=results[-1].get("error"),
                          **({"template": what.id} if body.action == "reply" else {}),
                          **({"mediator": what.id} if body.action == "assign" else {}))
    return {"done": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results),
            "results": results}


# ---------------------------------------------------------------- templates
@router.get("/console/templates")
async def templates_page(request: Request, session: SessionDep, user: TemplatesUser):
    rows = list(await session.scalars(select(ReplyTemplate).order_by(ReplyTemplate.active.desc(),
                                                                      ReplyTemplate.name)))
    return render(request, "templates.html", user, rows=rows, keeper=keeps_templates(user))


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    body: str = Field(min_length=1, max_length=1000)
    active: bool = True


async def _save(session, user: User, tpl: ReplyTemplate, body: TemplateIn) -> dict:
    if not keeps_templates(user):
        raise Forbidden("console_ops.err_templates_keeper")
    name, text = body.name.strip(), body.body.strip()
    if not name or not text:
        raise DomainError("console_ops.err_template_empty")
    clash = await session.scalar(select(ReplyTemplate.id).where(ReplyTemplate.name == name,
                                                                ReplyTemplate.id != tpl.id))
    if clash is not None:
        raise Conflict("console_ops.err_template_name", name=name)
    tpl.name, tpl.body, tpl.active, tpl.updated_by, tpl.updated_at = name, text, body.active, user.id, now()
    session.add(tpl)
    await session.flush()
    await users.audit(session, f"user:{user.id}", "console.template_saved", f"template:{tpl.id}",
                      name=name, active=body.active)
    return {"id": tpl.id, "name": tpl.name, "active": tpl.active}


@router.post("/console/api/templates", status_code=201)
async def create_template(body: TemplateIn, session: SessionDep, user: TemplatesUser) -> dict:
    return await _save(session, user, ReplyTemplate(), body)


@router.post("/console/api/templates/{template_id}")
async def update_template(template_id: int, body: TemplateIn, session: SessionDep, user: TemplatesUser) -> dict:
    tpl = await session.get(ReplyTemplate, template_id)
    if tpl is None:
        raise NotFound("common.err_not_found")
    return await _save(session, user, tpl, body)
