"""Signing in through each provider end to end: the real app under uvicorn, the provider's
offline mock, a browser-like client following every redirect; then the session cookie shows
the right person. Failures end on a polite page (or JSON), never a 500."""
from __future__ import annotations

import shutil

import httpx
import pytest
from sqlalchemy import func, select

from backend.auth.models import WebSession
from backend.sso.models import ExternalAccount
from backend.sso.service import hash_id_card, id_hash_key
from backend.users.models import Role, User
from tests.conftest import make_settings
from tests.sso.conftest import provider_settings
from tests.sso.driver import (
    browser,
    in_db,
    oidc_sign_in,
    query,
    running_hehe,
    zlb_sign_in,
    zzd_sign_in,
)


@pytest.fixture
def hehe(tmp_path, template_db, zzd_mock, zlb_mock, oidc_mock):
    """Hehe with all three providers pointed at their mocks (not demo mode)."""
    def start(**extra):
        settings = make_settings(tmp_path, demo=False, **provider_settings(zzd_mock, zlb_mock, oidc_mock, **extra))
        settings.ensure_dirs()
        shutil.copyfile(template_db, settings.data_dir / "hehe.db")
        return settings, running_hehe(settings)
    return start


def _invite(role: Role):
    async def make(session) -> str:
        from datetime import timedelta

        from backend.users.service import create_invite, find_jurisdiction
        place = await find_jurisdiction(session, "椒江区")
        return (await create_invite(session, role, place, timedelta(days=1), actor="cli")).code
    return make


def _me(c: httpx.Client) -> dict:
    r = c.get("/sso/api/accounts")
    assert r.status_code == 200, r.text
    return r.json()


def test_staff_member_signs_in_with_zzd_qr_and_is_a_citizen_until_an_invite(hehe, zzd_mock, oidc_mock):
    settings, server = hehe()
    with server as base, browser(base) as c:
        done = zzd_sign_in(c, zzd_mock, "wangfang")
        assert (done.status_code, done.headers["location"]) == (302, "/chat")
        assert c.cookies.get("hehe_session")
        me = _me(c)
        assert me["user"] == {"name": "王芳", "role": "citizen"}
        assert [(a["provider"], a["tenant"]) for a in me["accounts"]] == [("zzd", "196729")]
        # The chat knows the person by the session alone: /me answers with her name.
        csrf = {"x-csrf-token": c.cookies["hehe_csrf"]}
        assert c.post("/chat/api/send", json={"text": "/me"}, headers=csrf).status_code == 200
        said = " ".join(str(m) for m in c.get("/chat/api/messages", params={"wait": 5}).json()["messages"])
        assert "姓名：王芳" in said and "身份：群众" in said

        # The same account signing in again (another browser) is the same person, not a new one.
        with browser(base) as other:
            zzd_sign_in(other, zzd_mock, "wangfang")
            assert _me(other)["user"]["name"] == "王芳"

        async def count(session):
            return await session.scalar(select(func.count()).select_from(User).where(User.name == "王芳"))
        assert in_db(settings, count) == 1

        # Roles come from Hehe's invites only: redeemed in the browser, the account has the role.
        code = in_db(settings, _invite(Role.mediator))
        csrf = {"x-csrf-token": c.cookies["hehe_csrf"]}
        assert c.post("/sso/api/invite", json={"code": "WRONG-CODE-0000"}, headers=csrf).status_code == 400
        r = c.post("/sso/api/invite", json={"code": code}, headers=csrf)
        assert r.status_code == 200 and r.json()["user"] == {"name": "王芳", "role": "mediator"}
        assert c.post("/sso/api/invite", json={"code": code}).status_code == 403  # no CSRF token
        with browser(base) as third:
            zzd_sign_in(third, zzd_mock, "wangfang")
            # A mediator sees personal data: web-auth's rule wants the second factor first.
            r = third.get("/sso/api/accounts")
            assert (r.status_code, r.json()["error"]) == (401, "second_factor_required")

            async def role(session):
                return (await session.scalar(select(User).where(User.name == "王芳"))).role
            assert in_db(settings, role) == "mediator"


