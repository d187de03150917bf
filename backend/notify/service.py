"""Enqueue notifications. Services call :func:`notify` inside their own transaction."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import TZ, now, to_local
from backend.core.config import get_settings
from backend.core.i18n import gettext
from backend.notify.models import Outbox
from backend.users.models import User

Buttons = list[list[tuple[str, str]]]


def after_quiet_hours(at: datetime, start: int | None = None, end: int | None = None) -> datetime:
    """If ``at`` falls in quiet hours (22:00–07:00 local), move it to the next 07:00."""
    s = get_settings()
    start = s.quiet_hours_start if start is None else start
    end = s.quiet_hours_end if end is None else end
    local = to_local(at)
    h = local.hour
    in_quiet = (h >= start or h < end) if start > end else (start <= h < end)
    if not in_quiet:
        return at
    day = local.date() if h < end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(end, 0), tzinfo=TZ)


async def notify(
    session: AsyncSession,
    user: User | int,
    key: str,
    *,
    buttons: Buttons | None = None,
    photo_path: str | None = None,
    dedupe_key: str | None = None,
    urgent: bool = False,
    at: datetime | None = None,
    **params,
) -> Outbox | None:
    """Queue a message for ``user``, rendered in the user's language.

    ``key`` and button labels are i18n keys (plain text passes through unchanged).
    ``dedupe_key`` makes the call idempotent: a second call with the same key is a no-op.
    Quiet hours hold non-urgent messages until morning.
    """
    person = await session.get(User, user) if isinstance(user, int) else user
    if person is None:
        return None
    if dedupe_key:
        exists = await session.scalar(select(Outbox.id).where(Outbox.dedupe_key == dedupe_key))
        if exists:
            return None
    lang = person.language or "zh"
    text = gettext(lang, key, **params)
    rendered = (
        [[[gettext(lang, label), data] for label, data in row] for row in buttons] if buttons else None
    )
    when = at or now()
    if not urgent:
        when = after_quiet_hours(when)
    msg = Outbox(
        user_id=person.id, dedupe_key=dedupe_key, text=text, buttons=rendered,
        photo_path=photo_path, urgent=urgent, not_before=when,
    )
    session.add(msg)
    await session.flush()
    return msg


# ------------------------------------------------------------------ dead letters (admins, CLI)
async def dead_letters(session: AsyncSession, limit: int = 100) -> list[tuple[Outbox, User]]:
    """Messages given up on, newest first, with their recipient."""
    rows = await session.execute(
        select(Outbox, User).join(User, User.id == Outbox.user_id)
        .where(Outbox.dead_at.is_not(None)).order_by(Outbox.dead_at.desc(), Outbox.id.desc()).limit(limit))
    return [(m, u) for m, u in rows.all()]


async def pending_count(session: AsyncSession) -> int:
    from sqlalchemy import func

    return int(await session.scalar(
        select(func.count(Outbox.id)).where(Outbox.sent_at.is_(None), Outbox.dead_at.is_(None))) or 0)


async def retry(session: AsyncSession, ids: list[int] | None = None) -> int:
    """Put dead letters (all, or ``ids``) back in the queue with fresh attempts; a person marked
    unreachable on that channel is given another chance too."""
    from sqlalchemy import delete

    from backend.notify.models import Unreachable

    q = select(Outbox).where(Outbox.dead_at.is_not(None))
    if ids:
        q = q.where(Outbox.id.in_(ids))
    rows = (await session.scalars(q)).all()
    for m in rows:
        m.dead_at = None
        m.attempts = 0
        m.claimed_until = None
        m.not_before = now()
        await session.execute(delete(Unreachable).where(Unreachable.user_id == m.user_id))
    return len(rows)


async def mark_reachable(session: AsyncSession, user_id: int, channel: str) -> bool:
    """The person wrote to us again on ``channel`` (e.g. pressed Restart after unblocking the
    bot): deliver to them there again."""
    from backend.notify.models import Unreachable

    row = await session.get(Unreachable, (user_id, channel))
    if row is None:
        return False
    await session.delete(row)
    return True
