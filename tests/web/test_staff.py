"""Staff on the web: invite → password + TOTP; sign-in needs both; a staff session without a
second factor reaches nothing; step-up before revealing a face match or exporting."""
from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import time_machine
from fastapi import APIRouter
from sqlalchemy import select

from backend.auth.guards import FreshSecondFactor
from backend.auth.models import WebAccount
from backend.core.clock import now
from backend.core.db import session_scope
from backend.users import service as users
from backend.users.models import Role, User
from tests.web.conftest import MID_HOUR, phone_sign_in

PASSWORD = "correct horse battery"


async def _staff(site, b, login="mediator1", role=Role.mediator) -> str:
    """Redeem an invite in the browser and confirm the TOTP; the TOTP secret."""
    code = await site.staff_invite(role)
    r = await b.post("/auth/api/invite", json={"code": code, "login": login, "name": "李调解", "password": PASSWORD})
    assert r.status_code == 200, r.text
    secret = r.json()["totp_secret"]
    assert r.json()["second_factor_setup"] is True
    return secret


async def test_a_staff_member_redeems_an_invite_sets_a_password_and_totp_and_sees_their_role(site):
    b = site.browser()
    code = await site.staff_invite(Role.mediator)
    r = await b.post("/auth/api/invite", json={"code": code, "login": "mediator1", "name": "李调解", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["role"] == "mediator"
    secret = r.json()["totp_secret"]
    assert r.json()["totp_uri"].startswith("otpauth://totp/")
    assert r.json()["totp_qr"].startswith("data:image/svg+xml")  # drawn here, no QR service sees the key
    # Before the TOTP is confirmed the session reaches nothing with personal data.
    assert (await b.get("/chat/api/messages")).status_code == 401
    assert (await b.get("/auth/api/me")).json()["second_factor_setup"] is True
    assert (await b.post("/auth/api/totp", json={"code": "000000"})).status_code == 400
    assert (await b.post("/auth/api/totp", json={"code": pyotp.TOTP(secret).now()})).status_code == 200
    assert (await b.get("/chat/api/messages")).status_code == 200
    await b.post("/chat/api/send", json={"text": "/start"})
    texts = [m["text"] for m in (await b.get("/chat/api/messages")).json()["messages"]]
    assert any("调解员" in t for t in texts)
    async with site.ctx.sm() as s:
        acc = await s.scalar(select(WebAccount).where(WebAccount.login == "mediator1"))
        assert acc.password_hash.startswith("$argon2") and PASSWORD not in acc.password_hash
    # The invite is used: a second redemption is refused.
    r = await site.browser().post("/auth/api/invite", json={"code": code, "login": "other1", "name": "x", "password": PASSWORD})
    assert r.status_code == 400


async def test_staff_sign_in_needs_the_password_and_a_fresh_totp_that_is_never_reused(site):
    secret = await _staff(site, site.browser())
    totp = pyotp.TOTP(secret)
    await site.browser().post("/auth/api/totp", json={"code": totp.now()})  # not signed in: nothing happens
    b = site.browser()
    r = await b.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["second_factor_setup"] is True  # TOTP never confirmed yet
    new = (await b.post("/auth/api/totp/new")).json()["totp_secret"]
    assert (await b.post("/auth/api/totp", json={"code": pyotp.TOTP(new).now()})).status_code == 200
    totp = pyotp.TOTP(new)
    with time_machine.travel(now() + timedelta(seconds=60), tick=False):
        c = site.browser()
        assert (await c.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD})).status_code == 401
        assert (await c.post("/auth/api/password", json={"login": "mediator1", "password": "wrong password!",
                                                         "totp": totp.now()})).status_code == 401
        code = totp.now()
        r = await c.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD, "totp": code})
        assert r.status_code == 200 and r.json()["second_factor_setup"] is False
        assert (await c.get("/chat/api/messages")).status_code == 200
        replay = site.browser()  # the same code a second time
        assert (await replay.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD,
                                                              "totp": code})).status_code == 401


async def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(site):
    b = site.browser()
    secret = await _staff(site, b)
    await b.post("/auth/api/totp", json={"code": pyotp.TOTP(secret).now()})
    c = site.browser()
    for _ in range(5):
        assert (await c.post("/auth/api/password", json={"login": "mediator1", "password": "nope nope nope"})).status_code == 401
    with time_machine.travel(now() + timedelta(seconds=40), tick=False):
        r = await c.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD,
                                                     "totp": pyotp.TOTP(secret).now()})
        assert r.status_code == 401 and r.json()["key"] == "auth.err_locked"
    with time_machine.travel(now() + timedelta(minutes=16), tick=False):
        r = await c.post("/auth/api/password", json={"login": "mediator1", "password": PASSWORD,
                                                     "totp": pyotp.TOTP(secret).now()})
        assert r.status_code == 200


