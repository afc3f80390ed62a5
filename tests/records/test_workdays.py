"""The working-day calendar against the State Council's 2026 schedule, and its arithmetic."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records import workdays
from records.workdays import (
    PUBLICATION_WORKING_DAYS,
    add_working_days,
    deadline_estimated,
    is_working_day,
    schedule_published,
    working_days_between,
)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def test_national_day_2026() -> None:
    assert not any(is_working_day(d) for d in _days(date(2026, 10, 1), date(2026, 10, 7)))
    assert is_working_day(date(2026, 9, 20))  # Sunday, make-up working day
    assert is_working_day(date(2026, 10, 10))  # Saturday, make-up working day
    assert is_working_day(date(2026, 9, 30)) and is_working_day(date(2026, 10, 8))
    assert not is_working_day(date(2026, 10, 11))  # an ordinary Sunday


def test_spring_festival_2026() -> None:
    assert not any(is_working_day(d) for d in _days(date(2026, 2, 15), date(2026, 2, 23)))
    assert is_working_day(date(2026, 2, 14))  # Saturday, make-up working day
    assert is_working_day(date(2026, 2, 28))  # Saturday, make-up working day
    assert is_working_day(date(2026, 2, 13)) and is_working_day(date(2026, 2, 24))


def test_other_2026_days() -> None:
    assert not is_working_day(date(2026, 1, 1))
    assert not is_working_day(date(2026, 1, 2))  # day off, moved from Sunday 4 January
    assert is_working_day(date(2026, 1, 4))
    assert not is_working_day(date(2026, 5, 5)) and is_working_day(date(2026, 5, 9))
    assert not is_working_day(date(2026, 9, 25))  # Mid-Autumn Festival (Friday)
    assert is_working_day(date(2026, 6, 30))
    assert not is_working_day(date(2026, 6, 28))  # an ordinary Sunday


def test_publication_deadline_across_national_day() -> None:
    # Checked on Friday 2026-09-25 (itself a holiday, not counted). Working days after it:
    # Sep 26–27 weekend; Sep 28, 29, 30 → 1–3; Oct 1–7 holidays; Oct 8, 9 → 4, 5;
    # Sat Oct 10 (make-up) → 6; Sun Oct 11 off; Oct 12–16 → 7–11; Oct 19–23 → 12–16;
    # Oct 26, 27, 28, 29 → 17–20. Deadline: Thursday 2026-10-29.
    assert add_working_days(date(2026, 9, 25), PUBLICATION_WORKING_DAYS) == date(2026, 10, 29)
    # From Sunday 2026-09-20 (a working day, not counted): Sep 21–24 → 1–4 (Sep 25 off), then
    # Sep 28–30 → 5–7, Oct 8, 9, 10 → 8–10, Oct 12–16 → 11–15, Oct 19–23 → 16–20.
    assert add_working_days(date(2026, 9, 20), 20) == date(2026, 10, 23)
    assert working_days_between(date(2026, 9, 25), date(2026, 10, 29)) == 20
    assert working_days_between(date(2026, 9, 30), date(2026, 10, 7)) == 0


def test_edges() -> None:
    assert add_working_days(date(2026, 10, 3), 0) == date(2026, 10, 3)
    assert add_working_days(date(2026, 10, 3), 1) == date(2026, 10, 8)
    assert working_days_between(date(2026, 10, 1), date(2026, 10, 1)) == 0
    assert working_days_between(date(2026, 10, 29), date(2026, 9, 25)) == -20
    with pytest.raises(ValueError, match="n must be"):
        add_working_days(date(2026, 1, 1), -1)
    with pytest.raises(ValueError, match="no working-day calendar"):
        is_working_day(date(2200, 1, 1))


def test_year_boundary() -> None:
    # 2025-12-31 Wednesday; 2026-01-01..03 off, Sunday 2026-01-04 is a make-up working day
    assert add_working_days(date(2025, 12, 31), 1) == date(2026, 1, 4)
    assert working_days_between(date(2025, 12, 30), date(2026, 1, 5)) == 3
    # counting over a whole year agrees with day-by-day membership
    assert working_days_between(date(2025, 12, 31), date(2026, 12, 31)) == sum(
        is_working_day(d) for d in _days(date(2026, 1, 1), date(2026, 12, 31))
    )


def test_schedule_published() -> None:
    assert schedule_published(2026)
    assert not schedule_published(2027)
    assert all(schedule_published(y) for y in range(2001, 2027))
    assert not schedule_published(1900)


def test_deadline_estimated() -> None:
    assert not deadline_estimated(date(2026, 9, 25), date(2026, 10, 29))
    assert deadline_estimated(date(2026, 12, 10), date(2027, 1, 8))
    # in December the next year's schedule may still move work into late December
    assert deadline_estimated(date(2026, 11, 20), date(2026, 12, 18))
    assert not deadline_estimated(date(2025, 11, 20), date(2025, 12, 18))


DATES = st.dates(min_value=date(2020, 1, 1), max_value=date(2027, 12, 31))


@settings(max_examples=300, deadline=None)
@given(start=DATES, n=st.integers(min_value=0, max_value=400))
def test_add_then_count_is_identity(start: date, n: int) -> None:
    end = add_working_days(start, n)
    assert working_days_between(start, end) == n
    assert n == 0 or is_working_day(end)
    # no working day is skipped: the day before the n-th is not the n-th already
    assert n == 0 or working_days_between(start, end - timedelta(days=1)) == n - 1


@settings(max_examples=300, deadline=None)
@given(start=DATES, end=DATES)
def test_count_then_add_lands_on_last_working_day(start: date, end: date) -> None:
    n = working_days_between(start, end)
    assert working_days_between(end, start) == -n
    if end >= start:
        back = add_working_days(start, n)
        assert back <= end
        assert working_days_between(back, end) == 0
        assert back == end or n == 0 or not is_working_day(end)


@given(day=DATES)
def test_membership_matches_counting(day: date) -> None:
    assert working_days_between(day - timedelta(days=1), day) == int(is_working_day(day))


# ---- a province's schedule file (CREDSUP_HOLIDAY_SCHEDULE) -------------------------------------


def _schedule(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_schedule_file_replaces_the_package_for_its_years_and_reaches_next_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2027 (unknown to the package) from the file; 2026 replaced whole by the file's 2026 (here
    without National Day: its weekdays work); a 2028 make-up Sunday in late 2027 applies to 2027."""
    assert not workdays.schedule_published(2027)
    assert not is_working_day(date(2026, 10, 1))  # National Day, as the package has it
    path = _schedule(
        tmp_path,
        """
2026:
  days_off: [2026-01-01]
  working_weekends: []
2027:
  days_off: ["2027-02-06..2027-02-12"]
  working_weekends: [2027-02-20]
2028:
  days_off: []
  working_weekends: [2027-12-26]
""",
    )
    monkeypatch.setenv(workdays.SCHEDULE_SETTING, str(path))
    assert workdays.schedule_published(2027) and workdays.schedule_published(2028)
    assert is_working_day(date(2026, 10, 1)) and not is_working_day(date(2026, 1, 1))
    assert not any(is_working_day(date(2027, 2, d)) for d in range(6, 13))
    assert is_working_day(date(2027, 2, 20)) and is_working_day(date(2027, 12, 26))
    assert not is_working_day(date(2027, 12, 25))  # a Saturday the file does not name
    # Friday 5 February 2027 + 1 working day: the days off run to the 12th, the 13th is Saturday
    assert add_working_days(date(2027, 2, 5), 1) == date(2027, 2, 15)
    assert not workdays.deadline_estimated(date(2027, 2, 5), date(2027, 2, 15))
    monkeypatch.delenv(workdays.SCHEDULE_SETTING)
    assert not is_working_day(date(2026, 10, 1)) and not workdays.schedule_published(2027)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2027:\n  working_weekends: [2027-01-06]\n", "2027-01-06 is a weekday"),
        ("2027:\n  days_off: [2027-01-09]\n  working_weekends: [2027-01-09]\n",
         "2027-01-09 is both a day off and a working weekend day"),
        ("2027:\n  days_off: ['2027-02-12..2027-02-06']\n", "the range ends before it starts"),
        ("2027:\n  days_off: [2025-05-01]\n", "2025-05-01 is neither in 2027 nor next to it"),
        ("2027:\n  days_off: [2027-02-30]\n", "day is out of range for month"),
        ("2027:\n  days_off: ['2027-13-01']\n", "days_off '2027-13-01'"),
        ("2027:\n  days_off: 2027-01-01\n", "days_off must be a list of dates"),
        ("2027:\n  holidays: [2027-01-01]\n", "give days_off and working_weekends only"),
        ("next year:\n  days_off: []\n", "'next year' is no year"),
        ("- 2027-01-01\n", "expected years as keys"),
    ],
)  # fmt: skip
def test_a_schedule_file_that_cannot_be_right_is_refused_naming_what(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _schedule(tmp_path, text)
    with pytest.raises(workdays.ScheduleError) as refused:
        workdays.load_schedule(path)
    assert str(path) in str(refused.value) and message in str(refused.value)


def test_a_missing_schedule_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workdays.SCHEDULE_SETTING, str(tmp_path / "none.yaml"))
    with pytest.raises(workdays.ScheduleError, match="CREDSUP_HOLIDAY_SCHEDULE="):
        add_working_days(date(2026, 3, 2), 1)
