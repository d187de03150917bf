"""Citizens sign in with a phone code; the limits stop guessing and flooding; sessions end
when they should."""
from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from backend.auth.models import WEB_ID_BASE, OneTimeCode, WebAccount
from backend.core.clock import now
from backend.users.models import User
from tests.web.conftest import MID_HOUR, code_from_log, phone_sign_in


async def test_a_citizen_signs_in_with_a_code_and_gets_a_web_person_of_its_own_id_space(site, caplog):
    b = site.browser()
    body = await phone_sign_in(site, b, caplog)
    assert body["user"]["role"] == "citizen" and body["user"]["channel"] == "web"
    cookie = next(c for c in b.c.cookies.jar if c.name == "hehe_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    me = (await b.get("/auth/api/me")).json()
    assert me["user"]["name"] == "张三" and me["method"] == "phone"
    async with site.ctx.sm() as s:
        u = await s.scalar(select(User).where(User.channel == "web"))
        assert u.telegram_id > WEB_ID_BASE  # never a Telegram id (those have at most 52 bits)
        assert (await s.scalar(select(WebAccount.phone))) == "13912345678"
    # Signing in again with the same phone is the same person.
    b2 = site.browser("203.0.113.8")
    await phone_sign_in(site, b2, caplog, name="别名")
    async with site.ctx.sm() as s:
        assert await s.scalar(select(func.count(User.id)).where(User.channel == "web")) == 1


async def test_guessing_a_code_is_stopped_after_five_tries(site, caplog):
    b = site.browser()
    assert (await b.post("/auth/api/phone/code", json={"phone": "13912345678"})).status_code == 200
    right = code_from_log(caplog, "5678")
    wrong = f"{(int(right) + 1) % 10 ** 6:06d}"
    answers = [(await b.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": wrong})).status_code
               for _ in range(5)]
    assert answers == [400] * 5
    # The sixth try — even with the right code — is refused: the code is used up.
    r = await b.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": right})
    assert r.status_code == 400 and r.json()["key"] == "auth.err_code_attempts"
    assert (await b.get("/auth/api/me")).status_code == 401


async def test_a_brute_force_over_many_codes_and_addresses_is_capped_per_phone(site, caplog):
    """An attacker rotating addresses still gets at most 5 codes an hour for one phone, so at
    most 25 guesses an hour out of a million."""
    statuses = []
    start = now().replace(minute=56, second=0, microsecond=0)  # the sends cross the turn of the hour
    for i in range(8):
        with time_machine.travel(start + timedelta(seconds=61 * i), tick=False):
            b = site.browser(f"198.51.100.{i + 1}")
            statuses.append((await b.post("/auth/api/phone/code", json={"phone": "13700001111"})).status_code)
    assert statuses == [200] * 5 + [429] * 3
    async with site.ctx.sm() as s:
        assert await s.scalar(select(func.count(OneTimeCode.id))) == 5


async def test_a_resend_within_a_minute_is_refused_and_a_code_expires_after_five_minutes(site, caplog):
    b = site.browser()
    assert (await b.post("/auth/api/phone/code", json={"phone": "13912345678"})).status_code == 200
    r = await b.post("/auth/api/phone/code", json={"phone": "13912345678"})
    assert r.status_code == 429 and r.json()["key"] == "auth.err_resend_wait"
    code = code_from_log(caplog, "5678")
    with time_machine.travel(now() + timedelta(minutes=5, seconds=1), tick=False):
        r = await b.post("/auth/api/phone/verify", json={"phone": "13912345678", "code": code})
    assert r.status_code == 400 and r.json()["key"] == "auth.err_code_expired"


async def test_one_address_cannot_flood_many_phones(site, caplog):
    b = site.browser("192.0.2.50")
    with time_machine.travel(MID_HOUR, tick=True):  # per-address windows are fixed hours
        codes = [(await b.post("/auth/api/phone/code", json={"phone": f"1390000{i:04d}"})).status_code
                 for i in range(22)]
    assert codes.count(200) == 20 and codes[-2:] == [429, 429]


async def test_a_session_ends_after_idle_time_absolute_time_and_logout(site, caplog):
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    assert (await b.get("/auth/api/me")).status_code == 200
    with time_machine.travel(now() + timedelta(minutes=31), tick=False):
        assert (await b.get("/auth/api/me")).status_code == 401
    b2 = site.browser()
    await phone_sign_in(site, b2, caplog, phone="13800002222")
    for minutes in range(20, 12 * 60, 20):  # active all the time, still ends after 12 h
        with time_machine.travel(now() + timedelta(minutes=minutes), tick=False):
            assert (await b2.get("/auth/api/me")).status_code == 200
    with time_machine.travel(now() + timedelta(hours=12, minutes=1), tick=False):
        assert (await b2.get("/auth/api/me")).status_code == 401
    b3 = site.browser()
    await phone_sign_in(site, b3, caplog, phone="13800003333")
    assert (await b3.post("/auth/api/logout")).status_code == 200
    assert (await b3.get("/auth/api/me")).status_code == 401


async def test_a_person_lists_and_ends_their_sessions_and_an_ended_one_stops_at_its_next_request(site, caplog):
    phone_a, phone_b = site.browser("192.0.2.1"), site.browser("192.0.2.2")
    await phone_sign_in(site, phone_a, caplog)
    await phone_sign_in(site, phone_b, caplog)
    listed = (await phone_a.get("/auth/api/sessions")).json()["sessions"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    other = next(s for s in listed if not s["current"])
    assert (await phone_a.delete(f"/auth/api/sessions/{other['id']}")).status_code == 200
    assert (await phone_b.get("/auth/api/me")).status_code == 401
    assert (await phone_a.get("/auth/api/me")).status_code == 200
    # Someone else's session id does nothing.
    stranger = site.browser("192.0.2.3")
    await phone_sign_in(site, stranger, caplog, phone="13600006666")
    mine = next(s for s in (await phone_a.get("/auth/api/sessions")).json()["sessions"] if s["current"])
    assert (await stranger.delete(f"/auth/api/sessions/{mine['id']}")).status_code == 404
    assert (await phone_a.get("/auth/api/me")).status_code == 200


async def test_a_deactivated_person_is_signed_out_at_the_next_request(site, caplog):
    b = site.browser()
    await phone_sign_in(site, b, caplog)
    async with site.ctx.sm() as s:
        u = await s.scalar(select(User).where(User.channel == "web"))
        u.active = False
        await s.commit()
    assert (await b.get("/chat/api/messages")).status_code == 401


async def test_behind_https_the_cookies_are_secure_and_a_new_sign_in_replaces_the_old_session(site, caplog):
    import httpx

    from tests.web.conftest import Browser
    b = Browser(site.app, httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url="https://hehe.test"))
    site.browsers.append(b)
    await phone_sign_in(site, b, caplog)
    cookies = {c.name: c for c in b.c.cookies.jar}
    assert cookies["hehe_session"].secure and cookies["hehe_csrf"].secure
    old = cookies["hehe_session"].value
    with time_machine.travel(now() + timedelta(seconds=61), tick=False):
        await phone_sign_in(site, b, caplog)
    assert b.c.cookies.get("hehe_session") != old
    stale = site.browser()
    stale.c.cookies.set("hehe_session", old)
    assert (await stale.get("/auth/api/me")).status_code == 401  # the old session was ended
