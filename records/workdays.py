"""The Chinese working-day calendar for every deadline: spot-check results within 20 working days
(DOMAIN §7), repair decisions within 3, objections within 5 (extendable to 20) and the 5-day
window before a serious dishonest listing (§8–§10).

Working days follow the State Council's yearly schedule (statutory holidays plus the make-up
working weekends, 调休) as the `holidays` package records it. For a year whose schedule the
package does not know yet, it computes the statutory holidays by rule and has no make-up days:
deadlines in such a year are estimates (`schedule_published`, `deadline_estimated`).

The State Council publishes next year's schedule in the autumn, before a release of the package
may carry it: a province enters it in a schedule file (`CREDSUP_HOLIDAY_SCHEDULE`, YAML, read
like `CREDSUP_CATALOGUE_PATH` from the environment or `.env`; `load_schedule` says the format).
A year the file gives replaces the package's for that year; its dates falling in a neighbouring
year (a make-up day in late December) apply there too. Then `credsup deadlines redate`
(`serving.deadlines`) moves the open deadlines counted on the estimate.

Each year's working days are computed once per schedule file into an immutable sorted tuple
(`functools.cache`), so lookups share no mutable `holidays` object between threads.
"""

from __future__ import annotations

import os
import re
import time
from bisect import bisect_right
from datetime import date, timedelta
from functools import cache, lru_cache
from pathlib import Path

import holidays
import yaml
from holidays.countries.china import China

from records.clock import china_today as china_today  # re-exported: "today" for the service

PUBLICATION_WORKING_DAYS = 20
"""Results of a check are published within this many working days (DOMAIN §7)."""

FIRST_YEAR = China.start_year
LAST_YEAR = China.end_year
"""The years the package has a calendar for (outside them it knows no holiday at all)."""


SCHEDULE_SETTING = "CREDSUP_HOLIDAY_SCHEDULE"

YearSchedule = tuple[int, tuple[int, ...], tuple[int, ...]]
"""(year, ordinals of its days off, ordinals of its make-up working weekend days)."""


class ScheduleError(ValueError):
    """The schedule file cannot be used (the message names the file, the year and the date)."""


def load_schedule(path: str | Path) -> tuple[YearSchedule, ...]:
    """A schedule file: for each year, the days off (放假, weekdays and weekends alike; a range
    as "2027-02-06..2027-02-13") and the make-up working weekend days (调休上班), e.g.

        2027:                    # 国务院办公厅关于2027年部分节假日安排的通知
          days_off: [2027-01-01, 2027-02-06..2027-02-13]
          working_weekends: [2027-02-14, 2027-02-20]

    Dates lie in the year or its neighbouring months (December before, January after); a make-up
    day is a Saturday or Sunday; no day is both."""
    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError) as exc:  # ValueError: 2027-02-30
        raise ScheduleError(f"{where}: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise ScheduleError(f"{where}: expected years as keys, each with days_off and "
                            "working_weekends")  # fmt: skip
    years: list[YearSchedule] = []
    for year, body in sorted(doc.items(), key=lambda kv: str(kv[0])):
        if not isinstance(year, int) or not 2000 <= year <= 2199:
            raise ScheduleError(f"{where}: {year!r} is no year (2000–2199)")
        if not isinstance(body, dict) or set(body) - {"days_off", "working_weekends"}:
            raise ScheduleError(f"{where}: {year}: give days_off and working_weekends only")
        off = _dates(where, year, body.get("days_off") or [], "days_off")
        work = _dates(where, year, body.get("working_weekends") or [], "working_weekends")
        weekdays = [date.fromordinal(d) for d in work if date.fromordinal(d).weekday() < 5]
        if weekdays:
            raise ScheduleError(
                f"{where}: {year}: working_weekends {weekdays[0]} is a weekday (list only the "
                "Saturdays and Sundays worked)"
            )
        both = sorted(set(off) & set(work))
        if both:
            raise ScheduleError(f"{where}: {year}: {date.fromordinal(both[0])} is both a day off "
                                "and a working weekend day")  # fmt: skip
        years.append((year, tuple(sorted(set(off))), tuple(sorted(set(work)))))
    return tuple(years)


_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$")


def _dates(where: str, year: int, values: object, field: str) -> list[int]:
    if not isinstance(values, list):
        raise ScheduleError(f"{where}: {year}: {field} must be a list of dates")
    first, last = date(year - 1, 12, 1), date(year + 1, 1, 31)
    out: list[int] = []
    for value in values:
        try:
            if isinstance(value, date):
                days = [value]
            elif (m := _RANGE.match(str(value).strip())) is not None:
                a, b = date.fromisoformat(m[1]), date.fromisoformat(m[2])
                if b < a:
                    raise ValueError("the range ends before it starts")
                days = [a + timedelta(days=k) for k in range((b - a).days + 1)]
            else:
                days = [date.fromisoformat(str(value).strip())]
        except ValueError as exc:
            raise ScheduleError(f"{where}: {year}: {field} {value!r}: {exc}") from None
        outside = [d for d in days if not first <= d <= last]
        if outside:
            raise ScheduleError(
                f"{where}: {year}: {field} {outside[0]} is neither in {year} nor next to it"
            )
        out.extend(d.toordinal() for d in days)
    return out


