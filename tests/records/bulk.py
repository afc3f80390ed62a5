"""Large canonical record files built column-wise (fast), for crash and volume tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from records import uscc


def bulk_records(n: int, seed: int = 0, prefix: str = "K") -> pa.Table:
    rng = np.random.default_rng(seed)
    pool = np.array(uscc.generate_many(rng, ["91"] * 1000, ["410102"] * 1000))
    ids = pc.binary_join_element_wise(prefix, pa.array(np.arange(n)).cast(pa.string()), "")
    days = rng.integers(0, 1500, n)
    event = pa.array(np.datetime64("2021-01-01") + days.astype("timedelta64[D]"))
    recorded = pa.array(np.datetime64("2021-01-01") + (days + 5).astype("timedelta64[D]"))
    return pa.table(
        {
            "record_id": ids,
            "uscc": pa.array(pool[rng.integers(0, 1000, n)]),
            "category": pa.array(["admin_penalty"] * n),
            "event_date": pc.strftime(event, "%Y-%m-%d"),
            "recorded_date": pc.strftime(recorded, "%Y-%m-%d"),
            "source_dept": pa.array(["samr"] * n),
            "severity": pa.array(np.array(["minor", "general", "serious"])[rng.integers(0, 3, n)]),
            "amount": pa.array(rng.integers(0, 100_000, n).astype(float)).cast(pa.string()),
            "attributes": pa.array(["{}"] * n),
        }
    )


def write_bulk_csv(path: Path, n: int, seed: int = 0, prefix: str = "K") -> Path:
    pacsv.write_csv(bulk_records(n, seed, prefix), path)
    return path
