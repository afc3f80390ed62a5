"""Training examples: every past spot check, with features as of the day before it.

Label: the check found a problem (`problem` or `serious`; or only `serious`). Because draws are
tier-weighted, each example carries the inverse of its inclusion probability (stored with the
draw in `attributes.inclusion_prob`; 1 where unknown) as its weight, so that a model and its
evaluation describe the whole population, not only the inspected part. A stored value that is no
probability (not a finite number in (0, 1]: -0.2, or 15 meaning 15 %) is treated as unknown and
flagged (`inclusion_prob_invalid`), so that training says how many there were instead of failing
on a negative weight or silently shrinking one. Features come from
`features.builder.build_features_at`, so an example uses only what was recorded before its check.

The examples are those one would have had on the training day (`until` for a backtest, else
everything stored): a check counts once its result is recorded by then, and its label and weight
come from the check result in its corrected form as known by then (the latest `correction` in
force, as the feature builder applies it: an objection decided "corrected" restates what the
inspection found). A check result withdrawn by then is left out: a `withdrawal` declares the
record void (it stops counting and being public), so it no longer says what the inspector found;
a `repair` leaves the example as it is (the problem was found; the company has since put it
right).

Only checks drawn at random are examples: a check whose `attributes.basis` says it was selected
otherwise (`triggered`: a complaint or referral made a problem suspected) is left out, as its
weight 1/p (p = 1) could not undo that selection; how many were left out is logged and stored in
the table's metadata (`TRIGGERED_LEFT_OUT`). A check without a `basis` (the simulator's, results
posted before it was recorded, other sources) counts as random. A check that could not be made
(`not_inspected`: the company unreachable, deregistered, ceased trading) is no example either: it
is neither a pass nor a problem.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.builder import CORRECTED_COLUMNS, FIXES_CTE, build_features_at
from records.store import Store

Label = Literal["problem", "serious"]

TRIGGERED_LEFT_OUT = b"triggered_left_out"
"""Schema metadata key of the examples: checks left out because they were not drawn at random."""

log = logging.getLogger(__name__)


def triggered_left_out(table: pa.Table) -> int:
    """How many checks `spot_check_examples` left out as not drawn at random."""
    return int((table.schema.metadata or {}).get(TRIGGERED_LEFT_OUT, b"0"))


def spot_check_examples(
    store: Store,
    label: Label = "problem",
    since: date | None = None,
    until: date | None = None,
) -> pa.Table:
    """One row per spot check drawn at random: record_id, uscc, check_date, as_of (the day
    before), label, weight and inclusion_prob_invalid (a probability was stored but is not a
    finite number in (0, 1]); the count of triggered checks left out is in the metadata.

    `since`/`until` bound the check date; with `until`, the checks, their corrections and
    withdrawals are those known on that day (see the module docstring).
    """
    positive = "'problem', 'serious'" if label == "problem" else "'serious'"
    where = ["r.category = 'spot_check'", "r.recorded_date <= $day"]
    params: dict[str, object] = {"day": until or date.max}
    if since is not None:
        where.append("r.event_date >= $since")
        params["since"] = since
    if until is not None:
        where.append("r.event_date <= $day")
    # `points` (one per company, on the training day) is what the builder's FIXES_CTE reads
    sql = f"""
        WITH points AS (
            SELECT DISTINCT uscc, CAST($day AS DATE) AS as_of
            FROM records WHERE category = 'spot_check'
        ),
        {FIXES_CTE},
        checks AS (
            SELECT r.record_id, r.uscc, r.event_date, {CORRECTED_COLUMNS}
            FROM records r
            LEFT JOIN fixes f ON f.uscc = r.uscc AND f.record_id = r.record_id
            WHERE {" AND ".join(where)}
              AND NOT EXISTS (SELECT 1 FROM events w
                              WHERE w.record_id = r.record_id AND w.event_type = 'withdrawal'
                                AND greatest(w.effective_date, w.recorded_date) <= $day)
        ),
        stated AS (
            SELECT *, json_extract_string(attributes, '$.inclusion_prob') AS prob_text,
                TRY_CAST(prob_text AS DOUBLE) AS prob,
                coalesce(isfinite(prob) AND prob > 0 AND prob <= 1, false) AS prob_ok,
                coalesce(json_extract_string(attributes, '$.basis') <> 'random', false)
                    AS not_random
            -- a check not made (not_inspected) is neither a pass nor a problem: no example
            FROM checks WHERE severity IN ('pass', 'problem', 'serious')
        )
        SELECT record_id, uscc, event_date AS check_date,
            CAST(event_date - INTERVAL 1 DAY AS DATE) AS as_of,
            CASE WHEN severity IN ({positive}) THEN 1 ELSE 0 END AS label,
            CASE WHEN prob_ok THEN 1.0 / prob ELSE 1.0 END AS weight,
            prob_text IS NOT NULL AND NOT prob_ok AS inclusion_prob_invalid,
            not_random
        FROM stated
        ORDER BY check_date, record_id
    """
    with store.connect() as con:
        table = con.sql(sql, params=params).to_arrow_table()
    not_random = table.column("not_random")
    left_out = int(pc.sum(not_random).as_py() or 0)
    if left_out:
        log.info("spot-check examples: %d check(s) not drawn at random left out", left_out)
    kept = table.filter(pc.invert(not_random)).drop_columns(["not_random"])
    return kept.replace_schema_metadata({TRIGGERED_LEFT_OUT: str(left_out).encode()})


def training_frame(
    store: Store,
    label: Label = "problem",
    since: date | None = None,
    until: date | None = None,
) -> pa.Table:
    """The examples joined with their point-in-time features (one row per check)."""
    examples = spot_check_examples(store, label, since, until)
    points = pa.table({"uscc": examples.column("uscc"), "as_of": examples.column("as_of")})
    features = build_features_at(store, points)
    keys = ["uscc", "as_of"]
    joined = examples.join(features, keys=keys, join_type="left outer").sort_by(
        [("check_date", "ascending"), ("record_id", "ascending")]
    )
    return joined.replace_schema_metadata(examples.schema.metadata)


MIN_VALIDATION_CHECKS = 200
"""The fewest validation checks, and of them the fewest with each label, that the metrics of a
model are computed on (`MIN_VALIDATION_EACH_LABEL`): fewer, and the window reaches further
back. A window of half a year held 4 checks after a quiet half year and a day of new results,
and the model was registered on an AUC of 0.11."""
MIN_VALIDATION_EACH_LABEL = 20


def time_split(
    frame: pa.Table,
    validation_days: int = 183,
    min_checks: int = MIN_VALIDATION_CHECKS,
    min_each_label: int = MIN_VALIDATION_EACH_LABEL,
) -> tuple[pa.Table, pa.Table]:
    """Train on earlier checks, validate on the latest `validation_days` of check dates, or on
    the latest days that hold at least `min_checks` checks and `min_each_label` of each label
    when those days hold fewer (whole days: a day's checks are on one side)."""
    if frame.num_rows == 0:
        return frame, frame
    last = pc.max(frame.column("check_date")).as_py()
    cut = validation_cut(frame, last - timedelta(days=validation_days), min_checks, min_each_label)
    early = pc.less_equal(frame.column("check_date"), pa.scalar(cut, pa.date32()))
    return frame.filter(early), frame.filter(pc.invert(early))


def validation_cut(frame: pa.Table, cut: date, min_checks: int, min_each_label: int) -> date:
    """The last day of training: `cut`, or earlier as far as the validation needs (see
    `time_split`); `cut` when even all checks together fall short (a small store: the report
    says how many the validation holds)."""
    days = frame.column("check_date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    labels = frame.column("label").to_numpy(zero_copy_only=False).astype(bool)
    order = np.argsort(days)[::-1]  # the latest first
    days, labels = days[order], labels[order]
    positives, negatives = np.cumsum(labels), np.cumsum(~labels)
    enough = (
        (np.arange(1, len(days) + 1) >= min_checks)
        & (positives >= min_each_label)
        & (negatives >= min_each_label)
    )
    if not enough.any():
        return cut
    # the day of the first check that makes enough; every check of that day is in validation
    needed: date = days[int(np.argmax(enough))].astype(date)
    return min(cut, needed - timedelta(days=1))
