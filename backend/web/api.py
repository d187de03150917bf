"""The built-in web chat at /chat: a signed-in person talks to the same Dispatcher through the
web channel (backend.web.channel). Every route acts for the session's person only — no route
takes a person's id from the client; files only for the people they were sent to or by."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import Request as StarletteRequest

from backend.auth.guards import PUBLIC
from backend.auth.sessions import WebUser
from backend.core.errors import DomainError, NotFound
from backend.users.models import User

router = APIRouter(tags=["web chat"])
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"chat.js": "text/javascript", "chat.css": "text/css", "docs.js": "text/javascript"}
MULTIPART_OVERHEAD = 64 * 1024


class Say(BaseModel):
    text: str = Field(..., min_length=1, max_length=20000)


class Press(BaseModel):
    message_id: int = Field(..., ge=1, lt=2 ** 62)
    data: str = Field(..., max_length=64)


class Where(BaseModel):
    lat: float = Field(..., ge=-90, le=90)
    lon: float = Field(..., ge=-180, le=180)


class TooLarge(DomainError):
    status = 413
    code = "too_large"


def sniff_image(data: bytes) -> str | None:
    from backend.core.files import sniff_mime  # the one sniffer of stored files

    mime = sniff_mime(data)
    return mime if mime is not None and mime.startswith("image/") else None


def sniff(data: bytes) -> str:
    return sniff_image(data) or ("application/pdf" if data.startswith(b"%PDF-") else "application/octet-stream")


async def _web(request: Request, user: User):
    """The web channel and the person's chat id. The transcript is in the database, so any
    replica serves anyone (backend.web.channel)."""
    ctx = request.app.state.ctx
    ctx.web.set_profile(user.telegram_id, name=user.name, language_code=user.language)
    return ctx, ctx.web, user.telegram_id


async def _after(ctx) -> None:
    await ctx.flush()
    await ctx.web.persist()


@router.get("/", include_in_schema=False, dependencies=[PUBLIC])
@router.get("/chat", include_in_schema=False, dependencies=[PUBLIC])
async def page():
    return FileResponse(STATIC / "chat.html", media_type="text/html; charset=utf-8")


@router.get("/chat/assets/{name}", include_in_schema=False, dependencies=[PUBLIC])
async def asset(name: str):
    if name not in ASSETS:
        raise NotFound("common.err_not_found")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get("/chat/api/messages")
async def messages(request: Request, user: WebUser, since: int = 0, wait: float = 0):
    """The person's transcript after ``since`` (their own messages too); with ``wait`` a long
    poll of up to 25 s."""
    _ctx, web, chat = await _web(request, user)
    since = max(0, min(since, 2 ** 62))
    if wait > 0:
        last, shown = await web.wait_history(chat, since, min(wait, 25))
    else:
        last, shown = await web.history(chat, since)
    return {"last": last, "messages": shown}


@router.post("/chat/api/send")
async def send(body: Say, request: Request, user: WebUser):
    ctx, web, chat = await _web(request, user)
    await web.send_text(chat, body.text)
    await _after(ctx)
    return {"ok": True}


@router.post("/chat/api/press")
async def press(body: Press, request: Request, user: WebUser):
    ctx, web, chat = await _web(request, user)
    m = await web.fetch(chat, body.message_id)
    if m is None or not any(d == body.data for row in m.inline for _, d in row):
        raise NotFound("common.stale_button")
    label = next(l for row in m.inline for l, d in row if d == body.data)
    await web.press_callback(chat, m, body.data, label)
    await _after(ctx)
    return {"ok": True}


async def read_capped(request: Request, cap: int) -> bytes:
    """The request body, refused as soon as it is larger than ``cap`` (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise TooLarge("common.err_file_too_large")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > cap:
            raise TooLarge("common.err_file_too_large")
    return bytes(buf)


@router.post("/chat/api/photo", openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}, "caption": {"type": "string"}}}}}}})
async def upload(request: Request, user: WebUser):
    """A photo (camera or gallery) or a file; images are recognised by their content."""
    ctx = request.app.state.ctx
    cap = ctx.settings.web_upload_max_mb * 1024 * 1024
    body = await read_capped(request, cap + MULTIPART_OVERHEAD)
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await StarletteRequest(request.scope, receive).form(max_files=1, max_fields=4)
    except Exception as e:
        raise DomainError("common.err_validation") from e
    f = form.get("file")
    if f is None or isinstance(f, str):
        raise DomainError("common.err_validation")
    data = await f.read()
    caption = form.get("caption") if isinstance(form.get("caption"), str) else ""
    await form.close()
    if len(data) > cap:
        raise TooLarge("common.err_file_too_large")
    ctx, web, chat = await _web(request, user)
    if sniff_image(data):
        await web.send_photo(chat, data, (caption or "")[:1024] or None)
    else:
        name = Path(f.filename or "file").name[:100] or "file"
        await web.send_document(chat, data, name, (caption or "")[:1024] or None)
    await _after(ctx)
    return {"ok": True}


@router.post("/chat/api/location")
async def location(body: Where, request: Request, user: WebUser):
    """A location the person's browser shared (with their consent)."""
    ctx, web, chat = await _web(request, user)
    await web.send_location(chat, body.lat, body.lon)
    await _after(ctx)
    return {"ok": True}


@router.get("/chat/files/{file_id}", include_in_schema=False)
async def file(file_id: str, request: Request, user: WebUser):
    ctx = request.app.state.ctx
    web = ctx.web
    if not await web.may_fetch(user.telegram_id, file_id):
        raise NotFound("common.err_not_found")
    blob = await web.load_file(file_id)
    if blob is None:
        raise NotFound("common.err_not_found")
    mime = sniff(blob.data)
    headers = {"Cache-Control": "private, no-store"}
    if not mime.startswith("image/"):
        headers["Content-Disposition"] = 'attachment; filename="file"'
    return Response(blob.data, media_type=mime, headers=headers)


# ---------------------------------------------------------------- /docs with local assets
SWAGGER = STATIC / "swagger"  # Swagger UI 5, vendored from the npm package swagger-ui-dist
SWAGGER_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}


@router.get("/docs", include_in_schema=False, dependencies=[PUBLIC])
async def docs():
    return HTMLResponse("""<!doctype html><html><head><meta charset="utf-8"><title>Hehe 和合 API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/chat/assets/docs.js"></script>
</body></html>""")


@router.get("/docs/assets/{name}", include_in_schema=False, dependencies=[PUBLIC])
async def docs_asset(name: str):
    if name not in SWAGGER_ASSETS:
        raise NotFound("common.err_not_found")
    return FileResponse(SWAGGER / name, media_type=SWAGGER_ASSETS[name])
