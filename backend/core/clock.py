"""The one place Hehe asks what time it is.

Everything reads time through :func:`now`, so tests can move the clock with
``time_machine`` and the scheduler, deadlines and quiet hours all follow.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    """Aware UTC now."""
    return datetime.now(timezone.utc)


def local_now() -> datetime:
    """Aware Asia/Shanghai now (what users see)."""
    return now().astimezone(TZ)


def to_local(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(TZ)


def fmt_local(dt: datetime | None) -> str:
    return to_local(dt).strftime("%Y-%m-%d %H:%M") if dt else "-"
