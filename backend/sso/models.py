"""Accounts at government sign-in providers linked to Hehe users, and the login attempts
in flight between the redirect and the callback."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime


class ExternalAccount(Base):
    """One person at one provider (``zzd`` 浙政钉, ``zlb`` 浙里办, ``oidc``), found again by the
    provider's stable id. An ID-card number is kept only as a keyed HMAC (service.hash_id_card)."""

    __tablename__ = "external_accounts"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    id_card_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SsoLoginState(Base):
    """A sign-in that went to the provider and has not come back yet. Only the SHA-256 of the
    state is stored; the browser holds the state itself in a cookie, so a callback is accepted
    only in the browser that started it, and only once."""

    __tablename__ = "sso_login_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str | None] = mapped_column(String(64))
    code_verifier: Mapped[str | None] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(String(512))
    next_path: Mapped[str] = mapped_column(String(255), default="/chat")  # where the person lands
    # Set when a signed-in person started the flow to link this provider to their account.
    link_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
