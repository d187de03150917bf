"""Plain data types of the knowledge base: what is indexed, who asks, what comes back."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

KINDS = ("dispute", "supervision", "missing", "document", "history")

#: roles that see the records of their own jurisdiction (and everything below it)
STAFF_ROLES = ("official", "mediator", "procurator", "officer")


def jurisdiction_ids_from_path(path: str | None) -> list[int]:
    """``Jurisdiction.path`` "/1/3/17/" → [1, 3, 17] (the record's jurisdiction and all ancestors)."""
    return [int(p) for p in (path or "").split("/") if p.strip().isdigit()]


@dataclass
class Record:
    """One citable item. ``id`` is the reference shown in citations, e.g. "TZ-JJ-20261128-0001"."""

    id: str
    kind: str
    title: str
    text: str
    category: str = ""
    location: str = ""
    jurisdiction_ids: list[int] = field(default_factory=list)
    date: date | None = None
    owner_user_ids: list[int] = field(default_factory=list)
    public: bool = False
    # Optional: pre-split sections [(label, text)], used by documents for article numbers (第十条).
    sections: list[tuple[str | None, str]] | None = None
    # Optional: "<kind>:<ref_id>" of the domain object this record was built from (set by the outbox).
    source: str | None = None

    def validate(self) -> None:
        if not self.id or not str(self.id).strip():
            raise ValueError("record id is empty")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if not (self.text or "").strip() and not self.sections:
            raise ValueError("record text is empty")


@dataclass(frozen=True)
class Scope:
    """Who is asking. Built by the caller from the authenticated user."""

    role: str
    user_id: int | None = None
    jurisdiction_id: int | None = None
    may_see_all: bool = False

    @classmethod
    def from_user(cls, user: Any, may_see_all: bool = False) -> "Scope":
        return cls(role=str(getattr(user, "role", "citizen")), user_id=getattr(user, "id", None),
                   jurisdiction_id=getattr(user, "jurisdiction_id", None), may_see_all=may_see_all)

    @classmethod
    def admin(cls) -> "Scope":
        return cls(role="admin", may_see_all=True)

    @property
    def sees_all(self) -> bool:
        return self.may_see_all or self.role == "admin"

    @property
    def may_query_cases(self) -> bool:
        """Citizens (and unknown roles) may only query public documents, never cases."""
        return self.sees_all or self.role in STAFF_ROLES or self.role == "deputy"

    def entitled_to_personal_data(self, owner_user_ids: list[int]) -> bool:
        """Raw phone / ID numbers / minors' names: admins and the record's owners only."""
        if self.role == "admin":
            return True
        return self.user_id is not None and self.user_id in (owner_user_ids or [])


@dataclass
class Hit:
    """One retrieved record (best chunk first)."""

    id: str
    score: float
    kind: str
    title: str
    snippet: str
    dense: float | None = None  # best cosine similarity of its chunks
    keyword: float | None = None  # best BM25 score of its chunks
    chunks: list[dict] = field(default_factory=list)  # [{"text","article","dense","keyword"}]
    meta: dict = field(default_factory=dict)  # record metadata (location, date, category, owners...)
    keyword_evidence: bool = False  # holds the question's rare terms (names, numbers, places)
    ranks: tuple[int | None, int | None] = (None, None)  # rank on the dense / keyword channel (0 = first)

    def as_json(self) -> dict:
        return {"id": self.id, "score": round(float(self.score), 4), "kind": self.kind, "snippet": self.snippet}


@dataclass
class Answer:
    answer: str
    citations: list[str]
    hits: list[Hit] = field(default_factory=list)
    mode: str = "extractive"  # extractive | llm | stats | none | refused
    filters: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"answer": self.answer, "citations": list(self.citations)}