@pytest.mark.parametrize("counts", [False, True])
def test_zzd_sign_in_of_staff_is_a_second_factor_only_when_the_operator_says_so(hehe, zzd_mock, counts):
    settings, server = hehe(zzd_second_factor=counts)
    with server as base, browser(base) as c:
        zzd_sign_in(c, zzd_mock, "lijun")

        async def make_officer(session):
            from backend.users.service import set_role
            user = await session.scalar(select(User).where(User.name == "李军"))
            await set_role(session, user, Role.officer, None, actor="cli")
        in_db(settings, make_officer)
        with browser(base) as again:
            zzd_sign_in(again, zzd_mock, "lijun")
            r = again.get("/sso/api/accounts")
            if counts:
                assert r.status_code == 200 and r.json()["user"] == {"name": "李军", "role": "officer"}
            else:
                assert (r.status_code, r.json()["error"]) == (401, "second_factor_required")

        async def last_session(session):
            ws = await session.scalar(select(WebSession).order_by(WebSession.id.desc()))
            return ws.method, ws.second_factor
        assert in_db(settings, last_session) == ("zzd", counts)


def test_citizen_signs_in_with_zlb_and_only_a_keyed_hash_of_the_id_number_is_kept(hehe, zlb_mock):
    settings, server = hehe()
    with server as base, browser(base) as c:
        done = zlb_sign_in(c, zlb_mock, "chenjm")
        assert done.status_code == 302
        me = _me(c)
        assert me["user"] == {"name": "陈建明", "role": "citizen"}
        assert me["accounts"][0]["id_card_on_file"] is True
        web_me = c.get("/auth/api/me").json()  # web-auth's view of the same session
        assert (web_me["user"]["name"], web_me["user"]["channel"], web_me["method"]) == ("陈建明", "web", "zlb")
        assert "idnum" not in str(web_me) and "33100219850312241X" not in str(web_me)

    async def stored(session):
        return (await session.scalar(select(ExternalAccount).where(ExternalAccount.provider == "zlb"))).id_card_hash

    secret = (settings.data_dir / "secret.key").read_text().strip()
    key = id_hash_key(settings, secret)
    assert in_db(settings, stored) == hash_id_card(key, "33100219850312241X")
    # The same number written another way is the same person; another key gives another hash.
    assert hash_id_card(key, "331002 19850312 241x") == hash_id_card(key, "３３１００２１９８５０３１２２４１Ｘ")
    assert hash_id_card("another-key", "33100219850312241X") != hash_id_card(key, "33100219850312241X")
    # Nowhere in the database files (tables, audit log, WAL) is the raw number.
    raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("hehe.db*"))
    assert b"33100219850312241" not in raw
    assert "陈建明".encode() in raw  # the files were readable: the name is there


