"""Each adapter's protocol against its offline mock (no Hehe accounts involved): what is
signed, what comes back, and how each kind of failure is classified."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from backend.core.config import Settings
from backend.sso.providers import (
    LoginAttempt,
    ProviderRejected,
    ProviderUnavailable,
    build,
)
from tests.sso.conftest import provider_settings


def _providers(tmp_path, **kw):
    return build(Settings(data_dir=tmp_path, _env_file=None, **provider_settings(**kw)))


def _attempt(callback="http://127.0.0.1:9/sso/x/callback"):
    return LoginAttempt(state="st-" + "a" * 20, redirect_uri=callback, nonce="n" * 22, code_verifier="v" * 48)


# ---------------------------------------------------------------- 浙政钉
async def test_zzd_qr_login_url_goes_to_the_login_host_with_client_id_scope_and_state(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    url = await zzd.login_url(_attempt())
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert url.startswith(zzd_mock.base + "/oauth2/auth.htm?")
    assert q == {"response_type": "code", "client_id": zzd_mock.client_id, "scope": "get_user_info",
                 "authType": "QRCODE", "state": "st-" + "a" * 20, "redirect_uri": "http://127.0.0.1:9/sso/x/callback"}
    async with httpx.AsyncClient() as c:  # the mock's login page accepts it
        assert (await c.get(url)).status_code == 200


def test_zzd_hosts_follow_the_network_setting(tmp_path):
    common = {"data_dir": tmp_path, "_env_file": None, "zzd_app_key": "k", "zzd_app_secret": "s"}
    internet = build(Settings(**common))["zzd"]
    extranet = build(Settings(**common, sso_network="extranet"))["zzd"]
    assert (internet.api, internet.login) == ("https://openplatform.dg-work.cn", "https://login.dg-work.cn")
    assert (extranet.api, extranet.login) == ("https://openplatform-pro.ding.zj.gov.cn",
                                              "https://login-pro.ding.zj.gov.cn")


async def test_zzd_scanned_code_gives_account_employee_code_and_tenant(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    who = await zzd.complete({"code": zzd_mock.scan("wangfang"), "state": "x"}, _attempt())
    assert (who.provider, who.subject, who.name, who.tenant, who.staff) == ("zzd", "100135", "王芳", "196729", True)
    assert who.extra["employeeCode"] == "GE_4f1c2b9a0d7e4c21a6b8"
    paths = [p for p, _ in zzd_mock.calls]
    assert paths == ["/gettoken.json", "/rpc/oauth2/getuserinfo_bycode.json"]


async def test_zzd_in_app_auth_code_is_exchanged_at_dingtalk_app_user(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    async with httpx.AsyncClient() as c:
        auth_code = (await c.post(zzd_mock.base + "/mock/app_auth_code", data={"account": "lijun"})).json()["auth_code"]
    who = await zzd.complete_in_app(auth_code)
    assert (who.subject, who.name) == ("100872", "李军")
    assert zzd_mock.calls[-1][0] == "/rpc/oauth2/dingtalk_app_user.json"


async def test_zzd_code_works_only_once(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    code = zzd_mock.scan("wangfang")
    await zzd.complete({"code": code}, _attempt())
    with pytest.raises(ProviderRejected, match="240111"):
        await zzd.complete({"code": code}, _attempt())


async def test_zzd_app_token_is_reused_and_fetched_again_once_when_the_platform_drops_it(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    await zzd.complete({"code": zzd_mock.scan("wangfang")}, _attempt())
    await zzd.complete({"code": zzd_mock.scan("lijun")}, _attempt())
    assert zzd_mock.token_requests == 1
    zzd_mock.revoke_tokens()
    who = await zzd.complete({"code": zzd_mock.scan("lijun")}, _attempt())
    assert who.name == "李军" and zzd_mock.token_requests == 2


async def test_zzd_call_signed_with_a_wrong_secret_is_refused_by_the_platform(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock, zzd_app_secret="not-the-secret")["zzd"]
    with pytest.raises(ProviderUnavailable, match="SignatureDoesNotMatch"):
        await zzd.complete({"code": zzd_mock.scan("wangfang")}, _attempt())


async def test_zzd_replayed_signed_request_is_refused_for_its_nonce(tmp_path, zzd_mock):
    from backend.sso.providers.zzd import signed_headers

    params = {"appkey": zzd_mock.app_key, "appsecret": zzd_mock.app_secret}
    headers = signed_headers(zzd_mock.app_key, zzd_mock.app_secret, "GET", "/gettoken.json", params)
    async with httpx.AsyncClient() as c:
        first = (await c.get(zzd_mock.base + "/gettoken.json", params=params, headers=headers)).json()
        again = (await c.get(zzd_mock.base + "/gettoken.json", params=params, headers=headers)).json()
    assert first["success"] and first["content"]["data"]["accessToken"].startswith("app_")
    assert (again["success"], again["errorMsg"]) == (False, "NonceUsed")


async def test_zzd_account_of_another_tenant_is_refused_when_a_tenant_is_configured(tmp_path, zzd_mock):
    zzd = _providers(tmp_path, zzd=zzd_mock, zzd_tenant_id="196729")["zzd"]
    assert (await zzd.complete({"code": zzd_mock.scan("wangfang")}, _attempt())).tenant == "196729"
    with pytest.raises(ProviderRejected, match="tenant"):
        await zzd.complete({"code": zzd_mock.scan("zhaolei")}, _attempt())


@pytest.mark.parametrize("fail", ["500", "html", "slow"])
async def test_zzd_platform_failure_is_unavailable_not_a_crash(tmp_path, zzd_mock, fail):
    zzd = _providers(tmp_path, zzd=zzd_mock)["zzd"]
    zzd_mock.fail = fail
    with pytest.raises(ProviderUnavailable):
        await zzd.complete({"code": zzd_mock.scan("wangfang")}, _attempt())


# ---------------------------------------------------------------- 浙里办
async def test_zlb_login_url_carries_our_state_inside_the_redirect_url(tmp_path, zlb_mock):
    zlb = _providers(tmp_path, zlb=zlb_mock)["zlb"]
    url = await zlb.login_url(_attempt())
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert (q["action"], q["scope"], q["servicecode"]) == ("oauth", "1", zlb_mock.service_code)
    assert q["redirectUrl"] == "http://127.0.0.1:9/sso/x/callback?state=st-" + "a" * 20


async def test_zlb_ticket_becomes_token_then_the_citizen_with_id_number_and_phone(tmp_path, zlb_mock):
    zlb = _providers(tmp_path, zlb=zlb_mock)["zlb"]
    who = await zlb.complete({"ticket": zlb_mock.sign_in("chenjm")}, _attempt())
    assert (who.provider, who.subject, who.name, who.staff) == ("zlb", "8a11893e7c2f4b0d017c3a5e9f2b0041", "陈建明", False)
    assert (who.id_card, who.phone) == ("33100219850312241X", "13857601234")
    methods = [form["method"] for _, form in zlb_mock.calls]
    assert methods == ["ticketValidation", "getUserInfo"]


async def test_zlb_ticket_works_only_once(tmp_path, zlb_mock):
    zlb = _providers(tmp_path, zlb=zlb_mock)["zlb"]
    st = zlb_mock.sign_in("linxl")
    await zlb.complete({"ticket": st}, _attempt())
    with pytest.raises(ProviderRejected, match="6001"):
        await zlb.complete({"ticket": st}, _attempt())


async def test_zlb_ticket_of_another_service_is_refused(tmp_path, zlb_mock):
    zlb = _providers(tmp_path, zlb=zlb_mock)["zlb"]
    with pytest.raises(ProviderRejected, match="6003"):
        await zlb.complete({"ticket": zlb_mock.sign_in("linxl", service_code="othersvc")}, _attempt())


@pytest.mark.parametrize("wrong", [{"zlb_secret_key": "BCDSGS_wrong"}, {"zlb_service_password": "wrongpwd"}])
async def test_zlb_wrong_gateway_or_service_signature_is_refused(tmp_path, zlb_mock, wrong):
    zlb = _providers(tmp_path, zlb=zlb_mock, **wrong)["zlb"]
    with pytest.raises(ProviderUnavailable):
        await zlb.complete({"ticket": zlb_mock.sign_in("chenjm")}, _attempt())
    assert zlb_mock.tokens == {}  # nothing was handed out


@pytest.mark.parametrize("fail", ["500", "slow"])
async def test_zlb_gateway_failure_is_unavailable(tmp_path, zlb_mock, fail):
    zlb = _providers(tmp_path, zlb=zlb_mock)["zlb"]
    zlb_mock.fail = fail
    with pytest.raises(ProviderUnavailable):
        await zlb.complete({"ticket": zlb_mock.sign_in("chenjm")}, _attempt())


# ---------------------------------------------------------------- OpenID Connect
async def _oidc_code(mock, url: str, person: str = "zhoum") -> dict[str, str]:
    """Follow the authorization URL as the browser would and return the callback's query."""
    async with httpx.AsyncClient() as c:
        r = await c.get(url)
        assert r.status_code == 200, r.text
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        r = await c.post(mock.base + "/authorize/confirm", data={
            "redirect_uri": q["redirect_uri"], "state": q["state"], "nonce": q["nonce"],
            "code_challenge": q["code_challenge"], "person": person})
    return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}


