"""浙里办 (Zhejiang government services) single sign-on for citizens: the ticket flow.

1. The browser goes to the 浙里办 login page ``{login}/sso/mobile.do?action=oauth&scope=1``
   with our ``servicecode`` (接入码) and a ``redirectUrl``. 浙里办 carries no state of its
   own, so our state travels inside redirectUrl's query.
2. After sign-in 浙里办 redirects to redirectUrl with ``ticket`` (an ST, single use, short-lived).
3. The server validates the ticket (``method=ticketValidation``) and gets a token, then asks
   for the person (``method=getUserInfo``) — both through the provincial IRS gateway
   (公共数据平台), which wants its own HMAC headers.

Two signatures, as the platform documents them:
- the service's: ``sign = md5(servicecode + service password + time)``, time ``yyyyMMddHHmmss``
  (China time), sent in the form with ``servicecode``, ``time``, ``datatype=json``;
- the gateway's: ``X-BG-HMAC-SIGNATURE = base64(HmacSHA256(SK, "POST\\n" + path + "\\n" +
  canonical query + "\\n" + AK + "\\n" + date + "\\n"))`` with ``X-BG-DATE-TIME`` an RFC 1123
  GMT date, ``X-BG-HMAC-ACCESS-KEY`` the AK and ``X-BG-HMAC-ALGORITHM: hmac-sha256``.

Answers carry ``result`` (0 = success; 6001 ticket expired, 6002 not a ticket, 6003 ticket
of another service, 6004 malformed, 6099 other) and ``errmsg``. The user info has the
stable ``userid``, the name, ``idtype``/``idnum`` (1 = 居民身份证) and ``mobile``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode, urlsplit

import httpx

from backend.core.config import Settings
from backend.sso.providers import (
    ExternalIdentity,
    LoginAttempt,
    ProviderRejected,
    ProviderUnavailable,
    call_json,
    host,
    log,
)
from backend.sso.providers.zzd import CHINA

TICKET_PATH = "/restapi/prod/IC33000020220228000002/sso/servlet/simpleauth"
USERINFO_PATH = "/restapi/prod/IC33000020220228000004/sso/servlet/simpleauth"
TICKET_ERRORS = {"6001", "6002", "6003", "6004"}  # the person's ticket, not our setup


def gateway_signature(secret_key: str, method: str, path: str, query: str, access_key: str,
                      date: str) -> str:
    message = f"{method.upper()}\n{path}\n{query}\n{access_key}\n{date}\n"
    return base64.b64encode(hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()).decode()


def gateway_headers(access_key: str, secret_key: str, path: str, now: datetime | None = None) -> dict[str, str]:
    date = format_datetime((now or datetime.now(UTC)).astimezone(UTC), usegmt=True)
    return {
        "X-BG-HMAC-ACCESS-KEY": access_key,
        "X-BG-HMAC-ALGORITHM": "hmac-sha256",
        "X-BG-DATE-TIME": date,
        "X-BG-HMAC-SIGNATURE": gateway_signature(secret_key, "POST", path, "", access_key, date),
    }


def service_sign(service_code: str, password: str, when: str) -> str:
    return hashlib.md5(f"{service_code}{password}{when}".encode()).hexdigest()


class ZlbProvider:
    name = "zlb"
    staff = False
    label_key = "sso.zlb_button"

    def __init__(self, settings: Settings):
        self.access_key = settings.zlb_access_key or ""
        self.secret_key = settings.zlb_secret_key or ""
        self.service_code = settings.zlb_service_code or ""
        self.service_password = settings.zlb_service_password or ""
        self.gateway = host(settings, "zlb_gateway", settings.zlb_gateway_base)
        self.login = host(settings, "zlb_login", settings.zlb_login_base)
        self.timeout = settings.sso_http_timeout

    async def login_url(self, attempt: LoginAttempt) -> str:
        back = attempt.redirect_uri + ("&" if urlsplit(attempt.redirect_uri).query else "?") \
            + urlencode({"state": attempt.state})
        q = {"action": "oauth", "scope": "1", "servicecode": self.service_code, "redirectUrl": back}
        return f"{self.login}/sso/mobile.do?{urlencode(q)}"

    async def complete(self, params: dict[str, str], attempt: LoginAttempt) -> ExternalIdentity:
        ticket = params.get("ticket", "")
        if not ticket:
            raise ProviderRejected("callback without ticket")
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            validated = await self._call(client, TICKET_PATH, {"method": "ticketValidation", "st": ticket})
            token = validated.get("token")
            if not token:
                raise ProviderUnavailable("ticketValidation without token")
            info = await self._call(client, USERINFO_PATH, {"method": "getUserInfo", "token": str(token)})
        userid = info.get("userid")
        if not userid:
            raise ProviderUnavailable("getUserInfo without userid")
        id_card = info.get("idnum") if str(info.get("idtype", "")) == "1" else None
        log.info("浙里办 sign-in of user %s (auth level %s)", userid, info.get("authlevel"))
        return ExternalIdentity(
            provider=self.name, subject=str(userid), name=str(info.get("username") or ""),
            phone=str(info["mobile"]) if info.get("mobile") else None,
            id_card=str(id_card) if id_card else None, staff=False,
            extra={"authlevel": str(info.get("authlevel", ""))})

    async def _call(self, client: httpx.AsyncClient, path: str, params: dict[str, str]) -> dict:
        when = datetime.now(CHINA).strftime("%Y%m%d%H%M%S")
        form = {**params, "servicecode": self.service_code, "time": when,
                "sign": service_sign(self.service_code, self.service_password, when), "datatype": "json"}
        body = await call_json(client, "POST", self.gateway + path, data=form,
                               headers=gateway_headers(self.access_key, self.secret_key, path))
        if "_http_status" in body:  # the gateway refused the call (signature, AK, clock)
            raise ProviderUnavailable(f"gateway {body['_http_status']}: {body.get('msg') or body.get('errorMsg')}")
        result = str(body.get("result", ""))
        if result == "0":
            return body
        if result in TICKET_ERRORS:
            raise ProviderRejected(f"{params['method']}: {result} {body.get('errmsg')}")
        raise ProviderUnavailable(f"{params['method']}: {result} {body.get('errmsg')}")
