"""灯塔工程's two workflow tables, in the shared shape of ``backend/core/workflow.py``.

* a person's case (``PersonCase``): open → found (a match released) → closed; the reporter
  withdraws, an officer of the place closes, an officer undoes a match inside the undo window;
* a face-match candidate (``MatchCandidate``): pending → checked (first officer, checklist)
  → confirmed (a second officer or an admin) — or straight to confirmed when the second
  confirmation is switched off; rejected with a reason; undone back to pending while the
  undo window is open; superseded / withdrawn by the system.

The candidate's table is evaluated on a :class:`Review` (the candidate plus the rules in force
now: whether a second confirmation is needed and the time), so guards stay plain functions of
(person, item) and chat buttons, the API and the console ask the same ``available``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from backend.core.security import within
from backend.core.workflow import Transition, Workflow
from backend.users.models import Role

if TYPE_CHECKING:
    from backend.missing.models import MatchCandidate

STAFF = {Role.officer, Role.admin}


class CaseStatus(StrEnum):
    open = "open"
    found = "found"
    closed = "closed"


class CaseAction(StrEnum):
    match = "match"  # a confirmed candidate is released (system, through the candidate)
    undo_match = "undo_match"
    withdraw = "withdraw"  # the reporter
    close = "close"  # an officer of the place


def _reporter(person, case) -> bool:
    return case.reporter_id == person.id


def _officer_of_place(person, case) -> bool:
    return Role(person.role) == Role.admin or within(person, case.jurisdiction)


CASES = Workflow("missing.cases", CaseStatus, [
    Transition(CaseAction.match, {CaseStatus.open}, CaseStatus.found, roles=STAFF),
    Transition(CaseAction.undo_match, {CaseStatus.found}, CaseStatus.open, roles=STAFF),
    Transition(CaseAction.withdraw, {CaseStatus.open, CaseStatus.found}, CaseStatus.closed, guard=_reporter),
    Transition(CaseAction.close, {CaseStatus.open, CaseStatus.found}, CaseStatus.closed, roles=STAFF,
               guard=_officer_of_place),
], status_of=lambda case: case.status)


class CandidateStatus(StrEnum):
    pending = "pending"
    checked = "checked"  # step one done (checklist), waiting for the second confirmation
    confirmed = "confirmed"
    rejected = "rejected"
    superseded = "superseded"
    withdrawn = "withdrawn"


class CandidateAction(StrEnum):
    confirm = "confirm"  # step one: the checklist
    second = "second"  # step two: another officer or an admin
    reject = "reject"
    undo = "undo"
    supersede = "supersede"  # system: another candidate of the same person was confirmed
    withdraw = "withdraw"  # system: a case was closed


class Check(StrEnum):
    """What the first officer checks before confirming (the face at least)."""

    face = "face"
    age = "age"
    sex = "sex"
    clothing = "clothing"
    place = "place"


class RejectReason(StrEnum):
    face = "face"
    age = "age"
    sex = "sex"
    place = "place"
    time = "time"
    photo = "photo"
    other = "other"  # needs a free-text note in chat


St = TypeVar("St", CaseStatus, CandidateStatus)


def moved(target: St | None) -> St:
    """A transition's target status: every row of both tables moves the status (none leaves it as it is)."""
    assert target is not None, "灯塔's workflow rows all have a target status"
    return target


CHECKLIST = tuple(c.value for c in Check)
REJECT_REASONS = tuple(r.value for r in RejectReason)


@dataclass
class Review:
    """A candidate as the table sees it: with the rules in force at this moment."""

    candidate: MatchCandidate
    second_required: bool
    now: datetime

    @property
    def status(self) -> str:
        return self.candidate.status


def _may_review(person, r: Review) -> bool:
    c = r.candidate
    return Role(person.role) == Role.admin or within(person, c.missing.jurisdiction) or within(
        person, c.found.jurisdiction)


def _one_step(person, r: Review) -> bool:
    return _may_review(person, r) and not r.second_required


def _two_steps(person, r: Review) -> bool:
    return _may_review(person, r) and r.second_required


def _second_person(person, r: Review) -> bool:
    return _may_review(person, r) and person.id != r.candidate.first_reviewer_id


def _undo_open(person, r: Review) -> bool:
    c = r.candidate
    return (_may_review(person, r) and c.release_at is not None and r.now < c.release_at
            and person.id in (c.reviewer_id, c.first_reviewer_id))


CANDIDATES = Workflow("missing.candidates", CandidateStatus, [
    Transition(CandidateAction.confirm, {CandidateStatus.pending}, CandidateStatus.checked, roles=STAFF,
               guard=_two_steps),
    Transition(CandidateAction.confirm, {CandidateStatus.pending}, CandidateStatus.confirmed, roles=STAFF,
               guard=_one_step),
    Transition(CandidateAction.second, {CandidateStatus.checked}, CandidateStatus.confirmed, roles=STAFF,
               guard=_second_person),
    Transition(CandidateAction.reject, {CandidateStatus.pending, CandidateStatus.checked}, CandidateStatus.rejected,
               roles=STAFF, guard=_may_review),
    Transition(CandidateAction.undo, {CandidateStatus.confirmed, CandidateStatus.rejected}, CandidateStatus.pending,
               roles=STAFF, guard=_undo_open),
    Transition(CandidateAction.supersede, {CandidateStatus.pending, CandidateStatus.checked},
               CandidateStatus.superseded, roles={Role.admin}),
    Transition(CandidateAction.withdraw, {CandidateStatus.pending, CandidateStatus.checked},
               CandidateStatus.withdrawn, roles={Role.admin}),
], status_of=lambda r: r.status)
