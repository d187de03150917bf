"""Working days in mainland China.

Sources, in order: the official arrangements in a data file (``data/holidays_cn.toml``
shipped with Hehe, plus what an admin imported into ``<data dir>/holidays.toml`` with
``hehe holidays import``), then the ``chinese-calendar`` package, then — for a year neither
knows — the statutory days of that year (if listed) and weekends, with a warning. From
December on, :func:`missing_next_year` names next year while its arrangement is missing, for
the admin notice and ``/readyz``.
"""
from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

import chinese_calendar

from backend.core.clock import TZ, to_local

log = logging.getLogger("hehe.workdays")
SHIPPED = Path(__file__).resolve().parent / "data" / "holidays_cn.toml"
IMPORTED_NAME = "holidays.toml"
_warned: set[int] = set()


@dataclass
class Calendar:
    rest: dict[int, set[date]] = field(default_factory=dict)  # official, by year
    work: dict[int, set[date]] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    statutory: dict[int, set[date]] = field(default_factory=dict)


def _days(items: list[str]) -> set[date]:
    out: set[date] = set()
    for item in items:
        a, _, b = str(item).partition("..")
        start, end = date.fromisoformat(a.strip()), date.fromisoformat((b or a).strip())
        while start <= end:
            out.add(start)
            start += timedelta(days=1)
    return out


def _merge(cal: Calendar, raw: dict) -> None:
    for y, entry in (raw.get("years") or {}).items():
        cal.rest[int(y)] = _days(entry.get("rest", []))
        cal.work[int(y)] = _days(entry.get("workdays", []))
        cal.sources[int(y)] = entry.get("source", "")
    for y, entry in (raw.get("statutory") or {}).items():
        cal.statutory[int(y)] = _days(entry.get("rest", []))


def imported_path() -> Path:
    from backend.core.config import get_settings

    return Path(os.environ.get("HEHE_HOLIDAYS_FILE") or get_settings().data_dir / IMPORTED_NAME)


@lru_cache
def calendar() -> Calendar:
    cal = Calendar()
    for p in (SHIPPED, imported_path()):
        if p.exists():
            with p.open("rb") as fh:
                _merge(cal, tomllib.load(fh))
    return cal


def reload() -> None:
    calendar.cache_clear()


def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
        return True
    except NotImplementedError:
        return False


def known_years() -> list[int]:
    """Years with an official arrangement, from the data file or the library."""
    cal = calendar()
    years = set(cal.rest) | {y for y in range(2004, date.today().year + 3) if _library_knows(y)}
    return sorted(years)


def is_workday(d: date) -> bool:
    cal = calendar()
    if d.year in cal.rest:
        if d in cal.work[d.year]:
            return True
        return d not in cal.rest[d.year] and d.weekday() < 5
    try:
        return chinese_calendar.is_workday(d)
    except NotImplementedError:
        if d.year not in _warned:
            _warned.add(d.year)
            log.warning("no holiday arrangement for %s: counting weekends and the statutory days only; "
                        "import the State Council notice with `hehe holidays import`", d.year)
        return d.weekday() < 5 and d not in cal.statutory.get(d.year, set())


def missing_next_year(today: date | None = None) -> int | None:
    """Next year, from December on, while no official arrangement for it is known."""
    today = today or to_local(datetime.now(TZ)).date()
    nxt = today.year + 1
    if today.month < 12 or nxt in calendar().rest or _library_knows(nxt):
        return None
    return nxt


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


# ---------------------------------------------------------------- importing a notice
_CN_NUM = "一二三四五六七八九十"
_RANGE = re.compile(r"(\d{1,2})月(\d{1,2})日(?:至(?:(\d{1,2})月)?(\d{1,2})日)?")