def test_oidc_sign_in_with_pkce_ends_in_a_session_of_the_verified_subject(hehe, oidc_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        oidc_mock.redirect_uris.add(base + "/sso/oidc/callback")
        done = oidc_sign_in(c, oidc_mock, "zhoum")
        assert done.status_code == 302
        assert _me(c)["user"] == {"name": "周敏", "role": "citizen"}


def test_signed_in_person_links_a_second_provider_to_the_same_account(hehe, zzd_mock, oidc_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        oidc_mock.redirect_uris.add(base + "/sso/oidc/callback")
        oidc_sign_in(c, oidc_mock, "xuhao")
        r = c.get("/sso/zzd/login", params={"link": 1})
        q = query(r.headers["location"])
        back = c.post(zzd_mock.base + "/oauth2/mock_scan",
                      data={"redirect_uri": q["redirect_uri"], "state": q["state"], "account": "lijun"})
        assert c.get(back.headers["location"]).status_code == 302
        me = _me(c)
        assert me["user"]["name"] == "徐浩"
        assert sorted(a["provider"] for a in me["accounts"]) == ["oidc", "zzd"]
        with browser(base) as later:  # 浙政钉 alone now reaches 徐浩's account
            zzd_sign_in(later, zzd_mock, "lijun")
            assert _me(later)["user"]["name"] == "徐浩"
        # Linking needs a signed-in person.
        with browser(base) as anon:
            page = anon.get("/sso/zzd/login", params={"link": 1})
            assert page.status_code == 400 and "请先登录" in page.text


# ---------------------------------------------------------------- failures, politely
def _error(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/html")
    assert text in r.text and "返回登录" in r.text
    assert "hehe_session" not in r.headers.get("set-cookie", "")


def test_callback_with_another_browsers_state_is_refused(hehe, zzd_mock):
    _settings, server = hehe()
    with server as base, browser(base) as victim, browser(base) as attacker:
        r = attacker.get("/sso/zzd/login")
        q = query(r.headers["location"])
        back = attacker.post(zzd_mock.base + "/oauth2/mock_scan",
                             data={"redirect_uri": q["redirect_uri"], "state": q["state"], "account": "zhaolei"})
        # The attacker's callback URL opened in the victim's browser (login CSRF) signs nobody in.
        _error(victim.get(back.headers["location"]), 400, "登录请求已失效")
        _error(victim.get("/sso/zzd/callback", params={"code": "x"}), 400, "登录请求已失效")


def test_replayed_callback_and_replayed_code_are_refused(hehe, zzd_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        q = query(c.get("/sso/zzd/login").headers["location"])
        back = c.post(zzd_mock.base + "/oauth2/mock_scan",
                      data={"redirect_uri": q["redirect_uri"], "state": q["state"], "account": "wangfang"})
        callback = back.headers["location"]
        assert c.get(callback).status_code == 302
        # The same callback again, even with the state cookie put back: the state is spent.
        c.cookies.set("hehe_sso_state", q["state"], domain="127.0.0.1", path="/sso")
        _error(c.get(callback), 400, "登录请求已失效")
        # The used code with a fresh state: 浙政钉 says the code is gone.
        fresh = query(c.get("/sso/zzd/login").headers["location"])["state"]
        _error(c.get("/sso/zzd/callback", params={"code": query(callback)["code"], "state": fresh}),
               400, "浙政钉未能确认您的身份")


@pytest.mark.parametrize("fail, status, text", [
    ("500", 502, "浙政钉暂时无法连接"), ("slow", 502, "浙政钉暂时无法连接"), ("html", 502, "浙政钉暂时无法连接")])
def test_zzd_platform_failure_ends_on_a_polite_page(hehe, zzd_mock, fail, status, text):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        zzd_mock.fail = fail
        _error(zzd_sign_in(c, zzd_mock), status, text)
        zzd_mock.fail = None  # and it works again afterwards
        assert zzd_sign_in(c, zzd_mock).status_code == 302


def test_wrong_app_secret_or_gateway_key_ends_on_a_polite_page(hehe, zzd_mock, zlb_mock):
    _settings, server = hehe(zzd_app_secret="wrong-secret", zlb_secret_key="BCDSGS_wrong")
    with server as base, browser(base) as c:
        _error(zzd_sign_in(c, zzd_mock), 502, "浙政钉暂时无法连接")
        _error(zlb_sign_in(c, zlb_mock), 502, "浙里办暂时无法连接")


def test_zlb_replayed_ticket_is_refused(hehe, zlb_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        done = zlb_sign_in(c, zlb_mock, "linxl")
        assert done.status_code == 302
        ticket = query(str(done.request.url))["ticket"]
        fresh = query(query(c.get("/sso/zlb/login").headers["location"])["redirectUrl"])["state"]
        _error(c.get("/sso/zlb/callback", params={"ticket": ticket, "state": fresh}), 400, "浙里办未能确认您的身份")


def test_oidc_provider_down_at_login_and_tampered_token_end_politely(hehe, oidc_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        oidc_mock.redirect_uris.add(base + "/sso/oidc/callback")
        oidc_mock.fail = "500"  # discovery fails: nowhere to send the browser
        _error(c.get("/sso/oidc/login"), 502, "统一身份认证暂时无法连接")
        oidc_mock.fail = None
        oidc_mock.tamper = "signature"
        _error(oidc_sign_in(c, oidc_mock), 400, "统一身份认证未能确认您的身份")


def test_unknown_provider_and_english_pages(hehe):
    _settings, server = hehe()
    with server as base, browser(base) as c, browser(base, lang="en-US,en") as en:
        _error(c.get("/sso/weixin/login"), 404, "未开通该登录方式")
        r = en.get("/sso/zzd/callback", params={"code": "x", "state": "y"})
        assert r.status_code == 400 and "Please sign in again" in r.text and "<html lang='en'>" in r.text


def test_sso_page_lists_the_configured_providers(hehe):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        page = c.get("/sso")
        assert page.status_code == 200
        for name, label in (("zzd", "浙政钉扫码登录"), ("zlb", "浙里办登录"), ("oidc", "统一身份认证")):
            assert f"href='/sso/{name}/login'" in page.text and label in page.text
        assert [p["name"] for p in c.get("/sso/api/providers").json()["providers"]] == ["zzd", "zlb", "oidc"]
        offered = {p["name"]: (p["label"], p["url"]) for p in c.get("/auth/api/config").json()["providers"]}
        assert offered == {"zzd": ("浙政钉扫码登录（工作人员）", "/sso/zzd/login"),
                           "zlb": ("浙里办登录（群众）", "/sso/zlb/login"),
                           "oidc": ("统一身份认证", "/sso/oidc/login")}
        assert c.get("/sso/api/accounts").status_code == 401  # nobody signed in


def test_zzd_in_app_sign_in_with_the_apps_auth_code(hehe, zzd_mock):
    _settings, server = hehe()
    with server as base, browser(base) as c:
        def auth_code(account="lijun"):
            return httpx.post(zzd_mock.base + "/mock/app_auth_code", data={"account": account}).json()["auth_code"]

        state = c.get("/sso/zzd/app/start").json()["state"]
        code = auth_code()
        r = c.post("/sso/zzd/app", json={"auth_code": code, "state": state})
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "李军", "role": "citizen", "provider": "zzd"}
        assert _me(c)["user"]["name"] == "李军"
        with browser(base) as other:  # the used auth_code, a fresh state: a JSON refusal
            state = other.get("/sso/zzd/app/start").json()["state"]
            r = other.post("/sso/zzd/app", json={"auth_code": code, "state": state})
            assert r.status_code == 400 and r.json()["error"] == "sso_failed"
            assert "未能确认您的身份" in r.json()["message"]
            r = other.post("/sso/zzd/app", json={"auth_code": auth_code(), "state": "made-up"})
            assert r.status_code == 400 and r.json()["error"] == "sso_failed"


def test_after_sign_in_the_browser_goes_only_to_a_path_on_this_site(hehe, zzd_mock):
    _settings, server = hehe()
    with server as base:
        for asked, landed in (("/sso/api/accounts", "/sso/api/accounts"), ("//evil.example/x", "/chat"),
                              ("https://evil.example/", "/chat"), ("/\\evil.example", "/chat")):
            with browser(base) as c:
                q = query(c.get("/sso/zzd/login", params={"next": asked}).headers["location"])
                back = c.post(zzd_mock.base + "/oauth2/mock_scan",
                              data={"redirect_uri": q["redirect_uri"], "state": q["state"], "account": "lijun"})
                assert c.get(back.headers["location"]).headers["location"] == landed


def test_deactivated_person_cannot_sign_in_through_a_provider(hehe, zzd_mock):
    settings, server = hehe()
    with server as base:
        with browser(base) as c:
            zzd_sign_in(c, zzd_mock, "wangfang")

        async def deactivate(session):
            (await session.scalar(select(User).where(User.name == "王芳"))).active = False
        in_db(settings, deactivate)
        with browser(base) as c:
            _error(zzd_sign_in(c, zzd_mock, "wangfang"), 403, "该账号已停用")


def test_zzd_staff_member_sets_up_the_second_factor_then_each_zzd_sign_in_asks_for_a_totp(hehe, zzd_mock):
    import pyotp

    from backend.core.clock import now

    settings, server = hehe()
    with server as base, browser(base) as c:
        zzd_sign_in(c, zzd_mock, "lijun")
        csrf = {"x-csrf-token": c.cookies["hehe_csrf"]}
        c.post("/sso/api/invite", json={"code": in_db(settings, _invite(Role.officer))}, headers=csrf)
        assert c.get("/auth/api/me").json()["second_factor_setup"] is True  # web-auth's rule now applies
        r = c.post("/auth/api/setup", json={"login": "lijun01", "password": "Jiaojiang-2026-lj"}, headers=csrf)
        assert r.status_code == 200, r.text
        totp = pyotp.TOTP(r.json()["totp_secret"])
        step = totp.timecode(now())
        assert c.post("/auth/api/totp", json={"code": totp.generate_otp(step)}, headers=csrf).status_code == 200
        assert _me(c)["user"] == {"name": "李军", "role": "officer"}

        with browser(base) as later:  # the next day: 浙政钉 first, then the authenticator's code
            zzd_sign_in(later, zzd_mock, "lijun")
            assert later.get("/sso/api/accounts").json()["error"] == "second_factor_required"
            csrf = {"x-csrf-token": later.cookies["hehe_csrf"]}
            valid = {totp.generate_otp(step + d) for d in (-1, 0, 1, 2)}
            wrong = next(code for code in ("000000", "111111", "222222") if code not in valid)
            assert later.post("/auth/api/totp", json={"code": wrong}, headers=csrf).status_code == 400
            ok = later.post("/auth/api/totp", json={"code": totp.generate_otp(step + 1)}, headers=csrf)
            assert ok.status_code == 200, ok.text
            assert _me(later)["user"] == {"name": "李军", "role": "officer"}
