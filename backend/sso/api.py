"""Routes of the government sign-in: a page with the configured providers, the redirect to
each provider, the callback that signs the person in, and 浙政钉's in-app sign-in.

Browser navigations (login, callback) answer failures with a short Chinese page (English
when the browser asks for it); JSON routes answer with the usual JSON errors. A failure never
leaves a half-made account: the login attempt is spent first (and committed, so no database
lock is held while the provider is asked), everything after it is one transaction.
"""
from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from backend.auth.guards import PUBLIC
from backend.auth.sessions import WebUser, cookie_user, start_session
from backend.core.deps import SessionDep
from backend.core.errors import DomainError, NotFound
from backend.core.i18n import gettext
from backend.sso import service
from backend.sso.providers import Provider, build

router = APIRouter(prefix="/sso", tags=["government sign-in"])
STATE_COOKIE = "hehe_sso_state"


def install(app, settings) -> None:
    """Build the configured providers once, and tell the sign-in page about them:
    ``app.state.sign_in_providers`` (name → label and URL) is what ``/auth/api/config`` lists."""
    app.state.sso_providers = build(settings)
    app.state.sign_in_providers = {
        p.name: {"label": settings.oidc_label if p.name == "oidc" else gettext("zh", p.label_key),
                 "url": f"/sso/{p.name}/login", "staff": p.staff}
        for p in app.state.sso_providers.values()}


def providers(request: Request) -> dict[str, Provider]:
    if getattr(request.app.state, "sso_providers", None) is None:
        install(request.app, request.app.state.ctx.settings)
    return request.app.state.sso_providers


def _provider(request: Request, name: str) -> Provider:
    p = providers(request).get(name)
    if p is None:
        raise NotFound("sso.err_unknown_provider")
    return p


