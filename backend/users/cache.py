"""A process-local cache of the people the bot talks to.

Every update needs the sender's user row (role, jurisdiction, language). Reading it from the
database costs more than everything else ``/start`` does, so the bot keeps recently seen users
in memory and attaches them to the update's session without a query (:meth:`UserCache.attach`).

Freshness rules (one place):

* Any change to a ``User`` flushed by *this* process (role granted through the API, ``/join``,
  ``/lang``, demo role switch…) drops that person from the cache at once, through a
  SQLAlchemy ``after_flush`` hook on every session.
* An update that fails (its transaction rolled back) drops its sender: a rollback leaves
  the objects it touched expired.
* A result read before such a change is never stored after it (a per-person version check),
  so a slow update cannot put back a role that was just revoked.
* Changes made by *another* process (a second ``hehe serve``, a maintenance script) are seen
  after at most ``ttl`` seconds (``HEHE_USER_CACHE_SECONDS``; 0 disables the cache).
"""
from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any, Callable

from sqlalchemy import event, inspect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from backend.users.models import User


class UserCache:
    def __init__(self, ttl: float = 30.0, capacity: int = 50_000, clock=time.monotonic):
        self.ttl = float(ttl)
        self.clock = clock
        self.capacity = capacity
        self._items: OrderedDict[int, tuple[float, User]] = OrderedDict()
        self._versions: dict[int, int] = {}
        _CACHES.add(self)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def version(self, telegram_id: int) -> int:
        return self._versions.get(telegram_id, 0)

    def get(self, telegram_id: int) -> User | None:
        hit = self._items.get(telegram_id)
        if hit is None:
            return None
        stored_at, user = hit
        if self.clock() - stored_at > self.ttl:
            del self._items[telegram_id]
            return None
        return user

    def attach(self, session: AsyncSession, telegram_id: int) -> User | None:
        """The cached person, attached to ``session`` without a query (None: not cached).
        The cached object itself joins the session (no copy); if it is busy in another
        session (two updates of one person in flight), a copy is merged in instead."""
        user = self.get(telegram_id)
        if user is None:
            return None
        if inspect(user).detached:
            try:
                session.add(user)
                return user
            except InvalidRequestError:
                pass
        return session.sync_session.merge(user, load=False)

    def settle(self, telegram_id: int, user: User, version: int) -> None:
        """After an update committed: remember ``user`` for next time if it is complete and
        unchanged since ``version`` was read; otherwise forget the person (a handler that
        rolled back leaves the object expired)."""
        state = inspect(user)
        if (not self.enabled or state.expired_attributes or not state.detached
                or self.version(telegram_id) != version):
            self.invalidate(telegram_id)
            return
        self._items[telegram_id] = (self.clock(), user)
        self._items.move_to_end(telegram_id)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def invalidate(self, telegram_id: int) -> None:
        self._versions[telegram_id] = self._versions.get(telegram_id, 0) + 1
        self._items.pop(telegram_id, None)


_CACHES: "weakref.WeakSet[UserCache]" = weakref.WeakSet()
_FORGET: list[tuple[type, Callable[[Session, Any], None]]] = []


def forget_on_flush(model: type, forget: Callable[[Session, Any], None]) -> None:
    """Call ``forget(session, obj)`` for every ``model`` object (new, changed or deleted) that a
    session of this process flushes: how process-local caches (these users, the jurisdiction
    tree in ``backend.users.tree``) learn about this process's own writes."""
    _FORGET.append((model, forget))


@event.listens_for(Session, "after_flush")
def _forget_changed(session: Session, _flush_context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        for model, forget in _FORGET:
            if isinstance(obj, model):
                forget(session, obj)


def _forget_user(_session: Session, user: User) -> None:
    if user.telegram_id is not None:
        for cache in list(_CACHES):
            cache.invalidate(user.telegram_id)


forget_on_flush(User, _forget_user)
