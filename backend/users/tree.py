"""The jurisdiction tree in memory, read-only (台州市 → counties → townships → villages → grids).

Intake keyboards, routing, case numbers and summaries read names, levels and paths of
jurisdictions many times per report; each read used to be a query. The tree changes rarely
(seeding at start, ``hehe jurisdictions import``, demo seeding), so each process keeps one
snapshot per database engine: plain immutable :class:`Node` records, loaded with one query,
with O(1) ``get`` / ``children`` / ``ancestors`` / ``county_of``. The rules that use it are in
``backend.users.service`` (``jurisdiction``, ``children``, ``ancestors``, ``county_of``…); code
that needs an ORM ``Jurisdiction`` (relationships, writes) gets one with
``service.jurisdiction_row``.

Freshness rules (one place):

* Any ``Jurisdiction`` row flushed by *this* process drops the snapshot at once (the
  ``after_flush`` hook of ``backend.users.cache``), and again when that transaction ends: a
  snapshot read by another session in between could not see the uncommitted rows.
* A snapshot whose load started before such a change is not kept.
* An id the snapshot does not know but the database does (just imported by another process)
  reloads it at once; changes made by *another* process are otherwise seen after at most
  ``ttl`` seconds (``HEHE_JURISDICTION_CACHE_SECONDS``; 0 reads the tree at every lookup).

Staleness never widens access: jurisdiction checks compare materialized paths, and a node's
path is fixed when it is created.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.users.cache import forget_on_flush
from backend.users.models import Jurisdiction, Level

_CHANGED = "hehe.jurisdictions_changed"  # session.info flag: this transaction wrote jurisdictions


@dataclass(frozen=True, slots=True)
class Node:
    """One jurisdiction, as read from the ``jurisdictions`` table."""

    id: int
    name: str
    level: str
    parent_id: int | None
    path: str  # "/1/3/17/"
    code: str | None
    lat: float | None
    lon: float | None

    def contains(self, other: "Place") -> bool:
        return other.path.startswith(self.path)


Place = Node | Jurisdiction  # a place from the tree, or an ORM row (both have id, name, level, path…)

_COLUMNS = (Jurisdiction.id, Jurisdiction.name, Jurisdiction.level, Jurisdiction.parent_id, Jurisdiction.path,
            Jurisdiction.code, Jurisdiction.lat, Jurisdiction.lon)


def _path_ids(path: str) -> list[int]:
    return [int(x) for x in path.strip("/").split("/") if x]


class Tree:
    """An immutable snapshot of the whole tree; every lookup is a dictionary access."""

    def __init__(self, nodes: Iterable[Node]):
        self.nodes: tuple[Node, ...] = tuple(sorted(nodes, key=lambda n: n.id))
        self._by_id = {n.id: n for n in self.nodes}
        kids: dict[int, list[Node]] = {}
        for n in self.nodes:
            if n.parent_id is not None:
                kids.setdefault(n.parent_id, []).append(n)
        self._children = {k: tuple(v) for k, v in kids.items()}
        self._counties = tuple(n for n in self.nodes if n.level == Level.county.value)
        self._chains = {n.id: self._chain(n.path) for n in self.nodes}

    def _chain(self, path: str) -> tuple[Node, ...]:
        return tuple(self._by_id[i] for i in _path_ids(path) if i in self._by_id)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, jid: object) -> bool:
        return jid in self._by_id

    def get(self, jid: int | None) -> Node | None:
        return self._by_id.get(jid) if jid is not None else None

    def children(self, parent_id: int | None) -> tuple[Node, ...]:
        """Children by id; no parent (None or 0) → the county-level divisions."""
        return self._children.get(parent_id, ()) if parent_id else self._counties

    def ancestors(self, j: Place) -> tuple[Node, ...]:
        """From the city down to ``j`` itself (a Node or an ORM Jurisdiction), by its path."""
        chain = self._chains.get(j.id)
        return chain if chain is not None and self._by_id[j.id].path == j.path else self._chain(j.path)

    def county_of(self, j: Place) -> Node | None:
        return next((a for a in self.ancestors(j) if a.level == Level.county.value), None)


class TreeCache:
    """The snapshot of one database, reloaded when stale (see the module's freshness rules)."""

    def __init__(self, ttl: float = 60.0, clock=time.monotonic):
        self.ttl = float(ttl)
        self.clock = clock
        self._tree: Tree | None = None
        self._loaded_at = 0.0
        self._generation = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._tree = None

    async def get(self, session: AsyncSession, need: int | None = None) -> Tree:
        """The current tree; with ``need``, one that knows that id if the database does."""
        tree = self._tree
        if tree is None or self.clock() - self._loaded_at >= self.ttl:
            tree = await self._load(session)
        elif need is not None and need not in tree and await session.scalar(
                select(Jurisdiction.id).where(Jurisdiction.id == need)) is not None:
            tree = await self._load(session)
        return tree

    async def _load(self, session: AsyncSession) -> Tree:
        generation = self._generation
        tree = Tree(Node(*row) for row in (await session.execute(select(*_COLUMNS))).all())
        if generation == self._generation and self.ttl > 0:
            self._tree, self._loaded_at = tree, self.clock()
        return tree


_BY_ENGINE: "weakref.WeakKeyDictionary[Engine, TreeCache]" = weakref.WeakKeyDictionary()


def cache_for(engine: Engine, ttl: float | None = None) -> TreeCache:
    """The tree cache of one database engine, created on first use with ``ttl`` (default: the
    process settings'; ``start_context`` passes the application's own settings)."""
    cache = _BY_ENGINE.get(engine)
    if cache is None:
        cache = _BY_ENGINE[engine] = TreeCache(
            ttl=get_settings().jurisdiction_cache_seconds if ttl is None else ttl)
    elif ttl is not None:
        cache.ttl = float(ttl)
    return cache


async def current(session: AsyncSession, need: int | None = None) -> Tree:
    """The tree of the database ``session`` works on."""
    return await cache_for(session.sync_session.get_bind()).get(session, need)


def invalidate_all() -> None:
    for cache in list(_BY_ENGINE.values()):
        cache.invalidate()


def _jurisdiction_flushed(session: Session, _obj: Jurisdiction) -> None:
    session.info[_CHANGED] = True
    invalidate_all()


forget_on_flush(Jurisdiction, _jurisdiction_flushed)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None and session.info.pop(_CHANGED, False):
        invalidate_all()
