"""The built-in web chat at /chat: a person in the browser talks to the same Dispatcher
through the offline channel. Meant for the embedded default (bound to localhost) and demos."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from backend.core.errors import DomainError, NotFound
from backend.web import chat_service

router = APIRouter(tags=["web chat"])
STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = 10 * 1024 * 1024


class NewUser(BaseModel):
    name: str = Field("", max_length=64)
    language: str = "zh"


class Say(BaseModel):
    user: int
    text: str = Field(..., max_length=20000)


class Press(BaseModel):
    user: int
    message_id: int
    data: str


class Where(BaseModel):
    user: int
    lat: float
    lon: float


class SetRole(BaseModel):
    user: int
    role: str
    jurisdiction: str | None = None
    title: str | None = None


def _ctx(request: Request):
    return request.app.state.ctx


@router.get("/chat", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "chat.html", media_type="text/html")


@router.get("/", include_in_schema=False)
async def root():
    return FileResponse(STATIC / "chat.html", media_type="text/html")


@router.get("/chat/api/users")
async def users(request: Request):
    ctx = _ctx(request)
    return {"demo": ctx.settings.demo, "users": [
        {"id": u.telegram_id, "name": u.name, "role": u.role,
         "jurisdiction": u.jurisdiction.name if u.jurisdiction else None}
        for u in await chat_service.local_users(ctx)]}


@router.post("/chat/api/users", status_code=201)
async def new_user(body: NewUser, request: Request):
    u = await chat_service.create_local_user(_ctx(request), body.name, body.language)
    return {"id": u.telegram_id, "name": u.name, "role": u.role}


@router.post("/chat/api/role")
async def set_role(body: SetRole, request: Request):
    u = await chat_service.set_role_direct(_ctx(request), body.user, body.role, body.jurisdiction, body.title)
    return {"id": u.telegram_id, "role": u.role}


@router.post("/chat/api/send")
async def send(body: Say, request: Request):
    ctx = _ctx(request)
    await chat_service.ensure_local_user(ctx, body.user)
    await ctx.channel.send_text(body.user, body.text)
    await ctx.flush()
    return {"ok": True}


@router.post("/chat/api/press")
async def press(body: Press, request: Request):
    ctx = _ctx(request)
    m = ctx.channel.find(body.user, body.message_id)
    if m is None:
        raise NotFound("common.stale_button")
    label = next((l for row in m.inline for l, d in row if d == body.data), "")
    await ctx.channel.press_callback(body.user, m, body.data, label)
    await ctx.flush()
    return {"ok": True}


@router.post("/chat/api/photo")
async def photo(request: Request, user: int = Form(...), caption: str = Form(""),
                file: UploadFile = File(...)):
    ctx = _ctx(request)
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise DomainError("common.err_file_too_large")
    await chat_service.ensure_local_user(ctx, user)
    if (file.content_type or "").startswith("image/"):
        await ctx.channel.send_photo(user, data, caption or None)
    else:
        await ctx.channel.send_document(user, data, file.filename or "file", caption or None)
    await ctx.flush()
    return {"ok": True}


@router.post("/chat/api/location")
async def location(body: Where, request: Request):
    ctx = _ctx(request)
    await chat_service.ensure_local_user(ctx, body.user)
    await ctx.channel.send_location(body.user, body.lat, body.lon)
    await ctx.flush()
    return {"ok": True}


@router.get("/chat/api/messages")
async def messages(request: Request, user: int, since: int = 0, wait: float = 0):
    ctx = _ctx(request)
    if wait > 0 and ctx.channel.last_seq() <= since:
        await ctx.channel.wait_changes(since, min(wait, 25))
    msgs = ctx.channel.transcript(user, since)
    return {"last": ctx.channel.last_seq(), "messages": [
        {**m.as_json(), "seq": m.seq, "inline": [[{"text": l, "data": d} for l, d in row] for row in m.inline]}
        for m in msgs]}


@router.get("/chat/files/{file_id}", include_in_schema=False)
async def file(file_id: str, request: Request):
    blob = _ctx(request).channel.get_file(file_id)
    if blob is None:
        raise NotFound("common.err_not_found")
    return Response(blob.data, media_type=blob.mime)
