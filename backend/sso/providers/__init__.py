"""The shape every sign-in provider has, and the registry built from the settings.

A provider builds the URL that sends the browser to the provider's login page and turns
what comes back to the callback into an :class:`ExternalIdentity`. It holds no database
state: the login attempt (state, nonce, PKCE verifier) is kept by the service.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from backend.core.config import Settings

log = logging.getLogger("hehe.sso")

# Default hosts per network. The extranet hosts resolve only inside 政务外网 (the
# government extranet); a deployment inside it sets HEHE_SSO_NETWORK=extranet.
HOSTS = {
    "internet": {
        "zzd_api": "https://openplatform.dg-work.cn",
        "zzd_login": "https://login.dg-work.cn",
        "zlb_gateway": "https://ibcdsg.zj.gov.cn:8443",
        "zlb_login": "https://puser.zjzwfw.gov.cn",
    },
    "extranet": {
        "zzd_api": "https://openplatform-pro.ding.zj.gov.cn",
        "zzd_login": "https://login-pro.ding.zj.gov.cn",
        "zlb_gateway": "https://bcdsg.zj.gov.cn:8443",
        "zlb_login": "https://puser.zjzwfw.gov.cn",
    },
}


def host(settings: Settings, name: str, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    return HOSTS[settings.sso_network][name]


class SsoMisconfigured(ValueError):
    """A provider configured half-way: the server refuses to start rather than silently
    leaving a sign-in out."""


# Each provider's settings: all of ``needed`` or none of them.
REQUIRED = {
    "zzd": ("zzd_app_key", "zzd_app_secret"),
    "zlb": ("zlb_access_key", "zlb_secret_key", "zlb_service_code", "zlb_service_password"),
    "oidc": ("oidc_issuer", "oidc_client_id"),
}


def configured(settings: Settings) -> list[str]:
    """The providers this deployment turned on; SsoMisconfigured for a half-made one."""
    if settings.sso_network not in HOSTS:
        raise SsoMisconfigured(f"HEHE_SSO_NETWORK must be one of {sorted(HOSTS)}, not {settings.sso_network!r}")
    out = []
    for name, needed in REQUIRED.items():
        given = [k for k in needed if getattr(settings, k)]
        if given and len(given) < len(needed):
            missing = ", ".join(f"HEHE_{k.upper()}" for k in needed if k not in given)
            raise SsoMisconfigured(f"{name} sign-in is half configured: set {missing} too")
        if given:
            out.append(name)
    return out


@dataclass
class ExternalIdentity:
    """A person as a provider vouches for them. ``subject`` is the provider's stable id;
    ``id_card`` is the raw number if the provider gave one — it never leaves memory
    unhashed (service.hash_id_card)."""

    provider: str
    subject: str
    name: str = ""
    phone: str | None = None
    id_card: str | None = None
    tenant: str | None = None
    staff: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class LoginAttempt:
    """What the service remembers between the redirect and the callback."""

    state: str
    redirect_uri: str
    nonce: str | None = None
    code_verifier: str | None = None


class ProviderRejected(Exception):
    """The provider said no: unknown, expired or replayed code/ticket, wrong signature,
    an account outside the allowed tenant. ``reason`` is for the log, never for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ProviderUnavailable(Exception):
    """The provider could not be asked: timeout, connection refused, a 5xx, a body that is
    not what the protocol promises."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    name: str
    staff: bool
    label_key: str

    async def login_url(self, attempt: LoginAttempt) -> str: ...

    async def complete(self, params: dict[str, str], attempt: LoginAttempt) -> ExternalIdentity: ...


async def call_json(client: httpx.AsyncClient, method: str, url: str, **kw) -> dict:
    """One provider call: the JSON body, or ProviderUnavailable for anything that is not
    a JSON object (timeouts, 5xx, HTML error pages from a gateway)."""
    try:
        r = await client.request(method, url, **kw)
    except httpx.TimeoutException as e:
        raise ProviderUnavailable(f"timeout calling {url}") from e
    except httpx.HTTPError as e:
        raise ProviderUnavailable(f"{type(e).__name__} calling {url}") from e
    if r.status_code >= 500:
        raise ProviderUnavailable(f"{url} answered {r.status_code}")
    try:
        body = r.json()
    except ValueError as e:
        raise ProviderUnavailable(f"{url} answered {r.status_code} without JSON") from e
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{url} answered a JSON {type(body).__name__}")
    if r.status_code >= 400:
        body.setdefault("_http_status", r.status_code)
    return body


def build(settings: Settings) -> dict[str, Provider]:
    """The providers this deployment configured, by name (``zzd``, ``zlb``, ``oidc``)."""
    from backend.sso.providers.oidc import OidcProvider
    from backend.sso.providers.zlb import ZlbProvider
    from backend.sso.providers.zzd import ZzdProvider

    classes = {"zzd": ZzdProvider, "zlb": ZlbProvider, "oidc": OidcProvider}
    return {name: classes[name](settings) for name in configured(settings)}
