"""The dispute workflow (五环智控) as ONE table in the shared shape (backend/core/workflow.py):
Enum statuses and actions, each transition guarded by role + predicate, with its target.

The service enforces it (:func:`check`, in ``service._transition``); chat buttons and the API
ask :func:`available_actions`. Actions the system takes (an overdue deadline, archiving after a
rating, reopening after 不满意) have no roles and are taken with no person.

```
create → 新建(new)
accept:   new | transferred | escalated            → 已受理(accepted)    mediator of the unit
transfer: new | accepted | transferred | escalated → 已转派(transferred) mediator of the unit
escalate: new | accepted | mediating | transferred | escalated → 已上报(escalated)
schedule: accepted | mediating → 调解中(mediating)
succeed:  accepted | mediating → 调解成功(resolved)
fail:     accepted | mediating → 调解不成(failed)
note:     any open status, resolved, failed (unchanged)
close:    resolved | failed (unchanged; once)       mediator of the unit
rate:     resolved | failed → 已回访(visited)       the reporting citizen
reopen:   resolved | failed → escalated             system (不满意: review one level up)
archive:  visited → 已归档(archived)                system
overdue:  any open status (unchanged)               system
assign:   any open status (unchanged)               mediator of the unit → another mediator of it
reply:    any open status, resolved, failed (unchanged)  mediator of the unit (to the citizen)
```
"""
from __future__ import annotations

import enum

from backend.core.errors import Conflict, Forbidden
from backend.core.security import within
from backend.core.workflow import Transition, Workflow
from backend.disputes.models import OPEN_STATUSES, Status
from backend.users.models import Role


class Action(enum.StrEnum):
    create = "create"
    accept = "accept"
    transfer = "transfer"
    escalate = "escalate"
    note = "note"
    schedule = "schedule"
    succeed = "succeed"
    fail = "fail"
    close = "close"
    rate = "rate"
    reopen = "reopen"
    archive = "archive"
    overdue = "overdue"
    assign = "assign"  # hand the case to another mediator of the unit (the console's bulk assign)
    reply = "reply"  # a written reply to the reporting citizen (the console's reply from a template)


class Rating(enum.StrEnum):
    satisfied = "satisfied"  # 满意
    basic = "basic"  # 基本满意
    unsatisfied = "unsatisfied"  # 不满意 → reopened one level up


class Referral(enum.StrEnum):
    litigation = "litigation"  # 诉讼
    arbitration = "arbitration"  # 仲裁
    administrative = "administrative"  # 行政处理


def handles(person, case) -> bool:
    """A mediator of the handling unit (or above it), or an admin."""
    role = Role(person.role)
    return role == Role.admin or (role == Role.mediator and within(person, case.unit))


def reported(person, case) -> bool:
    return case.citizen_id is not None and case.citizen_id == person.id


S = Status
MEDIATOR = {Role.mediator, Role.admin}
FLOW = Workflow("disputes", Status, [
    Transition(Action.accept, {S.new, S.transferred, S.escalated}, S.accepted, MEDIATOR, handles),
    Transition(Action.transfer, {S.new, S.accepted, S.transferred, S.escalated}, S.transferred, MEDIATOR, handles),
    Transition(Action.escalate, {S.new, S.accepted, S.mediating, S.transferred, S.escalated}, S.escalated,
               MEDIATOR, handles),
    Transition(Action.note, set(OPEN_STATUSES) | {S.resolved, S.failed}, None, MEDIATOR, handles),
    Transition(Action.schedule, {S.accepted, S.mediating}, S.mediating, MEDIATOR, handles),
    Transition(Action.succeed, {S.accepted, S.mediating}, S.resolved, MEDIATOR, handles),
    Transition(Action.fail, {S.accepted, S.mediating}, S.failed, MEDIATOR, handles),
    Transition(Action.close, {S.resolved, S.failed}, None, MEDIATOR, handles),
    Transition(Action.rate, {S.resolved, S.failed}, S.visited, (), reported),
    Transition(Action.reopen, {S.resolved, S.failed}, S.escalated),  # system
    Transition(Action.archive, {S.visited}, S.archived),  # system
    Transition(Action.overdue, set(OPEN_STATUSES), None),  # system
    Transition(Action.assign, set(OPEN_STATUSES), None, MEDIATOR, handles),
    Transition(Action.reply, set(OPEN_STATUSES) | {S.resolved, S.failed}, None, MEDIATOR, handles),
])
BUTTONS = (Action.accept, Action.transfer, Action.escalate, Action.note, Action.schedule, Action.succeed,
           Action.fail, Action.close)  # what a case card offers, in this order
NOT_ALLOWED = {Action.rate: "disputes.err_not_yours"}  # else disputes.err_not_your_unit


def available_actions(person, case) -> list[Action]:
    """The card's buttons for ``person`` now (nothing for someone who may not act); a case is
    closed once (its rating follows)."""
    allowed = set(FLOW.available(person, case))
    if case.closed_at is not None:
        allowed.discard(Action.close)
    return [a for a in BUTTONS if a in allowed]


def _permits(t: Transition, person, case) -> bool:
    role = Role(person.role)
    return (not t.roles or role in t.roles) and (t.guard is None or bool(t.guard(person, case)))


def check(person, case, action: Action) -> Transition:
    """The transition ``person`` (None: the system) takes with ``action``. Who may act is asked
    first (403 whatever the status), then the status (409: a stale button)."""
    rows = [t for t in FLOW.transitions if t.action == action]
    if person is not None and not any(_permits(t, person, case) for t in rows):
        raise Forbidden(NOT_ALLOWED.get(action, "disputes.err_not_your_unit"))
    status = FLOW.status(case)
    for t in rows:
        if status in t.sources and (person is None or _permits(t, person, case)):
            return t
    raise Conflict("disputes.err_bad_state", number=case.number, status=status.value)
