"""Calendar dates as people type them: 2026-11-27, 2026/11/27, 2026.11.27, 2026年11月27日.

One reader for every slice (a supervision reply date, a mediation session, when a missing person
was last seen): each slice adds what follows the date (a time, a place) and its own message."""
from __future__ import annotations

import re
from datetime import date

_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?:\s*日)?")


def find_date(text: str | None, *, at_start: bool = False) -> tuple[date, int, int] | None:
    """The first date written in ``text`` (or only one at its start, after blanks):
    ``(date, start, end)`` with the span it takes in ``text``; None when there is none.
    An impossible date (2026-02-30) raises ``ValueError``."""
    s = text or ""
    m = _YMD.match(s, len(s) - len(s.lstrip())) if at_start else _YMD.search(s)
    if m is None:
        return None
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3))), m.start(), m.end()


def parse_date(text: str | None) -> date | None:
    """``text`` is a date and nothing else (blanks aside): the date, or None.
    An impossible date raises ``ValueError``."""
    s = (text or "").strip()
    found = find_date(s, at_start=True)
    if found is None or found[2] != len(s):
        return None
    return found[0]
