"""Web accounts, sessions, one-time codes, link codes, rate-limit counters and the Telegram
updates already handled (shared by every replica)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime

# Telegram user ids have at most 52 significant bits (Bot API). Web people get chat ids from
# 2**53 upwards — ``WEB_ID_BASE + web_accounts.id`` — so the two spaces can never meet.
WEB_ID_BASE = 2 ** 53


class WebAccount(Base):
    """How a person signs in on the web. ``user_id`` is the person (a web user, or the
    Telegram user it was explicitly linked to)."""

    __tablename__ = "web_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True, index=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)  # normalized, citizens
    login: Mapped[str | None] = mapped_column(String(64), unique=True)  # staff sign-in name
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)  # no code used twice
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)

    @property
    def chat_id(self) -> int:
        return WEB_ID_BASE + self.id


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # sha256 hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))  # phone | password | demo | zzd | zlb | oidc …
    second_factor: Mapped[bool] = mapped_column(Boolean, default=False)
    second_factor_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    client: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class OneTimeCode(Base):
    """A 6-digit sign-in code sent to a phone (only its hash is kept)."""

    __tablename__ = "web_login_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LinkCode(Base):
    """A short code Telegram's ``/link`` shows its person, entered on the web page by the
    signed-in web person: from then on the two are one person (the Telegram one)."""

    __tablename__ = "web_link_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateCounter(Base):
    """Fixed-window counters shared by every process (sends per phone, per address, …)."""

    __tablename__ = "rate_counters"
    __table_args__ = (UniqueConstraint("key", "window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    window: Mapped[int] = mapped_column(BigInteger)  # window start, seconds since the epoch
    count: Mapped[int] = mapped_column(Integer, default=0)


class SeenUpdate(Base):
    """A Telegram update handled by some replica: a re-delivery of its ``update_id`` (after a
    timeout, maybe to another replica) is ignored. Rows older than a day are pruned (Telegram
    keeps an undelivered update 24 h)."""

    __tablename__ = "seen_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)


class WebMessage(Base):
    """The web channel's transcript: what the bot said (``out``) and what the person did
    (``in``), so history survives a restart. Retention: settings.web_retention_days."""

    __tablename__ = "web_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    message_id: Mapped[int] = mapped_column(BigInteger, default=0)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    mine: Mapped[bool] = mapped_column(Boolean, default=False)  # the person's own message
    body: Mapped[str] = mapped_column(Text)  # JSON of the message as the page shows it
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    # An outbox delivery's part ("outbox:<id>:<part>"): a delivery retried after a replica died
    # mid-send does not show the line twice (backend.web.channel)
    dedupe: Mapped[str | None] = mapped_column(String(64), unique=True)


class WebFile(Base):
    """A file of the web channel (data dir ``web-files/``) and who may fetch it: the people
    it was sent to or who uploaded it."""

    __tablename__ = "web_files"
    __table_args__ = (UniqueConstraint("file_id", "chat_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    mime: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
