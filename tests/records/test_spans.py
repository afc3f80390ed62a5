"""Calendar periods: `Span.after` (Python) and `Span.sql` (DuckDB) end on the same day."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

from records.spans import Span
from tests.features.reference import months_on


def test_python_and_sql_end_a_period_on_the_same_day_every_day_of_eight_years() -> None:
    """Every start day of 2023-2030 (two leap days, every month end) for the catalogue's
    periods, day periods and a mixed one; months also against a plain restatement."""
    first, last = date(2023, 1, 1), date(2030, 12, 31)
    days = [first + timedelta(n) for n in range((last - first).days + 1)]
    con = duckdb.connect()
    con.register("t", pa.table({"event_date": pa.array(days, pa.date32())}))
    spans = [Span(m) for m in (1, 3, 6, 12, 24, 36, 60)] + [Span(0, 90), Span(0, 1825),
                                                           Span(13, 1)]  # fmt: skip
    for span in spans:
        sql = [d for (d,) in con.execute(f"SELECT {span.sql('event_date')} FROM t").fetchall()]
        assert sql == [span.after(d) for d in days], span
        if not span.days:
            assert sql == [months_on(d, span.months) for d in days], span
