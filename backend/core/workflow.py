"""One workflow table per capability, the same shape in every slice.

A capability declares its statuses and actions as ``Enum``s and its transitions as a tuple of
:class:`Transition` rows: *who* (roles, plus an optional predicate on the person and the item)
may take *which action* from *which statuses*, and *where* it leads. The service enforces the
table through :meth:`Workflow.check`; chat buttons, the REST API and the console all ask
:meth:`Workflow.available` ("what may this person do now"), so no door offers an action that
the service would refuse.

Example::

    class Status(StrEnum): new = "new"; accepted = "accepted"
    class Action(StrEnum): accept = "accept"
    FLOW = Workflow("disputes", Status, [
        Transition(Action.accept, {Status.new}, Status.accepted, roles={Role.mediator},
                   guard=lambda person, case: case.mediator_id == person.id),
    ], status_of=lambda case: case.status)
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from backend.core.errors import Conflict, Forbidden

Guard = Callable[[Any, Any], bool]  # (person, item) -> allowed?
S = TypeVar("S", bound=enum.Enum)  # a capability's statuses
A = TypeVar("A", bound=enum.Enum)  # its actions


@dataclass(frozen=True)
class Transition(Generic[A, S]):
    action: A
    sources: frozenset[S]
    target: S | None  # None: the status stays (a note, a reminder, a rating …)
    roles: frozenset = field(default_factory=frozenset)  # empty: any role
    guard: Guard | None = None

    def __init__(self, action: A, sources: Iterable[S], target: S | None, roles: Iterable = (),
                 guard: Guard | None = None):
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "sources", frozenset(sources))
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "roles", frozenset(roles))
        object.__setattr__(self, "guard", guard)

    def allows(self, person: Any, item: Any, status: Any) -> bool:
        if status not in self.sources:
            return False
        if self.roles and _role(person) not in self.roles:
            return False
        return self.guard is None or bool(self.guard(person, item))


def _role(person: Any) -> Any:
    from backend.users.models import Role

    role = getattr(person, "role", None)
    return Role(role) if isinstance(role, str) else role


class Workflow(Generic[S, A]):
    """The table of one capability. ``status_of(item)`` reads the item's current status."""

    def __init__(self, name: str, statuses: type[S], transitions: Iterable[Transition[A, S]],
                 status_of: Callable[[Any], Any] = lambda item: item.status):
        self.name = name
        self.statuses = statuses
        self.transitions = tuple(transitions)
        self._status_of = status_of
        for t in self.transitions:
            unknown = {s for s in t.sources | ({t.target} if t.target is not None else set())
                       if not isinstance(s, statuses)}
            if unknown:
                raise ValueError(f"{name}: {t.action} names statuses outside {statuses.__name__}: {unknown}")

    def status(self, item: Any) -> S:
        return self.statuses(self._status_of(item))

    def available(self, person: Any, item: Any) -> list[A]:
        """The actions ``person`` may take on ``item`` now, in table order, each once."""
        st = self.status(item)
        seen: dict[A, None] = {}
        for t in self.transitions:
            if t.action not in seen and t.allows(person, item, st):
                seen[t.action] = None
        return list(seen)

    def check(self, person: Any, item: Any, action: A) -> Transition[A, S]:
        """The transition ``person`` takes with ``action`` on ``item``; raises
        :class:`Conflict` when the item's status does not allow it (a stale button) and
        :class:`Forbidden` when the status does but this person may not."""
        st = self.status(item)
        rows = [t for t in self.transitions if t.action == action]
        in_status = [t for t in rows if st in t.sources]
        if not in_status:
            raise Conflict("common.stale_button")
        for t in in_status:
            if t.allows(person, item, st):
                return t
        raise Forbidden("common.err_forbidden")

    def target(self, item: Any, action: A) -> S | None:
        """Where ``action`` leads from the item's status (for jobs acting as the system)."""
        st = self.status(item)
        for t in self.transitions:
            if t.action == action and st in t.sources:
                return t.target
        raise Conflict("common.stale_button")
