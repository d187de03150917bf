"""The audit of reads: every time somebody opens personal data, one row says who (name, role,
jurisdiction at that moment), what (kind and record), when and from which channel.

Writes go to the existing ``audit_log`` table in the caller's transaction, so a read that fails
(and rolls back) is not recorded as done, and a recorded read is never lost by a later commit.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.policy import Kind, person_of
from backend.users.models import AuditLog, User

#: the channels a read can come from
CHANNELS = ("api", "chat", "ask", "card", "export", "file", "faces", "cli", "web", "open311")


def actor_of(person: Any) -> str:
    """The stored actor key: "user:<id>" for a person, the string itself for "cli"/"system"."""
    if isinstance(person, str):
        return person
    pid = getattr(person, "id", None)
    return f"user:{pid}" if pid is not None else "system"


def who(person: Any) -> dict:
    """Readable facts about the actor at the moment of the read (roles and places change later)."""
    if isinstance(person, str) or person is None:
        return {}
    j = getattr(person, "jurisdiction", None)
    role = getattr(person, "role", None)
    return {"actor_name": getattr(person, "name", None) or None,
            "actor_role": getattr(role, "value", role),
            "actor_jurisdiction": getattr(j, "name", None) if j is not None else None}


async def audit_read(session: AsyncSession, person: Any, kind: Kind | str, record_id: Any, *,
                     channel: str, action: str = "read", detail: dict | None = None) -> None:
    """Record that ``person`` read record ``record_id`` of ``kind`` through ``channel``.

    ``action`` names what was read when it is more than the record card: "download" (a file),
    "export", "search" (a face search), "question" (a KB question), "queue" (a review queue).
    """
    kind_v = getattr(kind, "value", kind)
    body = {"channel": channel, "kind": kind_v, **who(person), **(detail or {})}
    session.add(AuditLog(actor=actor_of(person), action=f"{kind_v}.{action}",
                         subject=f"{kind_v}:{record_id}" if record_id is not None else None, detail=body))


async def search(session: AsyncSession, *, actor: str | None = None, action: str | None = None,
                 target: str | None = None, since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, offset: int = 0) -> list[AuditLog]:
    """Audit rows, newest first. ``actor``: "user:5", a user id, or part of a person's name;
    ``action``: exact ("dispute.read") or a prefix ending in "." ("dispute."); ``target``: the
    subject ("dispute:12") or a prefix ("dispute:"); ``since``/``until``: inclusive/exclusive."""
    q = select(AuditLog)
    if actor:
        a = actor.strip()
        if a.isdigit():
            a = f"user:{a}"
        if ":" in a or a in ("cli", "system"):
            q = q.where(AuditLog.actor == a)
        else:
            ids = [f"user:{i}" for i in await session.scalars(select(User.id).where(User.name.contains(a)))]
            q = q.where(AuditLog.actor.in_(ids or ["-"]))
    if action:
        q = q.where(AuditLog.action.startswith(action) if action.endswith(".") else AuditLog.action == action)
    if target:
        t = target.strip()
        q = q.where(or_(AuditLog.subject == t, AuditLog.subject.startswith(t if t.endswith(":") else t + "#")))
    if since is not None:
        q = q.where(AuditLog.at >= since)
    if until is not None:
        q = q.where(AuditLog.at < until)
    return list(await session.scalars(q.order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit).offset(offset)))


async def actors(session: AsyncSession, rows: list[AuditLog]) -> dict[str, dict]:
    """Readable actors for audit rows: "user:5" → {name, role, jurisdiction} (the current
    account; a read row also keeps the actor's role and place at the time in its detail)."""
    ids = {int(r.actor[5:]) for r in rows if r.actor.startswith("user:") and r.actor[5:].isdigit()}
    out: dict[str, dict] = {}
    if ids:
        for u in await session.scalars(select(User).where(User.id.in_(ids))):
            p = person_of(u)
            out[f"user:{u.id}"] = {"name": u.name or None, "role": p.role,
                                   "jurisdiction": u.jurisdiction.name if u.jurisdiction else None}
    return out
