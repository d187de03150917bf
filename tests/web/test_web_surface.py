"""The attacks of issue #11 against a non-demo server, and the web chat as a signed-in person
uses it: scoped transcripts and files, CSRF, allowed hosts, headers, capped uploads, history
that survives a restart."""
from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import Role, User
from tests.web.conftest import phone_sign_in, wait_for


def jpeg(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "JPEG")
    return buf.getvalue()


async def _official(site) -> User:
    async with session_scope(site.ctx.sm) as s:
        u, _ = await users.get_or_create_user(s, 777000111, name="官员", channel="telegram")
        await users.set_role(s, u, Role.official, await users.find_jurisdiction(s, "椒江区"), actor="test")
        return u


async def _texts(b) -> str:
    return "\n".join(m["text"] for m in (await b.get("/chat/api/messages")).json()["messages"])


async def test_each_attack_of_the_issue_is_refused_on_a_server_without_demo_mode(site, caplog):
    official = await _official(site)
    anon = site.browser()
    # curl $B/chat/api/users — no list of people, in any form
    assert (await anon.get("/chat/api/users")).status_code in (401, 403, 404)
    assert (await anon.get("/auth/api/demo/users")).status_code == 404
    assert (await anon.post("/auth/api/demo/login", json={"user": 1})).status_code == 404
    # curl -XPOST $B/chat/api/send -d '{"user":<official>,"text":"/me"}'
    r = await anon.post("/chat/api/send", json={"user": official.telegram_id, "text": "/me"})
    assert r.status_code == 401
    # curl "$B/chat/api/messages?user=1005"
    assert (await anon.get("/chat/api/messages?user=1005")).status_code == 401
    # curl -o x.jpg $B/chat/files/<photo id>
    victim = site.browser("198.51.100.20")
    await phone_sign_in(site, victim, caplog, phone="13500001234")
    assert (await victim.post("/chat/api/photo", files={"file": ("a.jpg", jpeg(), "image/jpeg")})).status_code == 200
    photo_id = next(m["photo_id"] for m in (await victim.get("/chat/api/messages")).json()["messages"]
                    if m.get("photo_id"))
    assert (await anon.get(f"/chat/files/{photo_id}")).status_code == 401
    # curl -XPOST $B/chat/api/press -d '{"user":1002,"message_id":1,"data":"dsp:accept:4"}'
    r = await anon.post("/chat/api/press", json={"user": 1002, "message_id": 1, "data": "dsp:accept:4"})
    assert r.status_code == 401
    # Signed in, a person still only ever acts as themself: the "user" field is ignored.
    attacker = site.browser("198.51.100.21")
    await phone_sign_in(site, attacker, caplog, phone="13600004321", name="攻击者")
    assert (await attacker.post("/chat/api/send", json={"user": official.telegram_id, "text": "/me"})).status_code == 200
    assert "攻击者" in await _texts(attacker) and "官员" not in await _texts(attacker)
    assert (await attacker.get(f"/chat/files/{photo_id}")).status_code == 404
    r = await attacker.post("/chat/api/press", json={"message_id": 1, "data": "dsp:accept:4"})
    assert r.status_code == 404
    async with site.ctx.sm() as s:  # nothing created a "local" person for a Telegram id
        assert await s.scalar(select(func.count(User.id)).where(User.channel == "local")) == 0


async def test_a_second_browser_sees_neither_the_messages_nor_the_files_of_the_first(site, caplog):
    a, b = site.browser("192.0.2.10"), site.browser("192.0.2.11")
    await phone_sign_in(site, a, caplog, phone="13500000001", name="甲")
    await phone_sign_in(site, b, caplog, phone="13500000002", name="乙")
    await a.post("/chat/api/send", json={"text": "我家楼上漏水 东山路88号"})
    await a.post("/chat/api/photo", files={"file": ("p.jpg", jpeg(), "image/jpeg")})
    a_msgs = (await a.get("/chat/api/messages")).json()["messages"]
    assert any(m["mine"] and "东山路88号" in m["text"] for m in a_msgs)
    b_msgs = (await b.get("/chat/api/messages")).json()["messages"]
    assert not any("东山路" in m["text"] for m in b_msgs)
    photo = next(m["photo_id"] for m in a_msgs if m.get("photo_id"))
    assert (await a.get(f"/chat/files/{photo}")).status_code == 200
    assert (await b.get(f"/chat/files/{photo}")).status_code == 404


