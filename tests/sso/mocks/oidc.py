"""A small OpenID Connect provider for the tests: discovery, JWKS, an authorization page,
a token endpoint that checks client authentication, the code (single use, this client,
this redirect_uri) and the PKCE verifier, and RS256 id_tokens.

``tamper`` makes the next id_tokens wrong in one way ("signature", "nonce", "audience",
"expired", "issuer", "hs256") so the tests can see the client refuse each.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from html import escape
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from tests.sso.mocks import Misbehaviour, page

PEOPLE = {
    "zhoum": {"sub": "248289761001", "name": "周敏", "preferred_username": "zhoum", "phone_number": "13705761357",
              "phone_number_verified": True},
    "xuhao": {"sub": "248289761002", "name": "徐浩", "preferred_username": "xuhao"},
}


class OidcMock(Misbehaviour):
    def __init__(self, client_id: str = "hehe-web", client_secret: str = "hehe-oidc-secret-5b1f"):
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.issuer = ""  # set once the server has a port
        self.redirect_uris: set[str] = set()
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"}, private=True)
        self.codes: dict[str, dict] = {}
        self.tamper: str | None = None
        self.app = self._build()

    def rotate_key(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig"}, private=True)

    def _id_token(self, person: dict, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "sub": person["sub"], "iat": now,
                  "exp": now + 600, "nonce": nonce, "auth_time": now,
                  **{k: v for k, v in person.items() if k != "sub"}}
        header = {"alg": "RS256", "kid": self.key.kid}
        key = self.key
        match self.tamper:
            case "signature":  # same key id, another key: what a forger without the key makes
                key = RSAKey.generate_key(2048, parameters={"kid": self.key.kid}, private=True)
            case "nonce":
                claims["nonce"] = secrets.token_urlsafe(16)
            case "audience":
                claims["aud"] = "someone-else"
            case "expired":
                claims["iat"], claims["exp"] = now - 7200, now - 3600
            case "issuer":
                claims["iss"] = "https://evil.example"
            case "hs256":  # signed with the client secret, as a confused client would accept
                header = {"alg": "HS256", "kid": self.key.kid}
                key = OctKey.import_key(self.client_secret.ljust(32, "x"))
        return jwt.encode(header, claims, key, algorithms=["RS256", "HS256"])

    def _build(self) -> FastAPI:
        app = FastAPI()
        mock = self

        @app.get("/.well-known/openid-configuration")
        async def discovery(request: Request):
            if (bad := await mock.misbehave(request)) is not None:
                return bad
            return {"issuer": mock.issuer, "authorization_endpoint": mock.issuer + "/authorize",
                    "token_endpoint": mock.issuer + "/token", "jwks_uri": mock.issuer + "/jwks",
                    "userinfo_endpoint": mock.issuer + "/userinfo", "response_types_supported": ["code"],
                    "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}

        @app.get("/jwks")
        async def jwks():
            return KeySet([mock.key]).as_dict(private=False)

        @app.get("/authorize")
        async def authorize(request: Request):
            q = request.query_params
            problems = []
            if q.get("client_id") != mock.client_id:
                problems.append("unknown client_id")
            if q.get("redirect_uri") not in mock.redirect_uris:
                problems.append("redirect_uri not registered")
            if q.get("response_type") != "code":
                problems.append("response_type must be code")
            if "openid" not in q.get("scope", "").split():
                problems.append("scope must include openid")
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                problems.append("PKCE S256 required")
            if not q.get("state") or not q.get("nonce"):
                problems.append("state and nonce required")
            if problems:
                return page("invalid_request", "<p>" + escape("; ".join(problems)) + "</p>", 400)
            hidden = "".join(f"<input type='hidden' name='{k}' value='{escape(q.get(k, ''), quote=True)}'>"
                             for k in ("redirect_uri", "state", "nonce", "code_challenge"))
            options = "".join(f"<option value='{k}'>{escape(v['name'])}</option>" for k, v in PEOPLE.items())
            return page("统一身份认证", f"<form method='post' action='/authorize/confirm'>{hidden}"
                                    f"<select name='person'>{options}</select>"
                                    f"<button type='submit' id='allow'>同意并登录</button></form>")

        @app.post("/authorize/confirm")
        async def confirm(redirect_uri: str = Form(...), state: str = Form(...), nonce: str = Form(...),
                          code_challenge: str = Form(...), person: str = Form(...)):
            if redirect_uri not in mock.redirect_uris or person not in PEOPLE:
                return page("invalid_request", "", 400)
            code = secrets.token_urlsafe(24)
            mock.codes[code] = {"person": person, "nonce": nonce, "challenge": code_challenge,
                                "redirect_uri": redirect_uri, "expires": time.monotonic() + 120}
            return RedirectResponse(redirect_uri + "?" + urlencode({"code": code, "state": state}), 302)

        @app.post("/token")
        async def token(request: Request):
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            mock.calls.append(("/token", form))
            if (bad := await mock.misbehave(request)) is not None:
                return bad
            cid, secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            if cid != mock.client_id or secret != mock.client_secret:
                return JSONResponse({"error": "invalid_client"}, 401)
            if form.get("grant_type") != "authorization_code":
                return JSONResponse({"error": "unsupported_grant_type"}, 400)
            entry = mock.codes.pop(form.get("code", ""), None)
            if entry is None or entry["expires"] < time.monotonic() or entry["redirect_uri"] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, 400)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not verifier or challenge != entry["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
            return {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 3600,
                    "id_token": mock._id_token(PEOPLE[entry["person"]], entry["nonce"])}

        return app
