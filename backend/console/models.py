"""Saved views of the console: a name and the query string of a list page (personal or shared)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime


class SavedView(Base):
    __tablename__ = "console_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    page: Mapped[str] = mapped_column(String(32))  # "cases"
    query: Mapped[str] = mapped_column(String(1000))  # the list's query string, as in its URL
    shared: Mapped[bool] = mapped_column(Boolean, default=False)  # shared: every staff member of the page sees it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)


class ReplyTemplate(Base):
    """答复模板: a reply text the console sends to many citizens at once (bulk "reply from a
    template"); kept by mediation supervisors and admins. ``{number}`` in the body becomes the
    case number."""

    __tablename__ = "console_reply_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