async def test_oidc_code_with_pkce_gives_the_verified_subject(tmp_path, oidc_mock):
    oidc = _providers(tmp_path, oidc=oidc_mock)["oidc"]
    attempt = _attempt("http://127.0.0.1:9/sso/oidc/callback")
    oidc_mock.redirect_uris.add(attempt.redirect_uri)
    back = await _oidc_code(oidc_mock, await oidc.login_url(attempt))
    assert back["state"] == attempt.state
    who = await oidc.complete(back, attempt)
    assert (who.provider, who.subject, who.name, who.phone) == ("oidc", "248289761001", "周敏", "13705761357")


async def test_oidc_code_is_refused_with_a_wrong_verifier_and_when_replayed(tmp_path, oidc_mock):
    oidc = _providers(tmp_path, oidc=oidc_mock)["oidc"]
    attempt = _attempt("http://127.0.0.1:9/sso/oidc/callback")
    oidc_mock.redirect_uris.add(attempt.redirect_uri)
    back = await _oidc_code(oidc_mock, await oidc.login_url(attempt))
    stolen = LoginAttempt(state=attempt.state, redirect_uri=attempt.redirect_uri, nonce=attempt.nonce,
                          code_verifier="x" * 48)
    with pytest.raises(ProviderRejected, match="invalid_grant"):
        await oidc.complete(back, stolen)
    with pytest.raises(ProviderRejected, match="invalid_grant"):  # the mock burnt the code
        await oidc.complete(back, attempt)


