"""Users, jurisdictions, invite codes and the audit log over HTTP."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from backend.core.deps import AdminUser, CurrentUser, SessionDep
from backend.core.errors import Conflict, NotFound
from backend.core.masking import mask_phone
from backend.users import audit, service, tokens
from backend.users.models import Role, User

router = APIRouter(prefix="/api", tags=["users"])


class UserPublic(BaseModel):
    id: int
    telegram_id: int
    name: str
    role: str
    jurisdiction: str | None
    language: str
    phone: str
    active: bool = True

    @classmethod
    def of(cls, u: User) -> "UserPublic":
        return cls(id=u.id, telegram_id=u.telegram_id, name=u.name, role=u.role,
                   jurisdiction=u.jurisdiction.name if u.jurisdiction else None, language=u.language,
                   phone=mask_phone(u.phone), active=bool(u.active))


class JurisdictionPublic(BaseModel):
    id: int
    name: str
    level: str
    parent_id: int | None
    code: str | None


class InviteCreate(BaseModel):
    role: Role
    jurisdiction: str | None = Field(None, description="Name, e.g. 椒江区 or 椒江区/海门街道")
    expires: str = Field("7d", description="7d, 12h, 30m")
    title: str | None = None


class InvitePublic(BaseModel):
    code: str
    role: str
    jurisdiction: str | None
    expires_at: datetime


class RoleChange(BaseModel):
    role: Role
    jurisdiction: str | None = None
    title: str | None = None
    note: str | None = None


class Actor(BaseModel):
    key: str
    name: str | None = None
    role: str | None = None
    jurisdiction: str | None = None


class AuditPublic(BaseModel):
    at: datetime
    actor: str
    who: Actor
    action: str
    subject: str | None
    detail: dict


class ActiveChange(BaseModel):
    note: str | None = None


class TokenPublic(BaseModel):
    id: int
    user_id: int
    label: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, r) -> "TokenPublic":
        return cls(id=r.id, user_id=r.user_id, label=r.label, created_at=r.created_at, expires_at=r.expires_at,
                   revoked_at=r.revoked_at, last_used_at=r.last_used_at)


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.of(user)


@router.get("/jurisdictions", response_model=list[JurisdictionPublic])
async def jurisdictions(session: SessionDep, user: CurrentUser, parent_id: int | None = None):
    return [JurisdictionPublic(id=j.id, name=j.name, level=j.level, parent_id=j.parent_id, code=j.code)
            for j in await service.children(session, parent_id)]


@router.get("/admin/users", response_model=list[UserPublic])
async def list_users(session: SessionDep, admin: AdminUser, role: Role | None = None,
                     limit: int = Query(100, le=1000), offset: int = 0):
    q = select(User).order_by(User.id).limit(limit).offset(offset)
    if role:
        q = q.where(User.role == role.value)
    return [UserPublic.of(u) for u in await session.scalars(q)]


@router.post("/admin/invites", response_model=InvitePublic, status_code=201)
async def create_invite(body: InviteCreate, session: SessionDep, admin: AdminUser):
    j = None
    if body.jurisdiction:
        j = await service.find_jurisdiction(session, body.jurisdiction)
        if j is None:
            raise NotFound("common.err_not_found")
    inv = await service.create_invite(session, body.role, j, service.parse_duration(body.expires),
                                      actor=f"user:{admin.id}", title=body.title)
    return InvitePublic(code=inv.code, role=inv.role, jurisdiction=j.name if j else None,
                        expires_at=inv.expires_at)


@router.post("/admin/users/{user_id}/role", response_model=UserPublic)
async def change_role(user_id: int, body: RoleChange, session: SessionDep, admin: AdminUser):
    u = await service.get_user(session, user_id)
    j = await service.find_jurisdiction(session, body.jurisdiction) if body.jurisdiction else None
    if body.jurisdiction and j is None:
        raise NotFound("common.err_not_found")
    await service.set_role(session, u, body.role, j, actor=f"user:{admin.id}", title=body.title, note=body.note)
    return UserPublic.of(u)


@router.get("/admin/audit", response_model=list[AuditPublic])
async def audit_log(session: SessionDep, admin: AdminUser,
                    actor: str | None = Query(None, description="user:5, a user id, a name, cli or system"),
                    action: str | None = Query(None, description='exact ("dispute.read") or a prefix ending in "."'),
                    target: str | None = Query(None, description='the subject ("dispute:12") or a prefix ("dispute:")'),
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)):
    """Search the audit log (newest first); actors are shown with name, role and jurisdiction."""
    rows = await audit.search(session, actor=actor, action=action, target=target, since=since, until=until,
                              limit=limit, offset=offset)
    people = await audit.actors(session, rows)
    out = []
    for a in rows:
        d = a.detail or {}
        now_ = people.get(a.actor, {})
        who = Actor(key=a.actor, name=d.get("actor_name") or now_.get("name"),
                    role=d.get("actor_role") or now_.get("role"),
                    jurisdiction=d.get("actor_jurisdiction") or now_.get("jurisdiction"))
        out.append(AuditPublic(at=a.at, actor=a.actor, who=who, action=a.action, subject=a.subject, detail=d))
    return out


@router.post("/admin/users/{user_id}/deactivate", response_model=UserPublic)
async def deactivate(user_id: int, session: SessionDep, admin: AdminUser, body: ActiveChange | None = None):
    u = await service.get_user(session, user_id)
    if u.id == admin.id:  # an admin shutting themselves out would leave nobody to undo it
        raise Conflict("users.err_self_deactivate")
    await service.set_active(session, u, False, actor=f"user:{admin.id}", note=body.note if body else None)
    return UserPublic.of(u)


@router.post("/admin/users/{user_id}/reactivate", response_model=UserPublic)
async def reactivate(user_id: int, session: SessionDep, admin: AdminUser, body: ActiveChange | None = None):
    u = await service.get_user(session, user_id)
    await service.set_active(session, u, True, actor=f"user:{admin.id}", note=body.note if body else None)
    return UserPublic.of(u)


@router.get("/admin/tokens", response_model=list[TokenPublic])
async def list_tokens(session: SessionDep, admin: AdminUser, user_id: int | None = None):
    owner = await service.get_user(session, user_id) if user_id is not None else None
    return [TokenPublic.of(r) for r in await tokens.list_tokens(session, owner)]


@router.post("/admin/tokens/{token_id}/revoke", response_model=TokenPublic)
async def revoke_token(token_id: int, session: SessionDep, admin: AdminUser):
    return TokenPublic.of(await tokens.revoke(session, token_id, actor=f"user:{admin.id}"))