def schedule_path() -> str | None:
    """The schedule file in force in this process (`CREDSUP_HOLIDAY_SCHEDULE`), if any."""
    from records.catalogue import _dotenv_setting

    return os.environ.get(SCHEDULE_SETTING) or _dotenv_setting(SCHEDULE_SETTING) or None


_RECHECK_SECONDS = 1.0
_memo: tuple[str | None, float, tuple[YearSchedule, ...]] = (None, -1e9, ())
"""(the environment's setting, when looked, the schedule): deadlines are counted in loops, and
looking for `.env` and the file's change on every count cost 25 µs of the 27 µs of one."""


def current_schedule() -> tuple[YearSchedule, ...]:
    """The years the schedule file gives (none without one); read again when it changes (looked
    at once a second, and at once when the environment's setting changes)."""
    global _memo
    given, now = os.environ.get(SCHEDULE_SETTING), time.monotonic()
    if _memo[0] == given and now - _memo[1] < _RECHECK_SECONDS:
        return _memo[2]
    path = schedule_path()
    if path is None:
        schedule: tuple[YearSchedule, ...] = ()
    else:
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise ScheduleError(f"{SCHEDULE_SETTING}={path!r}: {exc}") from None
        schedule = _loaded_schedule(os.path.abspath(path), mtime_ns)
    _memo = (given, now, schedule)
    return schedule


@lru_cache(maxsize=4)
def _loaded_schedule(path: str, mtime_ns: int) -> tuple[YearSchedule, ...]:
    return load_schedule(path)


def _working_days(year: int) -> tuple[int, ...]:
    """Ordinals of the year's working days, ascending (with the schedule file in force)."""
    return _calendar(year, current_schedule())


@cache
def _calendar(year: int, schedule: tuple[YearSchedule, ...]) -> tuple[int, ...]:
    """Ordinals of the year's working days, ascending.

    A year the schedule file gives: its weekdays, less its days off, plus its make-up weekend
    days. Any other year: the package's calendar, built for the neighbouring years too (a year's
    make-up working days can fall in the previous December: the 2002 New Year's schedule moved
    work to 29–30 December 2001). Then the file's dates that fall in the year (from the next
    year's schedule, say) apply. The `holidays` object stays local; only the immutable tuple is
    cached and shared.
    """
    first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
    given = {y for y, _, _ in schedule}
    if year in given:
        days = {d for d in range(first, last + 1) if date.fromordinal(d).weekday() < 5}
    elif FIRST_YEAR <= year <= LAST_YEAR:
        calendar = holidays.country_holidays("CN", years=range(year - 1, year + 2))
        # weekdays that are not holidays or days off, plus make-up working weekend days
        days = {d for d in range(first, last + 1)
                if calendar.is_working_day(date.fromordinal(d))}  # fmt: skip
    else:
        raise ValueError(f"no working-day calendar for {year} (only {FIRST_YEAR}–{LAST_YEAR})")
    for _, off, work in schedule:
        days -= {d for d in off if first <= d <= last}
        days |= {d for d in work if first <= d <= last}
    return tuple(sorted(days))


def is_working_day(day: date) -> bool:
    """Whether offices work on `day` (make-up weekends count; holidays and days off do not)."""
    days = _working_days(day.year)
    i = bisect_right(days, day.toordinal())
    return i > 0 and days[i - 1] == day.toordinal()


def add_working_days(start: date, n: int) -> date:
    """The n-th working day after `start` (`start` itself not counted); n = 0 gives `start`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return start
    year = start.year
    index = bisect_right(_working_days(year), start.toordinal())
    remaining = n
    while True:
        days = _working_days(year)
        available = len(days) - index
        if remaining <= available:
            return date.fromordinal(days[index + remaining - 1])
        remaining -= available
        year += 1
        index = 0


def working_days_between(start: date, end: date) -> int:
    """Working days in (start, end]; negative (minus those in (end, start]) if end < start."""
    if end < start:
        return -working_days_between(end, start)
    total = sum(len(_working_days(y)) for y in range(start.year, end.year))
    total -= bisect_right(_working_days(start.year), start.toordinal())
    total += bisect_right(_working_days(end.year), end.toordinal())
    return total


def schedule_published(year: int) -> bool:
    """Whether the State Council's schedule for `year` is known: the schedule file gives it,
    or the package holds it, not just rules.

    Every official schedule since 2001 has make-up working weekend days; without the schedule
    the package has none in the year (make-up days in a year come only from its own schedule
    or the next year's, which is never known before this year's).
    """
    return any(y == year for y, _, _ in current_schedule()) or _package_published(year)


@cache
def _package_published(year: int) -> bool:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return False
    return any(d.year == year for d in holidays.country_holidays("CN", years=year).weekend_workdays)


def deadline_estimated(start: date, deadline: date) -> bool:
    """Whether a deadline counted from `start` may move once a schedule is published.

    True if a year the count runs through has no published schedule, or the deadline is in
    December and next year's schedule (which may move work into late December) is unknown.
    """
    first, last = min(start, deadline), max(start, deadline)
    years = list(range(first.year, last.year + 1))
    if last.month == 12:
        years.append(last.year + 1)
    return not all(schedule_published(y) for y in years)
