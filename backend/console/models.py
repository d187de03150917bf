"""Saved views of the console: a name and the query string of a list page (personal or shared)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
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


# ---------------------------------------------------------------- the board's read paths (backend/console/board.py)
def _board_indexes() -> tuple:
    from backend.disputes.models import Dispute as D

    return (
        # one pass per jurisdiction: heat table, rates by category, risk counts (covering)
        Index("ix_disputes_board", D.county_id, D.township_id, D.category, D.status, D.risk, D.outcome,
              D.escalated_county, D.overdue, D.rating, D.resolution_days),
        # time to acceptance (covering; a range of acceptance times, the city's or one county's)
        Index("ix_disputes_board_accepted", D.accepted_at, D.county_id, D.township_id, D.category, D.created_at),
        Index("ix_disputes_board_created", D.county_id, D.created_at),  # time in each state
        Index("ix_disputes_board_open", D.county_id, D.status, D.risk),  # overdue, escalated, risk lists
    )


BOARD_INDEXES = _board_indexes()


class ExportJob(Base):
    """A background export (backend/console/exports.py): its state lives here, so it survives a
    restart (a queued or abandoned job is taken up again) and any replica serves the finished
    file, which is kept in ``data`` until ``expires_at``."""

    __tablename__ = "console_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    fmt: Mapped[str] = mapped_column(String(8))  # csv | xlsx
    query: Mapped[str] = mapped_column(String(1000))  # the list's filters, as in its URL
    lang: Mapped[str] = mapped_column(String(8), default="zh")
    scope: Mapped[str] = mapped_column(String(64))  # the owner's role and jurisdiction when asked ("official:12")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|running|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())  # a running job's worker holds it until
    rows: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the console told the person it is ready
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
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
