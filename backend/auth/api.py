"""Sign-in on the web (docs/security.md): phone + code for citizens, invite → password + TOTP for
staff, sessions (list, end, logout), step-up, Telegram linking, and the demo switcher (HEHE_DEMO
only). Failed tries are counted in their own committed transaction before the answer."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from backend.auth import linking, staff
from backend.auth import phone as phone_codes
from backend.auth.accounts import account_of, new_web_user
from backend.auth.guards import DEMO_ONLY, PUBLIC
from backend.auth.models import WebSession
from backend.auth.sessions import (
    CurrentWebSession,
    SetupUser,
    WebUser,
    client_address,
    end_cookies,
    end_session,
    my_sessions,
    needs_second_factor,
    start_session,
)
from backend.auth.sms import SmsError
from backend.core.clock import now
from backend.core.db import session_scope
from backend.core.deps import SessionDep
from backend.core.errors import DomainError, NotFound
from backend.core.masking import normalize_phone
from backend.users import service as users
from backend.users.models import Role, User

router = APIRouter(prefix="/auth/api", tags=["web sign-in"])
DEMO_CHANNELS = ("web", "local")  # demo mode: web people and the seeded demo people (hehe demo)


class Refused(DomainError):
    code = "refused"

    def __init__(self, key: str, status: int = 400, **params):
        super().__init__(key, **params)
        self.status = status
        self.code = "too_many_requests" if status == 429 else "refused"


class PhoneIn(BaseModel):
    phone: str = Field(..., max_length=32)


class PhoneCode(PhoneIn):
    code: str = Field(..., max_length=16)
    name: str = Field("", max_length=64)
    language: str = Field("zh", max_length=8)


class InviteIn(BaseModel):
    code: str = Field(..., max_length=32)
    login: str = Field(..., max_length=32)
    name: str = Field("", max_length=64)
    password: str = Field(..., max_length=256)
    language: str = Field("zh", max_length=8)


class PasswordIn(BaseModel):
    login: str = Field(..., max_length=64)
    password: str = Field(..., max_length=256)
    totp: str = Field("", max_length=16)


class SetupIn(BaseModel):
    login: str = Field(..., max_length=32)
    password: str = Field(..., max_length=256)


class CodeIn(BaseModel):
    code: str = Field(..., max_length=32)


class DemoLogin(BaseModel):
    user: int


class DemoNew(BaseModel):
    name: str = Field("", max_length=64)
    language: str = Field("zh", max_length=8)


class DemoRole(BaseModel):
    role: str
    jurisdiction: str | None = None
    title: str | None = None


def _ctx(request: Request):
    return request.app.state.ctx


def _phone(raw: str) -> str:
    p = normalize_phone(raw)
    if p is None:
        raise DomainError("auth.err_phone")
    return p


def person(user: User) -> dict:
    return {"name": user.name, "role": user.role, "language": user.language, "channel": user.channel,
            "jurisdiction": user.jurisdiction.name if user.jurisdiction else None, "title": user.title}


def _sms(request: Request):
    provider = request.app.state.sms
    if provider is None:
        raise Refused("auth.err_sms_unavailable", status=503)
    return provider


@router.get("/config", dependencies=[PUBLIC])
async def config(request: Request):
    """What the sign-in page offers."""
    s = _ctx(request).settings
    providers = getattr(request.app.state, "sign_in_providers", None) or {}
    return {"demo": s.demo, "phone": request.app.state.sms is not None,
            "providers": [{"name": k, "label": v.get("label", k), "url": v["url"]}
                          for k, v in sorted(providers.items())]}


@router.post("/phone/code", dependencies=[PUBLIC])
async def send_code(body: PhoneIn, request: Request):
    provider = _sms(request)
    phone = _phone(body.phone)
    ctx = _ctx(request)
    async with session_scope(ctx.sm) as s:
        out = await phone_codes.issue_code(s, ctx.secret, phone, client_address(request))
    if isinstance(out, phone_codes.Refused):
        raise Refused(out.key, status=out.status, seconds=out.retry_after or 0)
    code, _row = out
    try:
        await provider.send_code(phone, code)
    except SmsError as e:
        import logging
        logging.getLogger("hehe.sms").error("sending a sign-in code failed: %s", e)
        raise Refused("auth.err_sms_failed", status=502) from e
    return {"sent": True, "expires_in": int(phone_codes.CODE_TTL.total_seconds()),
            "resend_in": int(phone_codes.RESEND_AFTER.total_seconds())}


@router.post("/phone/verify", dependencies=[PUBLIC])
async def verify_code(body: PhoneCode, request: Request, response: Response):
    _sms(request)
    phone = _phone(body.phone)
    ctx = _ctx(request)
    async with session_scope(ctx.sm) as s:
        ok = await phone_codes.check_code(s, ctx.secret, phone, body.code, client_address(request))
    if isinstance(ok, phone_codes.Refused):
        raise Refused(ok.key, status=ok.status)
    if not ok:
        raise Refused("auth.err_code_wrong")
    async with session_scope(ctx.sm) as s:
        user = await phone_codes.citizen_for_phone(s, phone, name=body.name, language=body.language)
        if user is None:
            raise Refused("auth.err_inactive", status=403)
        await start_session(s, request, response, user, method="phone", second_factor=False)
        return {"user": person(user), "second_factor_setup": needs_second_factor(user)}


@router.post("/invite", dependencies=[PUBLIC])
async def redeem_invite(body: InviteIn, request: Request, response: Response):
    """Staff: redeem the invite code, choose a sign-in name and password; the answer carries the
    TOTP secret to add to an authenticator app, confirmed with ``POST /auth/api/totp``."""
    ctx = _ctx(request)
    from backend.auth import ratelimit
    async with session_scope(ctx.sm) as s:
        allowed = await ratelimit.hit(s, f"invite:client:{client_address(request)}", ratelimit.HOUR, 10)
    if not allowed:
        raise Refused("auth.err_too_many", status=429)
    async with session_scope(ctx.sm) as s:
        user, account = await staff.redeem_invite_in_browser(
            s, code=body.code, login=body.login, name=body.name, password=body.password, language=body.language)
        await start_session(s, request, response, user, method="password", second_factor=False)
        return {"user": person(user), **staff.totp_setup(account), "second_factor_setup": needs_second_factor(user)}


@router.post("/password", dependencies=[PUBLIC])
async def password_sign_in(body: PasswordIn, request: Request, response: Response):
    ctx = _ctx(request)
    from backend.auth import ratelimit
    async with session_scope(ctx.sm) as s:
        allowed = await ratelimit.hits(s, [(f"pw:client:{client_address(request)}", ratelimit.HOUR, 30)])
        out = await staff.password_sign_in(s, body.login, body.password, body.totp) if allowed else "auth.err_too_many"
    if isinstance(out, str):
        raise Refused(out, status=429 if out == "auth.err_too_many" else 401)
    async with session_scope(ctx.sm) as s:
        user = await s.get(User, out.id)
        account = await account_of(s, user)
        second = bool(account and account.totp_confirmed)
        await start_session(s, request, response, user, method="password", second_factor=second)
        return {"user": person(user), "second_factor_setup": needs_second_factor(user) and not second}


@router.get("/me")
async def me(user: SetupUser, ws: CurrentWebSession, session: SessionDep):
    account = await account_of(session, user)
    return {"user": person(user), "method": ws.method, "second_factor": ws.second_factor,
            "second_factor_setup": needs_second_factor(user) and not ws.second_factor,
            "has_password": bool(account and account.password_hash),
            "totp": bool(account and account.totp_confirmed),
            "session_expires_at": ws.expires_at.isoformat()}


@router.post("/setup")
async def setup(body: SetupIn, user: SetupUser, session: SessionDep):
    """A staff person signed in without a password (e.g. invited in the chat): choose the
    sign-in name and password; the answer carries the TOTP secret."""
    account = await account_of(session, user)
    if account is None:
        raise DomainError("auth.err_no_web_account")
    if account.password_hash is not None:
        raise DomainError("auth.err_password_exists")
    login = body.login.strip()
    if not staff.LOGIN_RE.match(login):
        raise DomainError("auth.err_login_invalid")
    staff.check_password(body.password, login)
    if await session.scalar(select(staff.WebAccount.id).where(staff.WebAccount.login == login)):
        raise DomainError("auth.err_login_taken")
    account.login, account.password_hash = login, staff.PASSWORDS.hash(body.password)
    account = await staff.start_totp_setup(session, user)
    await session.commit()  # before answering: the next request must see it
    return staff.totp_setup(account)


@router.post("/totp/new")
async def new_totp(user: SetupUser, session: SessionDep):
    """The authenticator key of a person who has not confirmed one yet (a new key each time)."""
    account = await account_of(session, user)
    if account is not None and not account.totp_confirmed:
        account.totp_secret = None
    account = await staff.start_totp_setup(session, user)
    await session.commit()
    return staff.totp_setup(account)


@router.post("/totp")
async def confirm_totp(body: CodeIn, request: Request, user: SetupUser, ws: CurrentWebSession):
    """Confirm the authenticator app (first code): the session now has its second factor."""
    ctx = _ctx(request)
    async with session_scope(ctx.sm) as s:
        ok = await staff.confirm_totp(s, await s.get(User, user.id), body.code)
        if ok:
            row = await s.get(WebSession, ws.id)
            row.second_factor, row.second_factor_at = True, now()
    if not ok:
        raise Refused("auth.err_totp_wrong")
    return {"second_factor": True}


@router.post("/step-up")
async def step_up(body: CodeIn, request: Request, user: WebUser, ws: CurrentWebSession):
    """A fresh TOTP, required before revealing a face match or exporting personal data."""
    ctx = _ctx(request)
    from backend.auth import ratelimit
    async with session_scope(ctx.sm) as s:
        account = await account_of(s, user)
        allowed = await ratelimit.hit(s, f"stepup:user:{user.id}", ratelimit.HOUR, 10)
        ok = allowed and account is not None and account.totp_confirmed and staff.verify_totp(account, body.code)
        if ok:
            row = await s.get(WebSession, ws.id)
            row.second_factor, row.second_factor_at = True, now()
            await users.audit(s, f"user:{user.id}", "web.step_up", f"user:{user.id}", session_id=ws.id)
    if not ok:
        raise Refused("auth.err_totp_wrong" if allowed else "auth.err_too_many", status=401 if allowed else 429)
    return {"fresh_for_minutes": ctx.settings.step_up_minutes}


@router.get("/sessions")
async def sessions(request: Request, user: SetupUser, ws: CurrentWebSession, session: SessionDep):
    return {"sessions": [
        {"id": r.id, "method": r.method, "created_at": r.created_at.isoformat(),
         "last_seen_at": r.last_seen_at.isoformat(), "client": r.client, "user_agent": r.user_agent,
         "current": r.id == ws.id}
        for r in await my_sessions(session, user, _ctx(request).settings)]}


@router.delete("/sessions/{session_id}")
async def end_one(session_id: int, user: SetupUser, session: SessionDep):
    if not 0 < session_id < 2 ** 62 or not await end_session(session, user, session_id):
        raise NotFound("common.err_not_found")
    await session.commit()
    return {"ended": session_id}


@router.post("/logout")
async def logout(response: Response, user: SetupUser, ws: CurrentWebSession, session: SessionDep):
    await end_session(session, user, ws.id)
    end_cookies(response)
    await session.commit()
    return {"signed_out": True}


@router.post("/link")
async def link_telegram(body: CodeIn, request: Request, response: Response, user: WebUser):
    """Enter the code ``/link`` showed in Telegram: this web account becomes that person."""
    ctx = _ctx(request)
    async with session_scope(ctx.sm) as s:
        out = await linking.link(s, await s.get(User, user.id), body.code)
    if isinstance(out, str):
        raise Refused(out, status=429 if out == "auth.err_too_many" else 400)
    async with session_scope(ctx.sm) as s:
        tg_user = await s.get(User, out.id)
        await start_session(s, request, response, tg_user, method="link", second_factor=False)
        return {"user": person(tg_user), "second_factor_setup": needs_second_factor(tg_user)}


# ---------------------------------------------------------------- demo mode only
@router.get("/demo/users", dependencies=[PUBLIC, DEMO_ONLY])
async def demo_users(session: SessionDep):
    rows = await session.scalars(select(User).where(User.channel.in_(DEMO_CHANNELS), User.active.is_(True))
                                 .order_by(User.id))
    return {"users": [{"id": u.id, **person(u)} for u in rows]}


@router.post("/demo/new", dependencies=[PUBLIC, DEMO_ONLY])
async def demo_new(body: DemoNew, request: Request, response: Response, session: SessionDep):
    user = await new_web_user(session, name=body.name, language=body.language)
    await start_session(session, request, response, user, method="demo", second_factor=True)
    await session.commit()
    return {"user": {"id": user.id, **person(user)}}


@router.post("/demo/login", dependencies=[PUBLIC, DEMO_ONLY])
async def demo_login(body: DemoLogin, request: Request, response: Response, session: SessionDep):
    user = await session.get(User, body.user) if 0 < body.user < 2 ** 31 else None
    if user is None or user.channel not in DEMO_CHANNELS or not user.active:
        raise NotFound("common.err_not_found")
    await start_session(session, request, response, user, method="demo", second_factor=True)
    await session.commit()
    return {"user": {"id": user.id, **person(user)}}


@router.post("/demo/role", dependencies=[DEMO_ONLY])
async def demo_role(body: DemoRole, user: WebUser, session: SessionDep):
    try:
        role = Role(body.role)
    except ValueError as e:
        raise DomainError("common.err_validation") from e
    j = None
    if body.jurisdiction:
        j = await users.find_jurisdiction(session, body.jurisdiction)
        if j is None:
            raise NotFound("common.err_not_found")
    me_ = await session.get(User, user.id)
    await users.set_role(session, me_, role, j, actor="demo", title=body.title, note="set directly (demo)")
    await session.commit()
    return {"user": person(me_)}
