"""A stand-in for the 浙政钉 (专有钉钉) open platform and its login host.

Checks what the real platform checks: the app key, the HMAC signature over
METHOD\\nTIMESTAMP\\nNONCE\\nURI[\\nsorted params], a timestamp within 15 minutes, a nonce
never seen before, the app access token, a code that is single use, unexpired and issued to
this app, and a redirect_uri on the app's registered callback host. Payloads follow the
platform's documentation (``success``/``content``/``responseCode``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tests.sso.mocks import Misbehaviour, page

ACCOUNTS = {
    "wangfang": {"accountId": 100135, "lastName": "王芳", "nickNameCn": "王芳", "clientId": "mozi-buc-sso",
                 "realmId": 196729, "realmName": "台州市椒江区人民政府", "tenantId": 196729,
                 "tenantName": "台州市椒江区人民政府", "namespace": "local", "tenantUserId": "196729$100135",
                 "account": "wangf.jj", "employeeCode": "GE_4f1c2b9a0d7e4c21a6b8"},
    "lijun": {"accountId": 100872, "lastName": "李军", "nickNameCn": "李军", "clientId": "mozi-buc-sso",
              "realmId": 196729, "realmName": "台州市椒江区人民政府", "tenantId": 196729,
              "tenantName": "台州市椒江区人民政府", "namespace": "local", "tenantUserId": "196729$100872",
              "account": "lij.jj", "employeeCode": "GE_9a7b3c5d1e2f40718293"},
    # An account of another government (another tenant) — a deployment may refuse it.
    "zhaolei": {"accountId": 200411, "lastName": "赵磊", "nickNameCn": "赵磊", "clientId": "mozi-buc-sso",
                "realmId": 50012, "realmName": "温州市鹿城区人民政府", "tenantId": 50012,
                "tenantName": "温州市鹿城区人民政府", "namespace": "local", "tenantUserId": "50012$200411",
                "account": "zhaol.lc", "employeeCode": "GE_1b2c3d4e5f6a7b8c9d0e"},
}
SKEW_SECONDS = 15 * 60


class ZzdMock(Misbehaviour):
    def __init__(self, app_key: str = "hehe-zzd-ak", app_secret: str = "hehe-zzd-sk-0123456789abcdef",
                 client_id: str = "hehe_taizhou", callback_host: str = "127.0.0.1"):
        super().__init__()
        self.app_key, self.app_secret, self.client_id = app_key, app_secret, client_id
        self.callback_host = callback_host
        self.code_ttl = 300.0
        self.codes: dict[str, tuple[str, float]] = {}  # code -> (account, expiry)
        self.app_codes: dict[str, tuple[str, float]] = {}
        self.tokens: dict[str, float] = {}
        self.nonces: set[str] = set()
        self.token_requests = 0
        self.app = self._build()

    # ------------------------------------------------------------------ helpers for tests
    def scan(self, account: str) -> str:
        """What a staff member's phone does: scan and confirm; returns the one-time code."""
        code = secrets.token_hex(20)
        self.codes[code] = (account, time.monotonic() + self.code_ttl)
        return code

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # ------------------------------------------------------------------ the checks
    def _gateway_error(self, request: Request, params: dict[str, str]) -> JSONResponse | None:
        h = request.headers
        needed = ("X-Hmac-Auth-Timestamp", "X-Hmac-Auth-Nonce", "X-Hmac-Auth-Signature", "apiKey",
                  "X-Hmac-Auth-Version")
        if any(not h.get(n) for n in needed):
            return _gw("OPF-B001-05-16-0001", "MissingSignatureHeaders")
        if h["apiKey"] != self.app_key:
            return _gw("OPF-B001-05-16-0003", "InvalidApiKey")
        try:
            ts = datetime.strptime(h["X-Hmac-Auth-Timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return _gw("OPF-B001-05-16-0005", "InvalidTimestamp")
        if abs((datetime.now(UTC) - ts).total_seconds()) > SKEW_SECONDS:
            return _gw("OPF-B001-05-16-0006", "RequestTimeTooSkewed")
        nonce = h["X-Hmac-Auth-Nonce"]
        if nonce in self.nonces:
            return _gw("OPF-B001-05-16-0007", "NonceUsed")
        parts = [request.method, h["X-Hmac-Auth-Timestamp"], nonce, request.url.path]
        if params:
            parts.append("&".join(f"{k}={v}" for k, v in sorted(params.items())))
        expected = base64.b64encode(hmac.new(self.app_secret.encode(), "\n".join(parts).encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, h["X-Hmac-Auth-Signature"]):
            return _gw("OPF-B001-05-16-0009", "SignatureDoesNotMatch")
        self.nonces.add(nonce)
        return None

    def _token_ok(self, token: str | None) -> bool:
        return bool(token) and self.tokens.get(token, 0) > time.monotonic()

    def _user(self, codes: dict, code: str | None):
        entry = codes.pop(code or "", None)  # single use: gone whether or not it was still valid
        if entry is None or entry[1] < time.monotonic():
            return _biz("240111", "code失效或不存在")
        return _ok(dict(ACCOUNTS[entry[0]]))

    # ------------------------------------------------------------------ the app
    def _build(self) -> FastAPI:
        app = FastAPI()
        mock = self

        @app.get("/oauth2/auth.htm")
        async def auth(request: Request):
            q = request.query_params
            redirect = q.get("redirect_uri", "")
            if q.get("response_type") != "code" or q.get("scope") != "get_user_info":
                return page("参数错误", "<p>response_type / scope 不正确</p>", 400)
            if q.get("client_id") != mock.client_id:
                return page("应用不存在", "<p>client_id 无效</p>", 400)
            if urlsplit(redirect).hostname != mock.callback_host:
                return page("无权限访问", "<p>回调域名与应用配置不一致</p>", 403)
            options = "".join(f"<option value='{k}'>{escape(v['lastName'])}（{escape(v['realmName'])}）</option>"
                              for k, v in ACCOUNTS.items())
            return page("浙政钉扫码登录", f"""
<div id='qrcode' style='width:200px;height:200px;border:1px solid #999'>[二维码]</div>
<p>请使用浙政钉 App 扫码登录</p>
<form method='post' action='/oauth2/mock_scan'>
  <input type='hidden' name='redirect_uri' value='{escape(redirect, quote=True)}'>
  <input type='hidden' name='state' value='{escape(q.get("state", ""), quote=True)}'>
  <select name='account' id='account'>{options}</select>
  <button type='submit' id='confirm'>模拟扫码并确认登录</button>
</form>""")

        @app.post("/oauth2/mock_scan")
        async def mock_scan(redirect_uri: str = Form(...), account: str = Form(...), state: str = Form("")):
            if account not in ACCOUNTS or urlsplit(redirect_uri).hostname != mock.callback_host:
                return page("无权限访问", "", 403)
            code = mock.scan(account)
            sep = "&" if urlsplit(redirect_uri).query else "?"
            return RedirectResponse(redirect_uri + sep + urlencode({"code": code, "state": state}), 302)

        @app.post("/mock/app_auth_code")
        async def app_auth_code(account: str = Form(...)):
            """What ``dd.getAuthCode`` gives an H5 page inside the 浙政钉 app."""
            code = secrets.token_hex(16)
            mock.app_codes[code] = (account, time.monotonic() + mock.code_ttl)
            return {"auth_code": code}

        @app.get("/gettoken.json")
        async def gettoken(request: Request):
            params = dict(request.query_params)
            mock.calls.append(("/gettoken.json", params))
            if (bad := await mock.misbehave(request)) is not None:
                return bad
            if (err := mock._gateway_error(request, params)) is not None:
                return err
            if params.get("appkey") != mock.app_key or params.get("appsecret") != mock.app_secret:
                return _biz("240004", "appkey或appsecret错误")
            mock.token_requests += 1
            token = "app_" + secrets.token_hex(16)
            mock.tokens[token] = time.monotonic() + 7200
            return _ok({"accessToken": token, "expiresIn": "7200"})

        async def rpc(request: Request, codes: dict, code_field: str):
            params = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            mock.calls.append((request.url.path, params))
            if (bad := await mock.misbehave(request)) is not None:
                return bad
            if (err := mock._gateway_error(request, params)) is not None:
                return err
            if not mock._token_ok(params.get("access_token")):
                return _biz("240133", "应用accessToken失效或不存在")
            return mock._user(codes, params.get(code_field))

        @app.post("/rpc/oauth2/getuserinfo_bycode.json")
        async def by_code(request: Request):
            return await rpc(request, mock.codes, "code")

        @app.post("/rpc/oauth2/dingtalk_app_user.json")
        async def app_user(request: Request):
            return await rpc(request, mock.app_codes, "auth_code")

        return app


def _request_id() -> str:
    return secrets.token_hex(15)


def _ok(data: dict) -> dict:
    return {"success": True, "content": {"success": True, "data": data, "requestId": _request_id(),
                                         "responseMessage": "OK", "responseCode": "0"}}


def _biz(code: str, message: str) -> dict:
    return {"success": True, "content": {"success": False, "requestId": _request_id(),
                                         "responseMessage": message, "responseCode": code}}


def _gw(code: str, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "errorCode": code, "errorMsg": message, "errorLevel": "error"})