async def test_files_are_typed_by_their_content_and_only_images_are_shown_inline(site, caplog):
    from aiogram.types import BufferedInputFile
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    await b.post("/chat/api/photo", files={"file": ("evil.jpg", b"<script>alert(1)</script>", "image/jpeg")})
    await b.post("/chat/api/photo", files={"file": ("real.png", jpeg(), "text/html")})
    mine = [m for m in (await b.get("/chat/api/messages")).json()["messages"] if m["mine"]]
    assert mine[0].get("document") == "evil.jpg" and "photo_id" not in mine[0]  # not an image: a document
    r = await b.get(f"/chat/files/{mine[1]['photo_id']}")
    assert r.headers["content-type"] == "image/jpeg" and "content-disposition" not in r.headers
    # What the bot sends that is not an image is served as an attachment, typed by its content.
    async with site.ctx.sm() as s:
        chat = await s.scalar(select(User.telegram_id).where(User.channel == "web"))
    web = site.ctx.web
    await web.bot.send_document(chat, BufferedInputFile(b"<html><script>alert(1)</script>", "page.html"))
    await web.bot.send_document(chat, BufferedInputFile(b"%PDF-1.4 report", "report.pdf"))
    await web.persist()
    docs = [m["document_id"] for m in (await b.get("/chat/api/messages")).json()["messages"] if m.get("document_id")]
    html, pdf = [await b.get(f"/chat/files/{d}") for d in docs]
    assert html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"].startswith("attachment")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.headers["content-disposition"].startswith("attachment")


async def test_cookie_requests_without_the_csrf_token_or_from_another_site_are_refused(site, caplog):
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    r = await b.c.post("/chat/api/send", json={"text": "hi"})  # no X-CSRF-Token
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    r = await b.c.post("/chat/api/photo", files={"file": ("p.jpg", jpeg(), "image/jpeg")})  # multipart
    assert r.status_code == 403
    r = await b.post("/chat/api/send", json={"text": "hi"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = await b.post("/chat/api/send", json={"text": "hi"}, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    assert (await b.post("/chat/api/send", json={"text": "hi"})).status_code == 200
    # A cross-site form can not sign a browser in either (login CSRF).
    r = await site.browser().c.post("/auth/api/phone/code", json={"phone": "13912345678"},
                                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


async def test_another_host_name_is_refused_and_pages_carry_security_headers(site):
    b = site.browser()
    assert (await b.get("/healthz", headers={"Host": "evil.example"})).status_code == 400
    r = await b.get("/chat")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text and "<script src=" in r.text  # no inline script
    docs = await b.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "<script>" not in docs.text
    bundle = await b.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text  # vendored, served locally
    assert (await b.get("/redoc")).status_code == 404


async def test_an_upload_is_refused_while_it_streams_once_it_passes_the_cap(site, caplog):
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    cap = site.ctx.settings.web_upload_max_mb * 1024 * 1024
    sent = 0

    async def body():
        nonlocal sent
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
        yield boundary
        for _ in range(4 * cap // 65536):
            sent += 65536
            yield b"\0" * 65536

    r = await b.post("/chat/api/photo", content=body(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert sent < cap + 256 * 1024  # it stopped reading right after the cap, not at the end
    # A declared size over the cap is refused before reading anything.
    r = await b.post("/chat/api/photo", content=b"x", headers={"Content-Type": "multipart/form-data; boundary=x",
                                                               "Content-Length": str(cap * 2)})
    assert r.status_code == 413


async def test_a_long_poll_returns_when_a_notification_arrives(site, caplog):
    import asyncio

    from backend.notify.service import notify
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    last = (await b.get("/chat/api/messages")).json()["last"]
    poll = asyncio.create_task(b.get(f"/chat/api/messages?since={last}&wait=20"))
    await asyncio.sleep(0.2)
    async with session_scope(site.ctx.sm) as s:
        u = await s.scalar(select(User).where(User.channel == "web"))
        await notify(s, u, "common.cancelled", urgent=True)  # not held back by quiet hours (22:00–07:00)
    site.ctx.deliverer.wake.set()
    await site.ctx.flush()
    r = await asyncio.wait_for(poll, 15)
    assert any(not m["mine"] for m in r.json()["messages"])
    assert await wait_for(lambda: _persisted(site))


async def _persisted(site) -> bool:
    from backend.auth.models import WebMessage
    async with site.ctx.sm() as s:
        return bool(await s.scalar(select(func.count(WebMessage.id)).where(WebMessage.mine.is_(False))))