def _lang(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"


def _label(request: Request, p: Provider) -> str:
    settings = request.app.state.ctx.settings
    if p.name == "oidc" and _lang(request) == "zh":
        return settings.oidc_label
    return gettext(_lang(request), p.label_key)


def _redirect_uri(request: Request, name: str) -> str:
    base = request.app.state.ctx.settings.sso_public_url
    if base:
        return f"{base.rstrip('/')}/sso/{name}/callback"
    return str(request.url_for("sso_callback", provider=name))


def _page(request: Request, title_key: str, body: str, status: int = 200) -> HTMLResponse:
    lang = _lang(request)
    title = escape(gettext(lang, title_key))
    return HTMLResponse(
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{title}</title></head>"
        f"<body><main><h1>{title}</h1>{body}</main></body></html>", status_code=status)


def _error_page(request: Request, err: DomainError) -> HTMLResponse:
    lang = _lang(request)
    params = dict(err.params)
    for name in ("zzd", "zlb", "oidc"):  # the provider's name in the page's language
        if params.get("provider") == gettext("zh", f"sso.name_{name}"):
            params["provider"] = gettext(lang, f"sso.name_{name}")
    message = escape(gettext(lang, err.key, **params))
    back = escape(gettext(lang, "sso.back_to_sign_in"))
    return _page(request, "sso.error_title",
                 f"<p id='sso-error' data-error='{escape(err.code)}'>{message}</p><p><a href='/sso'>{back}</a></p>",
                 err.status)


def _state_cookie(response: Response, request: Request, state: str) -> None:
    response.set_cookie(STATE_COOKIE, state, max_age=int(service.STATE_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/sso")


@router.get("", include_in_schema=False, name="sso_page", dependencies=[PUBLIC])
async def sso_page(request: Request):
    """The government sign-in buttons (one link per configured provider)."""
    items = "".join(f"<li><a id='sso-{p.name}' href='/sso/{p.name}/login'>{escape(_label(request, p))}</a></li>"
                    for p in providers(request).values())
    if not items:
        items = f"<li>{escape(gettext(_lang(request), 'sso.none_configured'))}</li>"
    return _page(request, "sso.page_title", f"<ul>{items}</ul>")


@router.get("/api/providers", dependencies=[PUBLIC])
async def provider_list(request: Request):
    """The configured providers, for a login page to show as buttons."""
    return {"providers": [{"name": p.name, "label": _label(request, p), "staff": p.staff,
                           "login_url": f"/sso/{p.name}/login"} for p in providers(request).values()]}


@router.get("/{provider}/login", include_in_schema=False, dependencies=[PUBLIC])
async def login(provider: str, request: Request, session: SessionDep, next: str | None = None,
                link: bool = False):
    """Send the browser to the provider. ``link=1`` (signed in): link the provider account
    to the signed-in person instead of signing in as whoever comes back."""
    try:
        p = _provider(request, provider)
        link_user = await cookie_user(request, session) if link else None
        if link and link_user is None:
            raise service.SsoFailed("sso.err_link_needs_sign_in")
        state, url = await service.begin(session, p, _redirect_uri(request, p.name), link_user=link_user,
                                         next_path=next)
    except DomainError as e:
        await session.rollback()
        return _error_page(request, e)
    await session.commit()  # stored before the browser can come back (see _finish)
    response = RedirectResponse(url, status_code=302)
    _state_cookie(response, request, state)
    return response


@router.get("/{provider}/callback", include_in_schema=False, name="sso_callback", dependencies=[PUBLIC])
async def callback(provider: str, request: Request, session: SessionDep):
    """Where the provider sends the browser back (``code``/``ticket`` and our ``state``)."""
    params = {k: v for k, v in request.query_params.items()}
    try:
        p = _provider(request, provider)
        row = await service.claim(session, p.name, params.get("state"), request.cookies.get(STATE_COOKIE))
        await session.commit()  # spent before the provider is asked; no lock held meanwhile
        identity = await service.identify(p, params, row)
        response = RedirectResponse(row.next_path, status_code=302)
        await _finish(request, session, identity, row.link_user_id, response)
        return response
    except DomainError as e:
        await session.rollback()
        response = _error_page(request, e)
        response.delete_cookie(STATE_COOKIE, path="/sso")
        return response


async def _finish(request: Request, session, identity, link_user_id: int | None, response: Response):
    """Sign the identity's user in on ``response`` (session cookie); returns the user."""
    ctx = request.app.state.ctx
    link_user = None
    if link_user_id is not None:
        link_user = await cookie_user(request, session)
        if link_user is None or link_user.id != link_user_id:  # signed out or someone else meanwhile
            raise service.SsoFailed("sso.err_state")
    user = await service.sign_in(session, ctx.settings, identity, link_user=link_user,
                                 id_key=service.id_hash_key(ctx.settings, ctx.secret))
    await start_session(session, request, response, user, method=identity.provider,
                        second_factor=service.counts_as_second_factor(ctx.settings, identity))
    response.delete_cookie(STATE_COOKIE, path="/sso")
    # Committed before the answer leaves: the request-scoped session dependency commits only
    # after the response is sent, and the browser's next request would race it.
    await session.commit()
    return user


@router.get("/zzd/app/start", dependencies=[PUBLIC])
async def zzd_app_start(request: Request, session: SessionDep, response: Response):
    """Inside the 浙政钉 app: the page asks for a state first, then gets an ``auth_code`` from
    the app's JSAPI (``dd.getAuthCode``) and posts both to ``POST /sso/zzd/app``."""
    p = _provider(request, "zzd")
    state, _ = await service.begin(session, p, _redirect_uri(request, p.name))
    await session.commit()
    _state_cookie(response, request, state)
    return {"state": state}


@router.post("/zzd/app", dependencies=[PUBLIC])
async def zzd_app(request: Request, session: SessionDep, response: Response,
                  auth_code: Annotated[str, Body(max_length=256)], state: Annotated[str, Body(max_length=128)]):
    """Sign in with the 浙政钉 app's one-time ``auth_code`` (JSON answer, session cookie set)."""
    p = _provider(request, "zzd")
    await service.claim(session, p.name, state, request.cookies.get(STATE_COOKIE))
    await session.commit()
    identity = await service.ask(p, p.complete_in_app(auth_code))
    user = await _finish(request, session, identity, None, response)
    return {"name": user.name, "role": user.role, "provider": identity.provider}


@router.post("/api/invite")
async def redeem_invite(user: WebUser, session: SessionDep, code: Annotated[str, Body(embed=True, max_length=64)]):
    """Redeem a staff invite onto the account signed in through a provider. A role that sees
    personal data then needs the second factor (``/auth/api/setup``) — unless a 浙政钉
    sign-in counts as one here (docs/sso.md)."""
    role = await service.redeem_invite(session, user, code)
    return {"user": {"name": user.name, "role": role}}


@router.get("/api/accounts")
async def my_accounts(user: WebUser, session: SessionDep):
    """The signed-in person and the provider accounts linked to them (never an ID number)."""
    return {"user": {"name": user.name, "role": user.role},
            "accounts": [{"provider": a.provider, "tenant": a.tenant, "linked_at": a.created_at.isoformat(),
                          "last_login_at": a.last_login_at.isoformat() if a.last_login_at else None,
                          "id_card_on_file": a.id_card_hash is not None}
                         for a in await service.accounts_of(session, user)]}
