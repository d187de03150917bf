"""灯塔 help requests (人像协作) for officers: the cross-region requests sent to the officer (to
their county or to every county) with the marked face and an answer form, and the officer's own
requests with their status and every answer. Reads and answers go through the missing slice
(``assist_inbox``, ``my_assist_requests``, ``assist_marked_photo``, ``answer_assist``); sending a
request stays in the chat, where the photo and the face are chosen."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from backend.console.api import page_user, render, router
from backend.core.deps import SessionDep
from backend.core.policy import Kind
from backend.users.audit import audit_read
from backend.users.models import User

AssistUser = Annotated[User, Depends(page_user("assist"))]


@router.get("/console/assist")
async def assist_page(request: Request, session: SessionDep, user: AssistUser):
    from backend.missing import service as missing

    inbox = await missing.assist_inbox(session, user)
    mine = await missing.my_assist_requests(session, user)
    await audit_read(session, user, Kind.assist, None, channel="web", action="queue",
                     detail={"received": [r["id"] for r in inbox], "sent": [r["id"] for r in mine]})
    return render(request, "assist.html", user, inbox=inbox, mine=mine)


@router.get("/console/assist/{request_id}/image")
async def assist_image(request_id: int, request: Request, session: SessionDep, user: AssistUser):
    from backend.missing import service as missing

    data = await missing.assist_marked_photo(session, user, request_id, request.app.state.ctx.files)
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, no-store"})


class AnswerIn(BaseModel):
    case_no: str | None = Field(None, max_length=64)  # empty: 不认识此人
    note: str | None = Field(None, max_length=500)


@router.post("/console/api/assist/{request_id}/answer")
async def answer(request_id: int, body: AnswerIn, session: SessionDep, user: AssistUser) -> dict:
    """The chat's answer buttons' service: a case number of the officer's own, or "does not know"."""
    from backend.missing import service as missing

    a = await missing.answer_assist(session, user, request_id, (body.case_no or "").strip() or None,
                                    (body.note or "").strip() or None)
    return {"id": a.id, "request_id": request_id, "case_id": a.case_id}
