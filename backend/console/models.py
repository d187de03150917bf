"""Saved views of the console: a name and the query string of a list page (personal or shared)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
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
