"""The one access policy: who may do what with which kind of record, where.

One table, ``role × kind of record × action → grants``, answers every "may this person see or do
this" in the project: services, REST routes, chat buttons, ``/ask`` retrieval, citation cards,
exports, files and statistics all ask :func:`may` / :func:`require`, so no door shows more than
another. docs/access-policy.md prints the table (generated from :data:`TABLE`).

The core knows no slice: a slice describes one of its records with :class:`Facts` (who owns it,
which staff are assigned, which people are parties, the jurisdiction paths of its places), and the
policy decides from those facts alone.

Grants (a relation between the person and the record's facts):

- ``ANYONE``      — every active person of the role.
- ``OWNER``       — the record's citizen / reporter / proposer (``Facts.owners``).
- ``STAFF``       — staff assigned to it by name (``Facts.staff``: the mediator, the handler).
- ``PARTY``       — confirmed participants (``Facts.parties``: co-signing deputies, invitees).
- ``within(p)``   — the record's place ``p`` lies inside the person's jurisdiction.
- ``at(p)``       — the person's jurisdiction *is* the record's place ``p`` (e.g. the procuratorate).

The jurisdiction rule: a person without a jurisdiction is inside nothing, so staff without a
jurisdiction get no place-bound record and no statistics at all. City-wide access is granted
explicitly, by giving the person the city (台州市) as their jurisdiction. Admins pass every rule.
Deactivated people (``active`` false) pass none.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.core.errors import NotFound


class Kind(str, enum.Enum):
    """Kinds of record the policy knows about (one per thing a person can open)."""

    dispute = "dispute"  # 矛盾纠纷 (disputes slice)
    supervision = "supervision"  # 督办事项 (supervision slice)
    missing = "missing"  # a missing- or found-person case (灯塔)
    match = "match"  # a face-match candidate between a missing and a found case
    assist = "assist"  # a cross-region assistance request between officers
    document = "document"  # a public document of the knowledge base (laws, guides)
    stats = "stats"  # aggregate statistics of a place
    audit = "audit"  # the audit log
    user = "user"  # a person's account


class Action(str, enum.Enum):
    read = "read"  # open it — API, chat card, /ask answer, citation card, export, its files
    personal = "personal"  # see its personal data unmasked (names of parties, phones, ID numbers)
    handle = "handle"  # act on it in its workflow as staff (accept, review, reply …)


class Grant:
    """One way of being allowed. Instances are compared by their description."""

    def __init__(self, text: str, test):
        self.text, self._test = text, test

    def __call__(self, person: "Person", facts: "Facts") -> bool:
        return self._test(person, facts)

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        return isinstance(other, Grant) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


ANYONE = Grant("anyone", lambda p, f: True)
OWNER = Grant("owner", lambda p, f: p.id is not None and p.id in f.owners)
STAFF = Grant("assigned staff", lambda p, f: p.id is not None and p.id in f.staff)
PARTY = Grant("party", lambda p, f: p.id is not None and p.id in f.parties)
PUBLIC = Grant("public record", lambda p, f: f.public)


def within(place: str) -> Grant:
    """The record's ``place`` lies inside (or is) the person's jurisdiction."""
    return Grant(f"{place} within jurisdiction",
                 lambda p, f: p.path is not None and any(x.startswith(p.path) for x in f.places.get(place, ())))


def at(place: str) -> Grant:
    """The person's jurisdiction is exactly the record's ``place``."""
    return Grant(f"jurisdiction is {place}",
                 lambda p, f: p.path is not None and p.path in f.places.get(place, ()))


R, P, H = Action.read, Action.personal, Action.handle
CITIZEN, MEDIATOR, DEPUTY, PROCURATOR, OFFICER, OFFICIAL, ADMIN = (
    "citizen", "mediator", "deputy", "procurator", "officer", "official", "admin")
ROLES = (CITIZEN, MEDIATOR, DEPUTY, PROCURATOR, OFFICER, OFFICIAL, ADMIN)
EVERY_ROLE = ROLES

# (roles, kind, actions, grants). Read as: "a <role> may <action> a <kind> if <any grant> holds".
# Admins are not listed: they pass every rule (see ``may``). Anything not listed is refused.
_RULES: list[tuple[tuple[str, ...], Kind, tuple[Action, ...], tuple[Grant, ...]]] = [
    # 矛盾纠纷: the citizen who reported it; mediators of the handling unit (and the one assigned);
    # officials of the place read it with parties' names, phones and IDs masked.
    (EVERY_ROLE, Kind.dispute, (R, P), (OWNER,)),
    ((MEDIATOR,), Kind.dispute, (R, P), (within("unit"), STAFF)),
    ((MEDIATOR,), Kind.dispute, (H,), (within("unit"),)),
    ((OFFICIAL,), Kind.dispute, (R,), (within("place"),)),
    # 督办事项: the proposer and confirmed co-signing deputies; procurators of the procuratorate
    # handling it (and of the item's county); officials of the place, masked.
    ((DEPUTY,), Kind.supervision, (R, P), (OWNER, PARTY)),
    ((PROCURATOR,), Kind.supervision, (R, P), (at("procuratorate"), at("county"))),
    ((PROCURATOR,), Kind.supervision, (H,), (at("procuratorate"),)),
    ((OFFICIAL,), Kind.supervision, (R,), (within("place"),)),
    # 灯塔: the reporter; officers of the case's jurisdiction.
    (EVERY_ROLE, Kind.missing, (R, P), (OWNER,)),
    ((OFFICER,), Kind.missing, (R, P, H), (within("place"),)),
    # face-match candidates: officers where either case lies.
    ((OFFICER,), Kind.match, (R, P, H), (within("place"),)),
    # cross-region requests: the requesting officer, and the officers of the region it was sent to.
    ((OFFICER,), Kind.assist, (R, P), (OWNER, within("place"))),
    ((OFFICER,), Kind.assist, (H,), (within("place"),)),
    # public documents: everyone.
    (EVERY_ROLE, Kind.document, (R,), (PUBLIC,)),
    # statistics of a place: staff of that place (no jurisdiction → none; city-wide by grant).
    ((MEDIATOR, PROCURATOR, OFFICIAL, DEPUTY), Kind.stats, (R,), (within("place"),)),
    # a person's own account.
    (EVERY_ROLE, Kind.user, (R,), (OWNER,)),
]


def _build() -> dict[tuple[str, Kind, Action], tuple[Grant, ...]]:
    table: dict[tuple[str, Kind, Action], tuple[Grant, ...]] = {}
    for roles, kind, actions, grants in _RULES:
        for role in roles:
            for action in actions:
                old = table.get((role, kind, action), ())
                table[(role, kind, action)] = old + tuple(g for g in grants if g not in old)
    return table


#: role × kind × action → the grants that allow it (any one suffices). Admins: everything.
TABLE: Mapping[tuple[str, Kind, Action], tuple[Grant, ...]] = _build()


# ---------------------------------------------------------------- people and facts
@dataclass(frozen=True)
class Person:
    """Who is asking, as the policy sees them."""

    role: str
    id: int | None = None
    path: str | None = None  # materialized path of their jurisdiction, "/1/3/"; None = none
    active: bool = True


def person_of(user: Any) -> Person:
    """A :class:`Person` from a user row (``role``, ``id``, ``jurisdiction.path``, ``active``) or
    anything shaped like one (a Person passes through)."""
    if isinstance(user, Person):
        return user
    j = getattr(user, "jurisdiction", None)
    path = getattr(j, "path", None) if j is not None else getattr(user, "jurisdiction_path", None)
    role = getattr(user, "role", CITIZEN)
    role = getattr(role, "value", role)
    active = getattr(user, "active", True)
    return Person(role=str(role), id=getattr(user, "id", None), path=path or None,
                  active=True if active is None else bool(active))


def _paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if hasattr(value, "path"):
        return (value.path,) if value.path else ()
    out: list[str] = []
    for v in value:
        out.extend(_paths(v))
    return tuple(out)


def _ids(value: Iterable[int | None] | int | None) -> frozenset[int]:
    if value is None:
        return frozenset()
    if isinstance(value, int):
        return frozenset({value})
    return frozenset(int(v) for v in value if v is not None)


@dataclass(frozen=True)
class Facts:
    """What the policy needs to know about one record. Build with :meth:`of`."""

    owners: frozenset[int] = frozenset()
    staff: frozenset[int] = frozenset()
    parties: frozenset[int] = frozenset()
    places: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    public: bool = False

    @classmethod
    def of(cls, *, owners=None, staff=None, parties=None, public: bool = False, **places) -> "Facts":
        """``Facts.of(owners=d.citizen_id, staff=d.mediator_id, unit=d.unit, place=d.place)``.

        Ids may be one id, an iterable of ids, or None. Each named place may be a jurisdiction
        (anything with ``.path``), a path string, an iterable of those, or None.
        """
        return cls(owners=_ids(owners), staff=_ids(staff), parties=_ids(parties), public=bool(public),
                   places={k: _paths(v) for k, v in places.items()})


PUBLIC_FACTS = Facts(public=True)


# ---------------------------------------------------------------- the questions
def grants(role: str, kind: Kind, action: Action) -> tuple[Grant, ...]:
    return TABLE.get((role, Kind(kind), Action(action)), ())


def may(person: Any, action: Action, kind: Kind, facts: Facts | None = None) -> bool:
    """May ``person`` do ``action`` on a record of ``kind`` described by ``facts``?"""
    p = person_of(person)
    if not p.active:
        return False
    if p.role == ADMIN:
        return True
    f = facts if facts is not None else Facts()
    return any(g(p, f) for g in grants(p.role, kind, action))


def require(person: Any, action: Action, kind: Kind, facts: Facts | None = None,
            key: str = "common.err_not_found") -> None:
    """Raise :class:`NotFound` (404) when not allowed: the answer never reveals that the record
    exists. ``key`` lets a slice keep its own "not found" wording."""
    if not may(person, action, kind, facts):
        raise NotFound(key)


def may_ever(person: Any, action: Action, kind: Kind) -> bool:
    """Could ``person`` do ``action`` on *some* record of ``kind``? (menus, role gates)"""
    p = person_of(person)
    return p.active and (p.role == ADMIN or bool(grants(p.role, kind, action)))


def place_scope(person: Any, kind: Kind = Kind.stats) -> str | None:
    """The jurisdiction path whose records/statistics of ``kind`` the person may see as a whole:
    their own jurisdiction if a ``within`` grant applies, "/" for admins, None for nobody (staff
    without a jurisdiction included — city-wide access is only ever granted explicitly)."""
    p = person_of(person)
    if not p.active:
        return None
    if p.role == ADMIN:
        return "/"
    if p.path is None:
        return None
    ok = any(g.text.endswith("within jurisdiction") for g in grants(p.role, kind, Action.read))
    return p.path if ok else None


def describe() -> list[tuple[str, str, str, str]]:
    """The table as rows (role, kind, action, grants) for docs and the admin page."""
    rows = []
    for role in ROLES:
        for kind in Kind:
            for action in Action:
                if role == ADMIN:
                    rows.append((role, kind.value, action.value, "always"))
                    continue
                g = grants(role, kind, action)
                if g:
                    rows.append((role, kind.value, action.value, ", ".join(x.text for x in g)))
    return rows


def places_inside(person: Any, nodes: Iterable[Any]) -> list[int] | None:
    """Ids of the places (of ``nodes``, anything with ``id`` and ``path``) inside the person's
    jurisdiction: a cheap SQL pre-filter for "which records could this person see" (records at
    those places, or naming the person). ``None`` means no pre-filter (admins, and people whose
    jurisdiction holds every place). The decision itself is always :func:`may` on each record."""
    p = person_of(person)
    if p.role == ADMIN:
        return None
    if p.path is None:
        return []
    nodes = list(nodes)
    inside = [n.id for n in nodes if n.path and n.path.startswith(p.path)]
    return None if len(inside) == len(nodes) else inside
