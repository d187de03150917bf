"""Each provider's offline mock as a running server, and settings that point Hehe at it."""
from __future__ import annotations

import pytest

from tests.sso.mocks import serve
from tests.sso.mocks.oidc import OidcMock
from tests.sso.mocks.zlb import ZlbMock
from tests.sso.mocks.zzd import ZzdMock


def _served(mock):
    with serve(mock.app) as base:
        mock.base = base
        yield mock


@pytest.fixture
def zzd_mock():
    yield from _served(ZzdMock())


@pytest.fixture
def zlb_mock():
    yield from _served(ZlbMock())


@pytest.fixture
def oidc_mock():
    mock = OidcMock()
    for served in _served(mock):
        mock.issuer = served.base  # the discovery document names the served address
        yield served


def provider_settings(zzd: ZzdMock | None = None, zlb: ZlbMock | None = None, oidc: OidcMock | None = None,
                      **extra) -> dict:
    """HEHE_* settings (as keyword arguments) that configure each given mock's provider."""
    kw: dict = {"sso_http_timeout": 1.5}
    if zzd is not None:
        kw.update(zzd_app_key=zzd.app_key, zzd_app_secret=zzd.app_secret, zzd_client_id=zzd.client_id,
                  zzd_api_base=zzd.base, zzd_login_base=zzd.base)
    if zlb is not None:
        kw.update(zlb_access_key=zlb.access_key, zlb_secret_key=zlb.secret_key,
                  zlb_service_code=zlb.service_code, zlb_service_password=zlb.service_password,
                  zlb_gateway_base=zlb.base, zlb_login_base=zlb.base)
    if oidc is not None:
        kw.update(oidc_issuer=oidc.issuer, oidc_client_id=oidc.client_id, oidc_client_secret=oidc.client_secret)
    kw.update(extra)
    return kw
