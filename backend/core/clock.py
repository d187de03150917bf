"""The one place Hehe asks what time it is, and in which zone its users live.

Everything reads time through :func:`now`, so tests can move the clock with
``time_machine`` and the scheduler, deadlines and quiet hours all follow.

:data:`TZ` is the local zone: ``HEHE_TIMEZONE`` (default Asia/Shanghai), read from the
environment at import and set from the settings at start-up (:func:`set_timezone`). It is one
object for the life of the process, so modules may import it by name.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"


class LocalZone(tzinfo):
    """A :class:`datetime.tzinfo` that follows the configured IANA zone."""

    def __init__(self, key: str) -> None:
        self.zone = ZoneInfo(key)

    @property
    def key(self) -> str:
        return self.zone.key

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self.zone.utcoffset(dt)

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self.zone.dst(dt)

    def tzname(self, dt: datetime | None) -> str | None:
        return self.zone.tzname(dt)

    def fromutc(self, dt: datetime) -> datetime:
        return self.zone.fromutc(dt.replace(tzinfo=self.zone)).replace(tzinfo=self)

    def __reduce__(self) -> tuple:  # pickles (e.g. into a job store) as "the local zone"
        return (_local_zone, ())

    def __repr__(self) -> str:
        return f"LocalZone({self.key!r})"


TZ = LocalZone(os.environ.get("HEHE_TIMEZONE") or DEFAULT_TIMEZONE)


def _local_zone() -> LocalZone:
    return TZ


def set_timezone(key: str) -> None:
    """Make ``key`` (an IANA name such as ``Asia/Shanghai``) the local zone everywhere."""
    TZ.zone = ZoneInfo(key)


def now() -> datetime:
    """Aware UTC now."""
    return datetime.now(timezone.utc)


def local_now() -> datetime:
    """Aware local now (what users see)."""
    return now().astimezone(TZ)


def to_local(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(TZ)


def fmt_local(dt: datetime | None) -> str:
    return to_local(dt).strftime("%Y-%m-%d %H:%M") if dt else "-"
