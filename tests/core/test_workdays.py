import logging
from datetime import date, datetime, timezone

from backend.core import workdays


def test_national_day_holiday_is_skipped():
    # 2026-09-30 (Wed) + 1 working day: Oct 1–7 are holidays → Oct 8 (Thursday)
    assert workdays.add_workdays(date(2026, 9, 30), 1) == date(2026, 10, 8)


def test_make_up_working_day_counts():
    # 2026-10-10 (Saturday) is a make-up working day for the National Day holiday
    assert workdays.is_workday(date(2026, 10, 10))
    assert not workdays.is_workday(date(2026, 10, 11))


def test_calendar_deadline_rolls_to_next_workday():
    at = datetime(2026, 9, 20, 2, 0, tzinfo=timezone.utc)  # 10:00 local, Sept 20
    # 11 days later = Oct 1 (holiday) → Oct 8
    assert workdays.calendar_deadline(at, 11).date() == date(2026, 10, 8)


def test_unknown_year_degrades_to_weekends_with_warning(caplog):
    caplog.set_level(logging.WARNING)
    assert workdays.is_workday(date(2031, 1, 6))  # a Monday
    assert not workdays.is_workday(date(2031, 1, 4))  # a Saturday
    assert workdays.add_workdays(date(2031, 1, 3), 1) == date(2031, 1, 6)
    assert "2031" in caplog.text
