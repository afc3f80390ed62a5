"""The Chinese working-day calendar for every deadline: spot-check results within 20 working days
(DOMAIN §7), repair decisions within 3, objections within 5 (extendable to 20) and the 5-day
window before a serious dishonest listing (§8–§10).

Working days follow the State Council's yearly schedule (statutory holidays plus the make-up
working weekends, 调休) as the `holidays` package records it. For a year whose schedule the
package does not know yet, it computes the statutory holidays by rule and has no make-up days:
deadlines in such a year are estimates (`schedule_published`, `deadline_estimated`).

Each year's working days are computed once into an immutable sorted tuple (`functools.cache`),
so lookups share no mutable `holidays` object between threads.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date
from functools import cache

import holidays
from holidays.countries.china import China

from records.clock import china_today as china_today  # re-exported: "today" for the service

PUBLICATION_WORKING_DAYS = 20
"""Results of a check are published within this many working days (DOMAIN §7)."""

FIRST_YEAR = China.start_year
LAST_YEAR = China.end_year
"""The years the package has a calendar for (outside them it knows no holiday at all)."""


@cache
def _working_days(year: int) -> tuple[int, ...]:
    """Ordinals of the year's working days, ascending.

    The calendar is built for the neighbouring years too: a year's make-up working days can fall
    in the previous December (the 2002 New Year's schedule moved work to 29–30 December 2001).
    The `holidays` object stays local; only the immutable tuple is cached and shared.
    """
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"no working-day calendar for {year} (only {FIRST_YEAR}–{LAST_YEAR})")
    calendar = holidays.country_holidays("CN", years=range(year - 1, year + 2))
    first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
    # weekdays that are not holidays or days off, plus make-up working weekend days
    return tuple(d for d in range(first, last + 1) if calendar.is_working_day(date.fromordinal(d)))


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


@cache
def schedule_published(year: int) -> bool:
    """Whether the package holds the State Council's schedule for `year`, not just rules.

    Every official schedule since 2001 has make-up working weekend days; without the schedule
    the package has none in the year (make-up days in a year come only from its own schedule
    or the next year's, which is never known before this year's).
    """
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