async def test_a_citizen_invited_in_the_chat_must_set_up_a_password_and_totp_before_going_on(site, caplog):
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    code = await site.staff_invite(Role.officer, "椒江区")
    await b.post("/chat/api/send", json={"text": f"/join {code}"})
    r = await b.get("/chat/api/messages")
    assert r.status_code == 401 and r.json()["error"] == "second_factor_required"
    assert (await b.post("/auth/api/setup", json={"login": "officer7", "password": "short"})).status_code == 400
    r = await b.post("/auth/api/setup", json={"login": "officer7", "password": PASSWORD})
    assert r.status_code == 200
    assert (await b.post("/auth/api/totp", json={"code": pyotp.TOTP(r.json()["totp_secret"]).now()})).status_code == 200
    assert (await b.get("/chat/api/messages")).status_code == 200


async def test_revealing_a_face_match_or_exporting_needs_a_totp_from_the_last_minutes(tmp_path, template_db):
    """``require_fresh_second_factor`` on a route (the way the faces and export routes use it)."""
    from backend.app import create_app
    from tests.web.conftest import running, site_settings

    settings = site_settings(tmp_path, template_db)
    app = create_app(settings)
    extra = APIRouter()

    @extra.get("/api/test/reveal")
    async def reveal(user: FreshSecondFactor):
        return {"ok": True}

    app.include_router(extra)
    async with running(settings, app) as site:
        b = site.browser()
        secret = await _staff(site, b, role=Role.officer)
        totp = pyotp.TOTP(secret)
        await b.post("/auth/api/totp", json={"code": totp.now()})
        assert (await b.get("/api/test/reveal")).status_code == 200  # just confirmed
        later = now() + timedelta(minutes=settings.step_up_minutes + 1)
        with time_machine.travel(later, tick=False):
            await b.get("/auth/api/me")
        with time_machine.travel(later + timedelta(seconds=5), tick=False):
            r = await b.get("/api/test/reveal")
            assert r.status_code == 403 and r.json()["error"] == "step_up_required"
            assert (await b.post("/auth/api/step-up", json={"code": "123456"})).status_code == 401
            assert (await b.post("/auth/api/step-up", json={"code": totp.now()})).status_code == 200
            assert (await b.get("/api/test/reveal")).status_code == 200
        assert (await site.browser().get("/api/test/reveal")).status_code == 401


async def test_telegram_and_web_become_one_person_only_through_the_link_code(site, caplog):
    from backend.auth import linking
    async with session_scope(site.ctx.sm) as s:
        tg, _ = await users.get_or_create_user(s, 55501, name="电报用户", channel="telegram")
        await users.set_role(s, tg, Role.deputy, await users.find_jurisdiction(s, "椒江区"), actor="test")
        code = await linking.new_link_code(s, tg)
    b = site.browser()
    await phone_sign_in(site, b, caplog, name="网页用户")
    assert (await b.post("/auth/api/link", json={"code": "WRONG-CODE"})).status_code == 400
    r = await b.post("/auth/api/link", json={"code": code})
    assert r.status_code == 200 and r.json()["user"]["role"] == "deputy"
    assert (await b.post("/auth/api/link", json={"code": code})).status_code in (400, 401)
    async with site.ctx.sm() as s:
        acc = await s.scalar(select(WebAccount).where(WebAccount.phone == "13912345678"))
        assert acc.user_id == tg.id
        assert (await s.scalar(select(User).where(User.channel == "web"))).active is False
        assert (await s.get(User, tg.id)).channel == "telegram"  # notifications stay on Telegram
    # The same phone now signs in as the Telegram person (staff: second factor to set up first).
    c = site.browser("203.0.113.99")
    r = await phone_sign_in(site, c, caplog)
    assert r["user"]["role"] == "deputy" and r["second_factor_setup"] is True


async def test_link_codes_come_only_from_telegram_and_guessing_is_limited(site, caplog):
    from backend.auth import linking
    from backend.core.errors import DomainError
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    async with session_scope(site.ctx.sm) as s:
        web_user = await s.scalar(select(User).where(User.channel == "web"))
        try:
            await linking.new_link_code(s, web_user)
            raise AssertionError("a web person got a link code")
        except DomainError as e:
            assert e.key == "auth.err_link_telegram_only"
    with time_machine.travel(MID_HOUR, tick=True):  # the tries are counted in fixed hours
        answers = [(await b.post("/auth/api/link", json={"code": f"AAAA-AA{i:02d}"})).status_code for i in range(7)]
    assert answers[:5] == [400] * 5 and answers[5:] == [429, 429]


async def test_link_in_telegram_gives_the_code_that_the_web_page_takes(site, caplog):
    """``/link`` through the real Dispatcher, as a Telegram person (a bot session named
    ``telegram``); the same command in the web chat only says where to send it."""
    from bot.offline import OfflineChannel

    telegram = OfflineChannel()
    telegram.session.channel_name = "telegram"
    telegram.dispatcher = site.ctx.dispatcher
    await telegram.send_text(88001, "/link")
    reply = telegram.out[88001][-1].text
    code = re.search(r"[A-Z0-9]{4}-[A-Z0-9]{4}", reply).group(0)
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    await b.post("/chat/api/send", json={"text": "/link"})
    assert any("Telegram" in m["text"] for m in (await b.get("/chat/api/messages")).json()["messages"] if not m["mine"])
    r = await b.post("/auth/api/link", json={"code": code})
    assert r.status_code == 200 and r.json()["user"]["channel"] == "telegram"
