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


# ---------------------------------------------------------------- the data file (issue 15, finding 5)
import pytest  # noqa: E402

# A notice in the form the State Council publishes it. TEST DATA: the dates are made up for
# the test (the real 2027 notice is imported by an admin with `hehe holidays import`).
NOTICE_2027 = """国务院办公厅关于2027年部分节假日安排的通知
经国务院批准，现将2027年元旦、春节、清明节、劳动节、端午节、中秋节和国庆节放假调休日期的具体安排通知如下。
一、元旦：1月1日（周五）至3日（周日）放假，共3天。
二、春节：2月5日（农历除夕、周五）至12日（农历正月初七、周五）放假调休，共8天。2月13日（周六）上班。
三、清明节：4月3日（周六）至5日（周一）放假，共3天。
"""


@pytest.fixture
def holidays_file(tmp_path, monkeypatch):
    path = tmp_path / "holidays.toml"
    monkeypatch.setenv("HEHE_HOLIDAYS_FILE", str(path))
    workdays.reload()
    yield path
    monkeypatch.delenv("HEHE_HOLIDAYS_FILE")
    workdays.reload()


def test_the_shipped_arrangement_agrees_with_the_library_for_2026():
    import chinese_calendar

    day = date(2026, 1, 1)
    while day.year == 2026:
        assert workdays.is_workday(day) == chinese_calendar.is_workday(day), day
        day = date.fromordinal(day.toordinal() + 1)


def test_without_a_notice_the_statutory_spring_festival_days_still_rest(holidays_file):
    # 除夕 2027-02-05 (Fri) … 初三 02-08 (Mon) are statutory: the next working day is Tue 02-09
    assert workdays.add_workdays(date(2027, 2, 4), 1) == date(2027, 2, 9)


def test_an_imported_notice_moves_a_spring_festival_deadline_past_the_holiday(holidays_file, tmp_path):
    notice = tmp_path / "notice.txt"
    notice.write_text(NOTICE_2027, encoding="utf-8")
    added = workdays.import_arrangement(notice)
    assert set(added) == {2027} and holidays_file.exists()
    at = datetime(2027, 2, 10, 2, 0, tzinfo=timezone.utc)  # Wed 10:00, in the Spring Festival week
    assert workdays.workday_deadline(at, 1).date() == date(2027, 2, 13)  # the 调休 Saturday
    assert not workdays.is_workday(date(2027, 4, 5)) and workdays.is_workday(date(2027, 2, 13))


def test_from_december_next_years_missing_arrangement_is_named(holidays_file, tmp_path):
    assert workdays.missing_next_year(date(2026, 11, 30)) is None
    assert workdays.missing_next_year(date(2026, 12, 1)) == 2027
    assert "2027" in workdays.readiness_warnings(date(2026, 12, 1))[0]
    (tmp_path / "n.txt").write_text(NOTICE_2027, encoding="utf-8")
    workdays.import_arrangement(tmp_path / "n.txt")
    assert workdays.missing_next_year(date(2026, 12, 1)) is None


def test_hehe_holidays_import_and_show(holidays_file, tmp_path):
    from typer.testing import CliRunner

    from backend.cli import app

    (tmp_path / "n.txt").write_text(NOTICE_2027, encoding="utf-8")
    r = CliRunner().invoke(app, ["holidays", "import", str(tmp_path / "n.txt")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["holidays", "show", "2027"])
    assert r.exit_code == 0 and "2027-02-13" in r.output and "2027-02-10" in r.output
    r = CliRunner().invoke(app, ["holidays", "import", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2
