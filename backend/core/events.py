"""Domain events: a service says what happened without knowing who cares.

A service publishes inside its own transaction::

    await publish(session, RecordChanged("dispute", d.id))

and the composition root (``backend/context.py``: :func:`backend.context.wire_events`)
subscribes the handlers — the knowledge base's indexer, for instance. A handler runs when the
event is published, with the publisher's session: what it writes commits or rolls back together
with the change itself (the knowledge base writes a queue row that its worker drains after the
commit, so a crash between the two loses nothing). Core knows no subscriber, the services know
none either; nothing subscribed means nothing happens.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

E = TypeVar("E")
Handler = Callable[[AsyncSession, Any], Awaitable[None]]

_HANDLERS: dict[type, list[Handler]] = {}


@dataclass(frozen=True)
class RecordChanged:
    """A record a reader follows changed: created, moved to another status, edited.
    ``kind`` names the slice's record (``"dispute"``, ``"supervision"``, ``"missing"``)."""

    kind: str
    ref_id: int | str


def subscribe(event_type: type[E], handler: Callable[[AsyncSession, E], Awaitable[None]]) -> None:
    """Run ``handler(session, event)`` for every ``event_type`` published (once per handler:
    subscribing the same handler again changes nothing)."""
    handlers = _HANDLERS.setdefault(event_type, [])
    if handler not in handlers:
        handlers.append(handler)


def unsubscribe(event_type: type, handler: Handler) -> None:
    handlers = _HANDLERS.get(event_type, [])
    if handler in handlers:
        handlers.remove(handler)


async def publish(session: AsyncSession, event: object) -> None:
    """Hand ``event`` to every handler subscribed to its type, in the caller's transaction."""
    for handler in tuple(_HANDLERS.get(type(event), ())):
        await handler(session, event)
