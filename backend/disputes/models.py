"""Dispute cases (五环智控), their timeline, and the per-county daily case-number counter."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime
from backend.users.models import Jurisdiction


class Status(str, enum.Enum):
    new = "new"  # 新建
    accepted = "accepted"  # 已受理
    mediating = "mediating"  # 调解中
    resolved = "resolved"  # 调解成功
    failed = "failed"  # 调解不成
    visited = "visited"  # 已回访
    archived = "archived"  # 已归档
    transferred = "transferred"  # 已转派
    escalated = "escalated"  # 已上报


OPEN_STATUSES = (Status.new, Status.accepted, Status.mediating, Status.transferred, Status.escalated)
CLOSED_STATUSES = (Status.visited, Status.archived)


class Dispute(Base):
    __tablename__ = "disputes"
    __table_args__ = (
        # the stats query groups by county × month and reads only these columns
        Index("ix_disputes_stats", "county_id", "month", "status", "outcome", "resolved_level",
              "escalated_county", "overdue", "rating", "resolution_days"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="chat")  # chat | api | open311
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    township_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)  # handling unit
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    address: Mapped[str | None] = mapped_column(String(255))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    other_party: Mapped[str | None] = mapped_column(String(255))
    parties: Mapped[int] = mapped_column(Integer, default=2)
    phone: Mapped[str | None] = mapped_column(String(20))  # normalized; shown masked
    contact_name: Mapped[str | None] = mapped_column(String(128))  # Open311 first/last name
    contact_email: Mapped[str | None] = mapped_column(String(128))
    media_url: Mapped[str | None] = mapped_column(String(512))  # Open311 media_url
    status: Mapped[str] = mapped_column(String(16), default=Status.new.value, index=True)
    month: Mapped[str] = mapped_column(String(7))  # local "YYYY-MM" of creation, for stats
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    accept_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolve_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue: Mapped[int] = mapped_column(Integer, default=0)  # 1 once any deadline was missed
    escalated_county: Mapped[int] = mapped_column(Integer, default=0)  # 1 once handled at county level or above
    outcome: Mapped[str | None] = mapped_column(String(16))  # success | failed
    resolved_level: Mapped[str | None] = mapped_column(String(16))
    resolution_days: Mapped[float | None] = mapped_column(Float)
    agreement: Mapped[str | None] = mapped_column(Text)
    referral: Mapped[str | None] = mapped_column(String(32))  # litigation | arbitration | administrative
    session_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    session_place: Mapped[str | None] = mapped_column(String(255))
    risk: Mapped[str] = mapped_column(String(8), default="green")  # red | yellow | blue | green
    risk_reasons: Mapped[list] = mapped_column(JSON, default=list)
    rating: Mapped[str | None] = mapped_column(String(16))  # satisfied | basic | unsatisfied
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Due dates the sweep reads (scheduler/jobs/disputes.py: one interval job, no job per
    # reminder); each is cleared or moved on in the transaction that acts on it.
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)  # before the pending deadline
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)  # the pending deadline
    session_remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    rating_remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    place: Mapped[Jurisdiction] = relationship(foreign_keys=[place_id], lazy="selectin")
    unit: Mapped[Jurisdiction] = relationship(foreign_keys=[unit_id], lazy="selectin")


class DisputeEvent(Base):
    """The timeline: every transition (and progress note) with who, when and why."""

    __tablename__ = "dispute_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None = system
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class DisputeCounter(Base):
    """Case-number sequence per county and local day (TZ-JJ-20261128-0001)."""

    __tablename__ = "dispute_counters"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class DisputeMonthly(Base):
    """Stats rollup per (county, township, month of report), kept in step with every change
    of a case in the same transaction, so the county × month table never scans the cases.
    ``township_id`` 0 = no township."""

    __tablename__ = "dispute_monthly"

    county_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    township_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    decided: Mapped[int] = mapped_column(Integer, default=0)
    resolved: Mapped[int] = mapped_column(Integer, default=0)
    local_resolved: Mapped[int] = mapped_column(Integer, default=0)
    days_sum: Mapped[float] = mapped_column(Float, default=0.0)
    rated: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)
    overdue: Mapped[int] = mapped_column(Integer, default=0)


class DisputeIntake(Base):
    """One row per chat draft that was confirmed: the first confirm claims the key and
    creates the case; a second tap finds the key taken and gets the same case back."""

    __tablename__ = "dispute_intake"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    dispute_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
