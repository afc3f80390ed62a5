"""Published results: what counts as a change of a past day's published columns."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from features.results import Restatement, Results, changed_companies


def test_changes_are_counted_by_company_and_column() -> None:
    old = pa.table({"uscc": ["A", "B", "C"], "on_focus_list": [0, 1, None]})
    new = pa.table({"uscc": ["A", "B", "D"], "on_focus_list": [0, 0, None]})
    assert changed_companies(old, new, ("on_focus_list",)) == 3  # B changed, C gone, D new
    assert changed_companies(old, old, ("on_focus_list",)) == 0  # nulls equal
    assert changed_companies(old, new, ()) == 2  # no column compared: who is there


def test_a_served_flag_that_comes_or_goes_is_a_restatement(tmp_path: Path) -> None:
    """A past day's features without a served flag the new ones have (or the other way) were
    compared on no column at all, and the SQL broke; now every company counts as changed."""
    results = Results(tmp_path)
    past, today = date(2026, 3, 31), date(2026, 4, 15)
    flags = {"uscc": ["A", "B"], "objection_open": [0, 0], "on_abnormal_list": [0, 1]}
    results.write_published("features", pa.table(flags), past, "fs-1", today=today)
    fewer = pa.table({k: v for k, v in flags.items() if k != "on_abnormal_list"})
    with pytest.raises(Restatement, match="of 2 companies would change"):
        results.write_published("features", fewer, past, "fs-2", today=today)
    same = results.write_published("features", pa.table(flags), past, "fs-1", today=today)
    assert same.name == "fs-1.parquet"
