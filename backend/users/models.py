"""Users, roles, the jurisdiction tree, invite codes and the audit log."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime


class Role(str, enum.Enum):
    citizen = "citizen"
    mediator = "mediator"
    deputy = "deputy"
    procurator = "procurator"
    officer = "officer"  # police / civil affairs / shelter staff
    official = "official"
    admin = "admin"


class Level(str, enum.Enum):
    city = "city"  # 台州市
    county = "county"  # 区/县/县级市
    township = "township"  # 乡/镇/街道
    village = "village"  # 村/社区
    grid = "grid"  # 网格


LEVEL_ORDER = [Level.city, Level.county, Level.township, Level.village, Level.grid]


class Jurisdiction(Base):
    __tablename__ = "jurisdictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    # Materialized path of ids "/1/3/17/" — "is X inside Y" is a prefix test, on both databases.
    path: Mapped[str] = mapped_column(String(255), index=True, default="/")
    code: Mapped[str | None] = mapped_column(String(16))  # short code for case numbers, e.g. JJ
    lat: Mapped[float | None] = mapped_column()
    lon: Mapped[float | None] = mapped_column()

    # Not loaded with the row (the in-memory tree, backend.users.tree, answers ancestry): a
    # selectin parent made every jurisdiction read a chain of queries up to the city.
    parent: Mapped["Jurisdiction | None"] = relationship(remote_side=[id], lazy="raise")

    def contains(self, other: "Jurisdiction") -> bool:
        return other.path.startswith(self.path)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Telegram user id (or a local id for the offline channel). Same id space; see `channel`.
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    channel: Mapped[str] = mapped_column(String(16), default="telegram")  # telegram | local
    name: Mapped[str] = mapped_column(String(128), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    role: Mapped[str] = mapped_column(String(16), default=Role.citizen.value, index=True)
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    # Extra duties inside a role, e.g. "supervisor", "chief", "liaison", "shelter".
    title: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    jurisdiction: Mapped[Jurisdiction | None] = relationship(lazy="selectin")

    @property
    def role_enum(self) -> Role:
        return Role(self.role)


class InviteCode(Base):
    __tablename__ = "invite_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"))
    title: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64), default="cli")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    jurisdiction: Mapped[Jurisdiction | None] = relationship(lazy="selectin")


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # "user:12", "cli", "system"
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class ApiToken(Base):
    """An API bearer token: one row per token, so each can be listed, expires and is revoked on
    its own. Only a SHA-256 of its secret part is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64), default="cli")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