def parse_notice(text: str, year: int | None = None) -> dict:
    """The State Council notice as published ("二、春节：2月15日（…）至23日（…）放假调休，共9天。
    2月14日（周六）、2月28日（周六）上班。") → ``{"year", "rest", "workdays"}``."""
    m = re.search(r"现将(\d{4})年", text)
    year = year or (int(m.group(1)) if m else None)
    if year is None:
        raise ValueError("the notice names no year (现将YYYY年…); pass --year")
    plain = re.sub(r"[（(][^）)]*[）)]", "", text)  # (农历腊月二十八、周日)
    rest: list[str] = []
    work: list[str] = []
    for item in re.split(r"\n\s*[" + _CN_NUM + r"]+、", "\n" + plain):
        for sentence in re.split(r"[。；;]", item):
            target = rest if "放假" in sentence or "补休" in sentence else work if "上班" in sentence else None
            if target is None:
                continue
            for a_mo, a_d, b_mo, b_d in _RANGE.findall(sentence):
                start = date(year, int(a_mo), int(a_d))
                if b_d and target is rest:
                    end = date(year, int(b_mo or a_mo), int(b_d))
                    target.append(f"{start.isoformat()}..{end.isoformat()}")
                else:
                    target.append(start.isoformat())
    if not rest:
        raise ValueError("no holidays found in the notice")
    return {"year": year, "rest": rest, "workdays": work}


def import_arrangement(path: Path, year: int | None = None, target: Path | None = None) -> dict:
    """Add one year's arrangement (a notice's text, or TOML in the shipped format) to the
    imported file; returns what was added."""
    raw = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".toml":
        data = tomllib.loads(raw)
        entries = {int(y): e for y, e in (data.get("years") or {}).items()}
    else:
        parsed = parse_notice(raw, year)
        first = raw.strip().splitlines()[0][:80] if raw.strip() else ""
        entries = {parsed["year"]: {"rest": parsed["rest"], "workdays": parsed["workdays"],
                                    "source": first}}
    if not entries:
        raise ValueError("no [years.YYYY] arrangement in the file")
    target = target or imported_path()
    existing = tomllib.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    years = {int(y): e for y, e in (existing.get("years") or {}).items()}
    years.update(entries)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_dump(years), encoding="utf-8")
    reload()
    return entries


def _dump(years: dict[int, dict]) -> str:
    def arr(items) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    out = ["# Imported with `hehe holidays import`; read over the shipped data/holidays_cn.toml.", ""]
    for y in sorted(years):
        e = years[y]
        src = str(e.get("source", "")).replace('"', "'")
        out += [f"[years.{y}]", f'source = "{src}"', f"rest = {arr(e.get('rest', []))}",
                f"workdays = {arr(e.get('workdays', []))}", ""]
    return "\n".join(out)


def describe_year(year: int) -> list[str]:
    """Lines for ``hehe holidays show``: where the year comes from, its rest days and 调休 workdays."""
    cal = calendar()
    if year in cal.rest:
        src = cal.sources.get(year) or "data file"
        rest, work = sorted(cal.rest[year]), sorted(cal.work[year])
    elif _library_knows(year):
        src = f"chinese-calendar {getattr(chinese_calendar, '__version__', '')}".strip()
        days = [date(year, 1, 1) + timedelta(days=i) for i in range(366) if (date(year, 1, 1) + timedelta(days=i)).year == year]
        rest = [d for d in days if d.weekday() < 5 and not chinese_calendar.is_workday(d)]
        work = [d for d in days if d.weekday() >= 5 and chinese_calendar.is_workday(d)]
    else:
        stat = sorted(cal.statutory.get(year, set()))
        return [f"{year}: no official arrangement (statutory days only: "
                f"{', '.join(d.isoformat() for d in stat) or '-'}); import the notice with `hehe holidays import`"]
    return [f"{year}: {src}", "rest: " + ", ".join(d.isoformat() for d in rest),
            "workdays: " + (", ".join(d.isoformat() for d in work) or "-")]


def readiness_warnings(today: date | None = None) -> list[str]:
    """What ``/readyz`` reports without failing: next year's arrangement missing (from December)."""
    gap = missing_next_year(today)
    if gap is None:
        return []
    return [f"holidays: no official arrangement for {gap}; deadlines in {gap} count weekends and statutory "
            f"days only until the State Council notice is imported (hehe holidays import)"]
