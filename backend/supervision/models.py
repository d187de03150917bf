"""人大·检察智联督办: supervision items proposed by NPC deputies and handled by procurators."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime
from backend.users.models import Jurisdiction


class SupervisionItem(Base):
    """One 督办事项. ``status`` only changes through ``service.transition`` (the table there)."""

    __tablename__ = "sup_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True, index=True)  # DB-JJ-2026-0001
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    area: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str | None] = mapped_column(String(128))  # responsible agency named by the deputy
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)  # the place
    county_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    # The procuratorate that handles it now: the county's, or the city's after an appeal.
    procuratorate_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    proposer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    handler_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(24), index=True, default="submitted")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    acceptance_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decline_reason: Mapped[str | None] = mapped_column(Text)
    appealed: Mapped[bool] = mapped_column(Boolean, default=False)
    was_clue: Mapped[bool] = mapped_column(Boolean, default=False)
    case_filed: Mapped[bool] = mapped_column(Boolean, default=False)
    litigation: Mapped[bool] = mapped_column(Boolean, default=False)
    last_urged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rating: Mapped[str | None] = mapped_column(String(16))  # satisfied | basic | unsatisfied
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the deadline sweep must next look at the item (the acceptance deadline); None: nothing due.
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    jurisdiction: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id], lazy="selectin")
    county: Mapped[Jurisdiction] = relationship(foreign_keys=[county_id], lazy="selectin")
    procuratorate: Mapped[Jurisdiction] = relationship(foreign_keys=[procuratorate_id], lazy="selectin")


class ItemParticipant(Base):
    """Deputies and liaisons attached to an item: proposer, co-signers (confirmed in chat),
    followers (联合督办). Everyone confirmed here receives the item's updates."""

    __tablename__ = "sup_participants"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_sup_participants_item_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("sup_items.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # proposer | cosigner | follower
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ItemEvent(Base):
    """The timeline: every transition and handling step, with who, when and a note."""

    __tablename__ = "sup_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("sup_items.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None = the system
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class Suggestion(Base):
    """检察建议 issued to an agency, and the agency's reply (检e督)."""

    __tablename__ = "sup_suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("sup_items.id"), index=True)
    agency: Mapped[str] = mapped_column(String(128))
    content: Mapped[str] = mapped_column(Text)
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    reply_due: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when it was entered
    reply_date: Mapped[str | None] = mapped_column(String(10))  # the date on the agency's reply
    reply_content: Mapped[str | None] = mapped_column(Text)
    rectified: Mapped[str | None] = mapped_column(String(8))  # yes | partly | no
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    followup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The next reminder's moment (T−7, T−1, each overdue day, 回头看); None: nothing due.
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class ItemCounter(Base):
    """Per county and year, the last number handed out (DB-<code>-<year>-NNNN)."""

    __tablename__ = "sup_counters"

    key: Mapped[str] = mapped_column(String(16), primary_key=True)  # "JJ-2026"
    last: Mapped[int] = mapped_column(Integer, default=0)
