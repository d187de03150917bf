"""浙政钉 (Zhejiang government DingTalk, 专有钉钉 open platform) for staff.

Two ways in, both ending in the same user record:
- QR login on a computer: the browser goes to ``{login}/oauth2/auth.htm`` (scope
  get_user_info, authType QRCODE); the person scans with the 浙政钉 app and confirms; the
  login host redirects back with ``code`` and our ``state``; the server exchanges the code at
  ``/rpc/oauth2/getuserinfo_bycode.json``.
- Inside the 浙政钉 app (an H5 micro-app): the page gets a one-time ``auth_code`` from the
  app's JSAPI and the server exchanges it at ``/rpc/oauth2/dingtalk_app_user.json``.

Every open-platform call carries an app access token (``/gettoken.json``, valid 7200 s,
cached) and the platform's HMAC headers: ``X-Hmac-Auth-Signature`` is
base64(HmacSHA256(app_secret, METHOD\\nTIMESTAMP\\nNONCE\\nURI[\\nPARAMS])) where PARAMS are
the request parameters sorted by name, ``k=v`` joined by ``&`` (values as sent, not
percent-encoded), and the line is left out when there are none — the rule of the
platform's SDKs. Timestamp: ISO 8601 with milliseconds in +08:00; nonce: epoch
milliseconds + 4 random digits.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

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

CHINA = timezone(timedelta(hours=8))
TOKEN_API = "/gettoken.json"
USER_BY_CODE_API = "/rpc/oauth2/getuserinfo_bycode.json"
APP_USER_API = "/rpc/oauth2/dingtalk_app_user.json"
# responseCode values of the open platform: the code is unknown/used/expired; the app
# access token is no longer valid (fetch a new one and try once more).
CODE_INVALID = "240111"
TOKEN_INVALID = "240133"


def canonical_params(params: dict[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def signature(secret: str, method: str, timestamp: str, nonce: str, uri: str,
              params: dict[str, str]) -> str:
    lines = [method.upper(), timestamp, nonce, uri]
    if params:
        lines.append(canonical_params(params))
    mac = hmac.new(secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def signed_headers(app_key: str, secret: str, method: str, uri: str, params: dict[str, str],
                   now: datetime | None = None) -> dict[str, str]:
    now = (now or datetime.now(UTC)).astimezone(CHINA)
    timestamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+08:00"
    nonce = f"{int(now.timestamp() * 1000)}{secrets.randbelow(10_000):04d}"
    return {
        "X-Hmac-Auth-Timestamp": timestamp,
        "X-Hmac-Auth-Version": "1.0",
        "X-Hmac-Auth-Nonce": nonce,
        "apiKey": app_key,
        "X-Hmac-Auth-Signature": signature(secret, method, timestamp, nonce, uri, params),
        # The platform asks for the caller's address; it is informational, not checked.
        "X-Hmac-Auth-IP": "127.0.0.1",
        "X-Hmac-Auth-MAC": "",
    }


class ZzdProvider:
    name = "zzd"
    staff = True
    label_key = "sso.zzd_button"

    def __init__(self, settings: Settings):
        self.app_key = settings.zzd_app_key or ""
        self.app_secret = settings.zzd_app_secret or ""
        self.client_id = settings.zzd_client_id or self.app_key
        self.api = host(settings, "zzd_api", settings.zzd_api_base)
        self.login = host(settings, "zzd_login", settings.zzd_login_base)
        self.tenant = settings.zzd_tenant_id
        self.timeout = settings.sso_http_timeout
        self._token: tuple[str, float] | None = None  # (token, monotonic expiry)
        self._lock = asyncio.Lock()

    async def login_url(self, attempt: LoginAttempt) -> str:
        q = {"response_type": "code", "client_id": self.client_id, "redirect_uri": attempt.redirect_uri,
             "scope": "get_user_info", "authType": "QRCODE", "state": attempt.state}
        return f"{self.login}/oauth2/auth.htm?{urlencode(q)}"

    async def complete(self, params: dict[str, str], attempt: LoginAttempt) -> ExternalIdentity:
        code = params.get("code", "")
        if not code:
            raise ProviderRejected("callback without code")
        return self._identity(await self._rpc(USER_BY_CODE_API, {"code": code}))

    async def complete_in_app(self, auth_code: str) -> ExternalIdentity:
        if not auth_code:
            raise ProviderRejected("no auth_code")
        return self._identity(await self._rpc(APP_USER_API, {"auth_code": auth_code}))

    # ------------------------------------------------------------ open-platform calls
    async def _call(self, client: httpx.AsyncClient, method: str, uri: str, params: dict[str, str]) -> dict:
        headers = signed_headers(self.app_key, self.app_secret, method, uri, params)
        if method == "GET":
            body = await call_json(client, "GET", self.api + uri, params=params, headers=headers)
        else:
            body = await call_json(client, "POST", self.api + uri, data=params, headers=headers)
        if not body.get("success"):
            # The gateway itself refused (e.g. OPF-B001-05-16-0009 SignatureDoesNotMatch: a
            # wrong app secret or clock) — a configuration problem, not the person's.
            raise ProviderUnavailable(f"{uri}: gateway error {body.get('errorCode')} {body.get('errorMsg')}")
        content = body.get("content")
        if not isinstance(content, dict):
            raise ProviderUnavailable(f"{uri}: no content")
        return content

    async def _access_token(self, client: httpx.AsyncClient, fresh: bool = False) -> str:
        async with self._lock:
            if not fresh and self._token and self._token[1] > time.monotonic():
                return self._token[0]
            content = await self._call(client, "GET", TOKEN_API,
                                       {"appkey": self.app_key, "appsecret": self.app_secret})
            data = content.get("data") or {}
            token = data.get("accessToken") if content.get("success") else None
            if not token:
                raise ProviderUnavailable(f"gettoken: {content.get('responseCode')} {content.get('responseMessage')}")
            try:
                ttl = int(data.get("expiresIn", 7200))
            except (TypeError, ValueError):
                ttl = 7200
            self._token = (token, time.monotonic() + max(ttl - 300, 60))  # renew 5 minutes early
            return token

    async def _rpc(self, uri: str, params: dict[str, str]) -> dict:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in (0, 1):
                token = await self._access_token(client, fresh=attempt > 0)
                content = await self._call(client, "POST", uri, {"access_token": token, **params})
                if content.get("success") and isinstance(content.get("data"), dict):
                    return content["data"]
                code = str(content.get("responseCode"))
                if code == TOKEN_INVALID and attempt == 0:
                    continue
                if code == CODE_INVALID:
                    raise ProviderRejected(f"{uri}: code invalid or used ({code})")
                raise ProviderUnavailable(f"{uri}: {code} {content.get('responseMessage')}")
        raise ProviderUnavailable(f"{uri}: access token refused twice")

    def _identity(self, data: dict) -> ExternalIdentity:
        account_id = data.get("accountId")
        if account_id in (None, ""):
            raise ProviderUnavailable("user info without accountId")
        tenant = data.get("tenantId", data.get("realmId"))
        tenant = None if tenant in (None, "") else str(tenant)
        if self.tenant and tenant != str(self.tenant):
            raise ProviderRejected(f"account of tenant {tenant}, only {self.tenant} is accepted")
        log.info("浙政钉 sign-in of account %s (tenant %s)", account_id, tenant)
        return ExternalIdentity(
            provider=self.name, subject=str(account_id),
            name=str(data.get("lastName") or data.get("nickNameCn") or ""),
            tenant=tenant, staff=True,
            extra={k: str(data[k]) for k in ("accountId", "employeeCode", "tenantId", "tenantName")
                   if data.get(k) not in (None, "")})
