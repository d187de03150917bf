"""SMS providers for sign-in codes. ``console`` writes the code to the server log (demo mode or
a server bound to loopback only); ``aliyun`` sends through Alibaba Cloud SMS (dysmsapi
``SendSms``, signed with the AccessKey secret, HMAC-SHA1 signature version 1.0). No provider
configured: citizen sign-in by phone is off (the API answers 503), never a silent fallback."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

import httpx

from backend.core.config import Settings
from backend.core.masking import mask_phone

log = logging.getLogger("hehe.sms")


class SmsError(Exception):
    """The provider did not accept the message."""


class SmsConfigError(Exception):
    """The configured provider cannot be used here."""


class SmsProvider(Protocol):
    name: str

    async def send_code(self, phone: str, code: str) -> None: ...


class ConsoleSms:
    name = "console"

    async def send_code(self, phone: str, code: str) -> None:
        log.warning("SMS sign-in code for %s: %s (console provider: nothing was sent)", mask_phone(phone), code)


def _enc(s: str) -> str:
    """Aliyun's percent-encoding (RFC 3986: space → %20, * → %2A, ~ kept)."""
    return quote(s, safe="~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_enc('/')}&{_enc(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class AliyunSms:
    name = "aliyun"

    def __init__(self, settings: Settings):
        self.key_id = settings.sms_aliyun_access_key_id
        self.secret = settings.sms_aliyun_access_key_secret
        self.sign_name = settings.sms_aliyun_sign_name
        self.template = settings.sms_aliyun_template_code
        self.endpoint = settings.sms_aliyun_endpoint.rstrip("/") + "/"
        missing = [n for n, v in (("ACCESS_KEY_ID", self.key_id), ("ACCESS_KEY_SECRET", self.secret),
                                  ("SIGN_NAME", self.sign_name), ("TEMPLATE_CODE", self.template)) if not v]
        if missing:
            raise SmsConfigError("HEHE_SMS_ALIYUN_" + ", HEHE_SMS_ALIYUN_".join(missing) + " not set")

    def params(self, phone: str, code: str) -> dict[str, str]:
        p = {
            "AccessKeyId": self.key_id, "Action": "SendSms", "Format": "JSON", "PhoneNumbers": phone,
            "RegionId": "cn-hangzhou", "SignName": self.sign_name, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16), "SignatureVersion": "1.0", "TemplateCode": self.template,
            "TemplateParam": json.dumps({"code": code}), "Version": "2017-05-25",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        p["Signature"] = aliyun_signature(p, self.secret)
        return p

    async def send_code(self, phone: str, code: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(self.endpoint, params=self.params(phone, code))
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise SmsError(f"aliyun: {e}") from e
        if r.status_code != 200 or body.get("Code") != "OK":
            raise SmsError(f"aliyun: {r.status_code} {body.get('Code')} {body.get('Message')}")
        log.info("SMS code sent to %s (aliyun %s)", mask_phone(phone), body.get("BizId"))


def loopback(host: str) -> bool:
    if host in ("localhost", "::1", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_for(settings: Settings) -> SmsProvider | None:
    """The configured provider, None when there is none; SmsConfigError when the configuration
    is not allowed (``console`` on a public address outside demo mode) or incomplete."""
    name = (settings.sms_provider or "").strip().lower()
    if not name:
        return None
    if name == "console":
        if not (settings.demo or loopback(settings.host)):
            raise SmsConfigError("HEHE_SMS_PROVIDER=console is allowed only in demo mode or on a loopback address")
        return ConsoleSms()
    if name == "aliyun":
        return AliyunSms(settings)
    raise SmsConfigError(f"unknown HEHE_SMS_PROVIDER {name!r} (console | aliyun)")