@pytest.mark.parametrize("tamper", ["signature", "nonce", "audience", "expired", "issuer", "hs256"])
async def test_oidc_id_token_that_is_not_exactly_right_is_refused(tmp_path, oidc_mock, tamper):
    oidc = _providers(tmp_path, oidc=oidc_mock)["oidc"]
    attempt = _attempt("http://127.0.0.1:9/sso/oidc/callback")
    oidc_mock.redirect_uris.add(attempt.redirect_uri)
    back = await _oidc_code(oidc_mock, await oidc.login_url(attempt))
    oidc_mock.tamper = tamper
    with pytest.raises(ProviderRejected):
        await oidc.complete(back, attempt)


async def test_oidc_rotated_signing_key_is_picked_up_from_the_jwks(tmp_path, oidc_mock):
    oidc = _providers(tmp_path, oidc=oidc_mock)["oidc"]
    attempt = _attempt("http://127.0.0.1:9/sso/oidc/callback")
    oidc_mock.redirect_uris.add(attempt.redirect_uri)
    await oidc.complete(await _oidc_code(oidc_mock, await oidc.login_url(attempt)), attempt)
    oidc_mock.rotate_key()
    who = await oidc.complete(await _oidc_code(oidc_mock, await oidc.login_url(attempt), "xuhao"), attempt)
    assert who.name == "徐浩"


async def test_oidc_discovery_naming_another_issuer_is_refused(tmp_path, oidc_mock):
    oidc_mock.issuer = "https://idp.example"  # what the discovery document will claim
    oidc = build(Settings(data_dir=tmp_path, _env_file=None, oidc_issuer=oidc_mock.base,
                          oidc_client_id=oidc_mock.client_id))["oidc"]
    with pytest.raises(ProviderUnavailable, match="issuer"):
        await oidc.login_url(_attempt())


@pytest.mark.parametrize("settings, message", [
    ({"zzd_app_key": "k"}, "HEHE_ZZD_APP_SECRET"),
    ({"zlb_access_key": "a", "zlb_secret_key": "s", "zlb_service_code": "c"}, "HEHE_ZLB_SERVICE_PASSWORD"),
    ({"oidc_client_id": "hehe"}, "HEHE_OIDC_ISSUER"),
    ({"sso_network": "intranet"}, "HEHE_SSO_NETWORK"),
])
def test_half_configured_provider_stops_the_server_from_starting(tmp_path, settings, message):
    from backend.app import create_app
    from backend.sso.providers import SsoMisconfigured

    with pytest.raises(SsoMisconfigured, match=message):
        create_app(Settings(data_dir=tmp_path, _env_file=None, **settings))


def test_nothing_configured_means_no_government_sign_in(tmp_path):
    assert build(Settings(data_dir=tmp_path, _env_file=None)) == {}
