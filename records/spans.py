"""Calendar periods ("3 months", "1 year", "20 days"): how long the law keeps a record public.

DOMAIN §7–§9 state publicity periods in months and years ("at least 3 months", "at most 3
years", "kept public 5 years"). A period of months ends on the same day of the month, the
last day of a shorter month when that day does not exist: a decision of 31 January plus one
month ends on 28 (29) February; 29 February plus one year ends on 28 February. Counted in days,
"3 months" (90 days) would open repair up to two days early, and "5 years" (1,825 days) would
end publicity one or two days before the law's term.

`Span.after` (Python, `dateutil.relativedelta`) and `Span.sql` (DuckDB's
`date + INTERVAL n MONTH`) follow the same rule: months first, clamped to the month's end, then
days. The tests check the two against each other over every day of several years.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from dateutil.relativedelta import relativedelta
from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"day": (0, 1), "month": (1, 0), "year": (12, 0)}
_PART = re.compile(r"\s*(\d+)\s*(day|month|year)s?\s*", re.IGNORECASE)
AVERAGE_MONTH_DAYS = 365.2425 / 12


@dataclass(frozen=True)
class Span:
    """A length of time from a start date: whole months (a year is 12) plus days."""

    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if self.months < 0 or self.days < 0:
            raise ValueError(f"a period cannot be negative: {self.months} months {self.days} days")

    @classmethod
    def parse(cls, value: Any) -> Span:
        """From "3 months", "1 year", "1 year 6 months", "90 days" or a whole number of days
        (the form of catalogues before 2026.12)."""
        if isinstance(value, Span):
            return value
        if isinstance(value, bool):
            raise ValueError(f"not a period: {value!r}")
        if isinstance(value, int):
            return cls(0, value)
        if not isinstance(value, str):
            raise ValueError(f'not a period: {value!r} (write e.g. "3 months" or "1 year")')
        text = value.strip()
        if text.isdigit():
            return cls(0, int(text))
        months = days = 0
        end = 0
        for match in _PART.finditer(text):
            if match.start() != end:
                break
            end = match.end()
            n = int(match.group(1))
            per_month, per_day = _UNITS[match.group(2).lower()]
            months, days = months + n * per_month, days + n * per_day
        if end == 0 or end != len(text):
            raise ValueError(
                f'not a period: {value!r} (write e.g. "3 months", "1 year" or "90 days")'
            )
        return cls(months, days)

    @property
    def zero(self) -> bool:
        return self.months == 0 and self.days == 0

    @property
    def approximate_days(self) -> float:
        """For ordering two periods only (a month counted as an average month)."""
        return self.months * AVERAGE_MONTH_DAYS + self.days

    def after(self, start: date) -> date:
        """The day the period ends: `start` plus the period (the first day outside it)."""
        end: date = start + relativedelta(months=self.months, days=self.days)
        return end

    def before(self, end: date) -> date:
        """`end` less the period: the earliest start whose period may still run on `end` is
        the day after (the day itself when month ends clamp)."""
        start: date = end - relativedelta(months=self.months, days=self.days)
        return start

    def sql(self, start: str) -> str:
        """`after` as DuckDB SQL over a DATE expression."""
        parts = [f"({start})"]
        if self.months:
            parts.append(f"INTERVAL {self.months} MONTH")
        if self.days:
            parts.append(f"INTERVAL {self.days} DAY")
        return f"CAST({' + '.join(parts)} AS DATE)" if len(parts) > 1 else f"({start})"

    def __str__(self) -> str:
        out = []
        years, months = divmod(self.months, 12)
        for n, unit in ((years, "year"), (months, "month"), (self.days, "day")):
            if n:
                out.append(f"{n} {unit}{'s' if n != 1 else ''}")
        return " ".join(out) or "0 days"


def longer(a: Span | None, b: Span) -> Span | None:
    """The longer of two periods (None: open-ended, the longest)."""
    if a is None:
        return None
    return b if b.approximate_days > a.approximate_days else a


def shorter(a: Span, b: Span) -> Span:
    """The shorter of two periods."""
    return b if b.approximate_days < a.approximate_days else a


SpanField = Annotated[Span, BeforeValidator(Span.parse), PlainSerializer(str)]
"""A period in a policy file: "3 months", "1 year", "90 days" (a bare number: days)."""
