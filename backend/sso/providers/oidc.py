"""Generic OpenID Connect (authorization code + PKCE) with authlib.

Discovery from ``{issuer}/.well-known/openid-configuration`` (its ``issuer`` must be the
configured one); the authorization request carries ``state``, ``nonce`` and an S256 code
challenge; the code is exchanged by authlib's httpx client with the verifier; the id_token's
signature is verified against the provider's JWKS (fetched again once when a key id is
unknown — key rotation) with joserfc, authlib's JOSE library, and its ``iss``, ``aud``,
``exp`` and ``nonce`` checked. Symmetric algorithms are refused: the client secret must not
be able to mint identities.
"""
from __future__ import annotations

import time

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from backend.core.config import Settings
from backend.sso.providers import (
    ExternalIdentity,
    LoginAttempt,
    ProviderRejected,
    ProviderUnavailable,
    call_json,
    log,
)

ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
METADATA_TTL = 3600


class OidcProvider:
    name = "oidc"
    label_key = "sso.oidc_button"

    def __init__(self, settings: Settings):
        self.issuer = (settings.oidc_issuer or "").rstrip("/")
        self.client_id = settings.oidc_client_id or ""
        self.client_secret = settings.oidc_client_secret
        self.scope = settings.oidc_scopes
        self.staff = settings.oidc_staff
        self.timeout = settings.sso_http_timeout
        self._meta: tuple[dict, float] | None = None
        self._jwks: KeySet | None = None

    async def metadata(self) -> dict:
        if self._meta and self._meta[1] > time.monotonic():
            return self._meta[0]
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            meta = await call_json(client, "GET", self.issuer + "/.well-known/openid-configuration")
        if meta.get("issuer", "").rstrip("/") != self.issuer:
            raise ProviderUnavailable(f"discovery names issuer {meta.get('issuer')!r}, expected {self.issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str):
                raise ProviderUnavailable(f"discovery without {key}")
        self._meta = (meta, time.monotonic() + METADATA_TTL)
        return meta

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self.client_secret,
                                 scope=self.scope, redirect_uri=redirect_uri,
                                 code_challenge_method="S256", timeout=self.timeout)

    async def login_url(self, attempt: LoginAttempt) -> str:
        meta = await self.metadata()
        async with self._client(attempt.redirect_uri) as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=attempt.state,
                                                     nonce=attempt.nonce, code_verifier=attempt.code_verifier)
        return url

    async def complete(self, params: dict[str, str], attempt: LoginAttempt) -> ExternalIdentity:
        if params.get("error"):
            raise ProviderRejected(f"authorization error {params.get('error')}")
        code = params.get("code", "")
        if not code:
            raise ProviderRejected("callback without code")
        meta = await self.metadata()
        try:
            async with self._client(attempt.redirect_uri) as client:
                token = await client.fetch_token(meta["token_endpoint"], code=code,
                                                 code_verifier=attempt.code_verifier)
        except OAuthError as e:  # invalid_grant: a used, expired or foreign code
            raise ProviderRejected(f"token endpoint: {e.error}") from e
        except httpx.TimeoutException as e:
            raise ProviderUnavailable("token endpoint timed out") from e
        except (httpx.HTTPError, ValueError) as e:
            raise ProviderUnavailable(f"token endpoint: {type(e).__name__}") from e
        id_token = token.get("id_token")
        if not id_token:
            raise ProviderUnavailable("token response without id_token")
        claims = await self.verify_id_token(id_token, attempt.nonce)
        log.info("OIDC sign-in of %s", claims["sub"])
        return ExternalIdentity(provider=self.name, subject=str(claims["sub"]),
                                name=str(claims.get("name") or claims.get("preferred_username") or ""),
                                phone=claims.get("phone_number") if claims.get("phone_number_verified") else None,
                                staff=self.staff)

    async def _keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            meta = await self.metadata()
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                body = await call_json(client, "GET", meta["jwks_uri"])
            try:
                self._jwks = KeySet.import_key_set(body)
            except (JoseError, ValueError, TypeError, KeyError) as e:
                raise ProviderUnavailable(f"unusable JWKS: {e}") from e
        return self._jwks

    async def verify_id_token(self, id_token: str, nonce: str | None) -> dict:
        meta = await self.metadata()
        allowed = [a for a in meta.get("id_token_signing_alg_values_supported", ["RS256"]) if a in ASYMMETRIC]
        for refresh in (False, True):
            keys = await self._keys(refresh=refresh)
            try:
                decoded = jwt.decode(id_token, keys, algorithms=allowed or ["RS256"])
                break
            except InvalidKeyIdError as e:  # no key with this kid: the provider may have rotated its keys
                if refresh:
                    raise ProviderRejected(f"id_token key not in JWKS: {e}") from e
            except JoseError as e:
                raise ProviderRejected(f"id_token signature: {e}") from e
        registry = jwt.JWTClaimsRegistry(
            leeway=60, iss={"essential": True, "value": meta["issuer"]},
            aud={"essential": True, "value": self.client_id}, sub={"essential": True},
            exp={"essential": True}, nonce={"essential": True, "value": nonce})
        try:
            registry.validate(decoded.claims)
        except JoseError as e:
            raise ProviderRejected(f"id_token claims: {e}") from e
        return decoded.claims
