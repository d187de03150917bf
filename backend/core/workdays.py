"""Working days in mainland China: public holidays and make-up working days come from
the maintained ``chinese-calendar`` package (no hand-kept list). For a year the package
does not know yet, fall back to weekends only and log a warning once per year."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

import chinese_calendar

from backend.core.clock import TZ, to_local

log = logging.getLogger("hehe.workdays")
_warned: set[int] = set()


def is_workday(d: date) -> bool:
    try:
        return chinese_calendar.is_workday(d)
    except NotImplementedError:
        if d.year not in _warned:
            _warned.add(d.year)
            log.warning("chinese-calendar has no holiday data for %s: counting weekends only; "
                        "upgrade the chinese-calendar package", d.year)
        return d.weekday() < 5


def add_workdays(start: date, n: int) -> date:
    """The n-th working day after ``start`` (n=1 → next working day)."""
    d = start
    while n > 0:
        d += timedelta(days=1)
        if is_workday(d):
            n -= 1
    return d


def workday_deadline(at: datetime, n: int, end_of_day: time = time(17, 30)) -> datetime:
    """Deadline ``n`` working days after ``at``, at close of business local time (aware)."""
    local = to_local(at)
    return datetime.combine(add_workdays(local.date(), n), end_of_day, tzinfo=TZ)


def next_workday_on_or_after(d: date) -> date:
    while not is_workday(d):
        d += timedelta(days=1)
    return d


def calendar_deadline(at: datetime, days: int, end_of_day: time = time(17, 30)) -> datetime:
    """``days`` calendar days later; if that falls on a rest day, the next working day."""
    local = to_local(at)
    return datetime.combine(next_workday_on_or_after(local.date() + timedelta(days=days)), end_of_day, tzinfo=TZ)
