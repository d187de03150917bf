"""灯塔工程: missing-person reports (走失), found/stranded-person registrations (滞留),
face-match candidates awaiting human review, and cross-region help requests (人像协作)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.core.clock import now
from backend.core.db import Base, UTCDateTime
from backend.users.models import Jurisdiction


class PersonCase(Base):
    """One person: reported missing by a family (kind="missing") or registered as found /
    stranded by an officer (kind="found"). Both kinds share the table so a match links two rows."""

    __tablename__ = "missing_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_no: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(8), index=True)  # missing | found
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # see service.TRANSITIONS
    # Stable, random id of this person in the face galleries (never the DB id: ids restart per database).
    face_key: Mapped[str] = mapped_column(String(40), unique=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(64))
    sex: Mapped[str | None] = mapped_column(String(1))  # M | F | None (unknown)
    age: Mapped[int | None] = mapped_column(Integer)  # at last seen (missing) / estimated (found)
    height_cm: Mapped[int | None] = mapped_column(Integer)
    place: Mapped[str | None] = mapped_column(String(255))  # last seen / where found, free text
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # last seen / found at
    clothing: Mapped[str | None] = mapped_column(Text)
    health: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))  # normalized; shown masked to non-entitled
    photo_ids: Mapped[list] = mapped_column(JSON, default=list)  # StoredFile ids
    # per photo (same order): {"box": [x1,y1,x2,y2], "rot": deg, "grade": good|fair|poor, "reasons": [...]}
    # of the face that was enrolled, in the pixels of the decoded (EXIF-turned) photo
    photo_faces: Mapped[list] = mapped_column(JSON, default=list)
    features: Mapped[str | None] = mapped_column(Text)  # found persons: marks, glasses, speech …
    notes: Mapped[str | None] = mapped_column(Text)  # found persons: anything else the officer saw
    # The wizard's draft this case came from: a double tap on 提交 creates one case, not two.
    draft_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    # none | enrolled | pending (face service was unavailable) | unusable | scheduled | deleted
    face_state: Mapped[str] = mapped_column(String(16), default="none")
    face_delete_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    jurisdiction: Mapped[Jurisdiction | None] = relationship(lazy="selectin")


class CaseEvent(Base):
    """Every status transition of a case: who, when, why."""

    __tablename__ = "missing_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("missing_cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    actor: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class MatchCandidate(Base):
    """A face-match proposal between a missing and a found person. Never shown to citizens;
    an officer confirms or rejects it."""

    __tablename__ = "missing_candidates"
    __table_args__ = (UniqueConstraint("missing_id", "found_id", name="uq_missing_candidates_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    missing_id: Mapped[int] = mapped_column(ForeignKey("missing_cases.id"), index=True)
    found_id: Mapped[int] = mapped_column(ForeignKey("missing_cases.id"), index=True)
    score: Mapped[float] = mapped_column(Float)  # cosine similarity of the faces
    rank_score: Mapped[float] = mapped_column(Float)  # face score combined with consistency
    flags: Mapped[list] = mapped_column(JSON, default=list)  # [{"code":..., "ok": bool, **params}]
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    # which photo of each case matched (index into photo_ids / photo_faces)
    missing_photo: Mapped[int] = mapped_column(Integer, default=0)
    found_photo: Mapped[int] = mapped_column(Integer, default=0)
    checklist: Mapped[list] = mapped_column(JSON, default=list)  # items the first officer ticked
    first_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # step one of two
    reason: Mapped[str | None] = mapped_column(String(24))  # reject reason code (missing.reason_<code>)
    # confirmed: the family is told at this moment; until then the decision can be undone
    release_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    missing: Mapped[PersonCase] = relationship(foreign_keys=[missing_id], lazy="selectin")
    found: Mapped[PersonCase] = relationship(foreign_keys=[found_id], lazy="selectin")


class AssistRequest(Base):
    """人像协作: an officer asks officers of other counties whether they know this face."""

    __tablename__ = "missing_assist_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"))
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id"))  # None: past retention
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | answered | expired
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    # the county asked (None: every other county), the face chosen on the photo, a marked copy
    target_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"))
    face_box: Mapped[list | None] = mapped_column(JSON)
    marked_photo_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id"))


class CaseCounter(Base):
    """The last case number handed out per prefix (kind, county, day): one atomic upsert per case,
    so concurrent reports get distinct numbers (``count + 1`` collided)."""

    __tablename__ = "missing_counters"

    prefix: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AssistAnswer(Base):
    __tablename__ = "missing_assist_answers"
    __table_args__ = (UniqueConstraint("request_id", "officer_id", name="uq_missing_assist_answers_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("missing_assist_requests.id"), index=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("missing_cases.id"))  # None = 未发现
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
