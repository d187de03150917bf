from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime


class Outbox(Base):
    """A message Hehe owes a user. Written in the same transaction as the change that
    caused it; delivered later by the worker (at-least-once, idempotent per dedupe_key)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    text: Mapped[str] = mapped_column(Text)
    buttons: Mapped[list | None] = mapped_column(JSON)  # [[["label", "callback_data"], ...], ...]
    photo_path: Mapped[str | None] = mapped_column(String(512))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A worker that takes a row holds it until ``claimed_until``; another worker (or replica)
    # skips it until then, and takes it over if the first one died mid-send.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # How many parts of a long text were delivered (Telegram takes 4,096 characters a message):
    # a retry resumes after them instead of sending the first parts twice.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    # Given up on (refused for good, or out of attempts): kept and listed, never silently dropped.
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class Unreachable(Base):
    """A person who cannot be reached on a channel (e.g. they blocked the bot: Telegram 403).
    Delivery to them on that channel stops until they write again."""

    __tablename__ = "unreachable"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    reason: Mapped[str] = mapped_column(Text, default="")
