"""监督事项 item pages (procurator, deputy): the item with its timeline, suggestions and 回头看, and a
form for every step the supervision workflow table offers this person now
(``supervision.service.available_actions``). Each form posts to
``POST /console/api/supervision/{id}/step/{action}``, which calls the same service function the
chat's buttons call (the service checks the table again); the rating keeps its own route
(``/console/api/supervision/{id}/rate``, in api.py)."""
from __future__ import annotations

from datetime import date

from fastapi import Request
from pydantic import BaseModel, Field

from backend.console.api import SupervisionUser, lang_of, render, router
from backend.core.clock import now
from backend.core.deps import SessionDep
from backend.core.errors import DomainError, NotFound
from backend.core.policy import Kind
from backend.supervision import export as sup_export
from backend.supervision import service as sup
from backend.users.audit import audit_read

# The steps a page form can take (rate has its own route; the rest need nothing but the item).
STEPS = ("accept", "decline", "clue", "file_case", "suggest", "reply", "litigate", "close", "reopen", "note",
         "urge", "appeal")


@router.get("/console/supervision/{item_id}")
async def item_page(item_id: int, request: Request, session: SessionDep, user: SupervisionUser):
    item = await sup.get_item(session, item_id)
    await sup.require_view(session, user, item)
    await audit_read(session, user, Kind.supervision, item.number, channel="web")
    lang = lang_of(request)
    summary = await sup_export.summary(session, item, lang, mask=not sup.sees_personal_data(user))
    actions = [a.value for a in await sup.available_actions(session, user, item)]
    return render(request, "supervision_item.html", user, item=item, s=summary, actions=actions,
                  suggestions=await sup.suggestions(session, item), at=now(), rectified=sup.RECTIFIED,
                  ratings=sup.RATINGS)


class StepIn(BaseModel):
    note: str | None = Field(None, max_length=5000)
    agency: str | None = Field(None, max_length=128)
    content: str | None = Field(None, max_length=5000)
    reply_due: date | None = None  # suggest: the agency's reply deadline (default two months)
    reply_date: date | None = None  # reply: the day the agency replied
    rectified: str | None = Field(None, pattern="^(yes|partly|no)$")


@router.post("/console/api/supervision/{item_id}/step/{action}")
async def take_step(item_id: int, action: str, body: StepIn, session: SessionDep, user: SupervisionUser) -> dict:
    """One step on an item, through the service function the chat's button calls."""
    if action not in STEPS:
        raise NotFound("common.err_not_found")
    item = await sup.get_item(session, item_id)
    await sup.require_view(session, user, item)
    note = body.note or ""
    if action == "accept":
        await sup.accept(session, user, item_id, body.note)
    elif action == "decline":
        await sup.decline(session, user, item_id, note)
    elif action == "clue":
        await sup.to_clue(session, user, item_id, body.note)
    elif action == "file_case":
        await sup.file_case(session, user, item_id, body.note)
    elif action == "suggest":
        await sup.issue_suggestion(session, user, item_id, body.agency or "", body.content or "", body.reply_due)
    elif action == "reply":
        if body.reply_date is None:
            raise DomainError("supervision.err_date")
        await sup.record_reply(session, user, item_id, body.reply_date, body.content or "", body.rectified or "")
    elif action == "litigate":
        await sup.file_litigation(session, user, item_id, note)
    elif action == "close":
        await sup.close(session, user, item_id, note)
    elif action == "reopen":
        await sup.reopen(session, user, item_id, note)
    elif action == "note":
        await sup.add_note(session, user, item_id, note)
    elif action == "urge":
        await sup.urge(session, user, item_id)
    else:
        await sup.appeal(session, user, item_id, note)
    return {"number": item.number, "status": item.status}
