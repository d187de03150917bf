"""A stand-in for 浙里办's single sign-on: its login page and the two ``simpleauth`` services
behind the provincial IRS gateway.

The gateway checks ``X-BG-HMAC-ACCESS-KEY``/``-ALGORITHM``/``-SIGNATURE`` and
``X-BG-DATE-TIME`` (RFC 1123, within 15 minutes); the service checks
``sign = md5(servicecode + password + time)`` and that a ticket (ST) is single use,
unexpired and issued to this servicecode. Answers use ``result``/``errmsg`` as documented.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from html import escape
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tests.sso.mocks import Misbehaviour, page

TICKET_PATH = "/restapi/prod/IC33000020220228000002/sso/servlet/simpleauth"
USERINFO_PATH = "/restapi/prod/IC33000020220228000004/sso/servlet/simpleauth"
CHINA = timezone(timedelta(hours=8))

CITIZENS = {
    "chenjm": {"userid": "8a11893e7c2f4b0d017c3a5e9f2b0041", "loginname": "chenjm85", "username": "陈建明",
               "sex": "1", "idtype": "1", "idnum": "33100219850312241X", "mobile": "13857601234",
               "authlevel": "3", "email": "", "nation": "01", "useable": "1", "headpicture": ""},
    "linxl": {"userid": "8a11893e7c2f4b0d017c3a5e9f2b0987", "loginname": "linxl", "username": "林小丽",
              "sex": "2", "idtype": "1", "idnum": "331002199207150026", "mobile": "13957602468",
              "authlevel": "2", "email": "", "nation": "01", "useable": "1", "headpicture": ""},
}


class ZlbMock(Misbehaviour):
    def __init__(self, access_key: str = "BCDSGA_hehe0123456789", secret_key: str = "BCDSGS_hehe9876543210",
                 service_code: str = "hehetz", service_password: str = "hehetzpwd",
                 callback_host: str = "127.0.0.1"):
        super().__init__()
        self.access_key, self.secret_key = access_key, secret_key
        self.service_code, self.service_password = service_code, service_password
        self.callback_host = callback_host
        self.ticket_ttl = 300.0
        self.tickets: dict[str, tuple[str, str, float]] = {}  # ST -> (citizen, servicecode, expiry)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.app = self._build()

    def sign_in(self, citizen: str, service_code: str | None = None) -> str:
        """A citizen signs in on the 浙里办 page; returns the ticket it hands back."""
        st = "ST-" + secrets.token_hex(16) + "-ticket"
        self.tickets[st] = (citizen, service_code or self.service_code, time.monotonic() + self.ticket_ttl)
        return st

    def _gateway_error(self, request: Request) -> JSONResponse | None:
        h = request.headers
        if h.get("X-BG-HMAC-ACCESS-KEY") != self.access_key:
            return JSONResponse({"code": "401", "msg": "AccessKey不存在"}, 401)
        if h.get("X-BG-HMAC-ALGORITHM") != "hmac-sha256":
            return JSONResponse({"code": "401", "msg": "签名算法不支持"}, 401)
        date = h.get("X-BG-DATE-TIME", "")
        try:
            when = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return JSONResponse({"code": "401", "msg": "时间格式错误"}, 401)
        if when is None or abs((datetime.now(UTC) - when).total_seconds()) > 900:
            return JSONResponse({"code": "401", "msg": "请求已过期"}, 401)
        query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.items()))
        message = f"{request.method}\n{request.url.path}\n{query}\n{self.access_key}\n{date}\n"
        expected = base64.b64encode(hmac.new(self.secret_key.encode(), message.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, h.get("X-BG-HMAC-SIGNATURE", "")):
            return JSONResponse({"code": "401", "msg": "签名校验失败"}, 401)
        return None

    def _service_error(self, form: dict[str, str]) -> dict | None:
        if form.get("servicecode") != self.service_code:
            return {"result": "6099", "errmsg": "接入码不存在"}
        when = form.get("time", "")
        try:
            t = datetime.strptime(when, "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
        except ValueError:
            return {"result": "6099", "errmsg": "时间格式错误"}
        if abs((datetime.now(CHINA) - t).total_seconds()) > 600:
            return {"result": "6099", "errmsg": "请求已过期"}
        expected = hashlib.md5(f"{self.service_code}{self.service_password}{when}".encode()).hexdigest()
        if not hmac.compare_digest(expected, form.get("sign", "").lower()):
            return {"result": "6099", "errmsg": "签名错误"}
        if form.get("datatype") != "json":
            return {"result": "6099", "errmsg": "datatype错误"}
        return None

    def _build(self) -> FastAPI:
        app = FastAPI()
        mock = self

        @app.get("/sso/mobile.do")
        async def login_page(request: Request):
            q = request.query_params
            back = q.get("redirectUrl", "")
            if q.get("action") != "oauth" or q.get("servicecode") != mock.service_code:
                return page("参数错误", "<p>servicecode 无效</p>", 400)
            if urlsplit(back).hostname != mock.callback_host:
                return page("回调地址不合法", "", 403)
            options = "".join(f"<option value='{k}'>{escape(v['username'])}</option>" for k, v in CITIZENS.items())
            return page("浙里办 统一身份认证", f"""
<form method='post' action='/sso/mock_login'>
  <input type='hidden' name='redirectUrl' value='{escape(back, quote=True)}'>
  <select name='citizen' id='citizen'>{options}</select>
  <button type='submit' id='login'>登录</button>
</form>""")

        @app.post("/sso/mock_login")
        async def mock_login(redirectUrl: str = Form(...), citizen: str = Form(...)):
            st = mock.sign_in(citizen)
            sep = "&" if urlsplit(redirectUrl).query else "?"
            return RedirectResponse(redirectUrl + sep + urlencode({"ticket": st}), 302)

        async def service(request: Request, method: str):
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            mock.calls.append((request.url.path, form))
            if (bad := await mock.misbehave(request)) is not None:
                return bad
            if (err := mock._gateway_error(request)) is not None:
                return err
            if (err := mock._service_error(form)) is not None:
                return err
            if form.get("method") != method:
                return {"result": "6099", "errmsg": "method错误"}
            return None, form

        @app.post(TICKET_PATH)
        async def ticket_validation(request: Request):
            out = await service(request, "ticketValidation")
            if not isinstance(out, tuple):
                return out
            st = out[1].get("st", "")
            if not st.startswith("ST-"):
                return {"result": "6004", "errmsg": "st格式不对"}
            entry = mock.tickets.pop(st, None)
            if entry is None or entry[2] < time.monotonic():
                return {"result": "6001", "errmsg": "st已经超时失效"}
            if entry[1] != mock.service_code:
                return {"result": "6003", "errmsg": "st不属于该接入资源"}
            token = secrets.token_hex(16)
            mock.tokens[token] = (entry[0], time.monotonic() + 7200)
            return {"result": 0, "errmsg": "成功", "token": token}

        @app.post(USERINFO_PATH)
        async def user_info(request: Request):
            out = await service(request, "getUserInfo")
            if not isinstance(out, tuple):
                return out
            entry = mock.tokens.get(out[1].get("token", ""))
            if entry is None or entry[1] < time.monotonic():
                return {"result": "6099", "errmsg": "token无效"}
            return {"result": 0, "errmsg": "成功", **CITIZENS[entry[0]]}

        return app
