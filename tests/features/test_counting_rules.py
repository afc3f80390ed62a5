"""The counting rules, one at a time, on hand-made records: publicity periods, repairs and
withdrawals, listings and removals, objections, entity versions, windows, decay, commitments,
latest values; and the spec set itself. Each value is checked on the builder and the reference."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlglot

from features.builder import LIST_CATEGORIES, build_features_at, features_sql, to_spark_sql
from features.specs import SPECS, FeatureSpec, by_name, spec_version, validate_specs
from records.catalogue import default_catalogue
from records.store import Store
from tests.features.reference import list_categories
from tests.features.scenarios import CODES
from tests.features.stores import (
    add_entities,
    add_events,
    add_records,
    builder_rows,
    differences,
    points_table,
    reference_for,
)

CO = CODES[0]
OTHER = CODES[1]
D0 = date(2024, 1, 1)


def rec(
    record_id: str,
    category: str,
    event: date,
    recorded: date | None = None,
    severity: str | None = None,
    amount: float | None = None,
    uscc: str = CO,
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "record_id": record_id, "uscc": uscc, "category": category, "severity": severity,
        "event_date": event, "recorded_date": recorded or event, "source_dept": "samr",
        "amount": amount, "attributes": json.dumps(attributes, ensure_ascii=False),
    }  # fmt: skip


def event(record_id: str, event_type: str, effective: date, recorded: date) -> dict[str, Any]:
    return {"record_id": record_id, "event_type": event_type, "effective_date": effective,
            "recorded_date": recorded}  # fmt: skip


def values(
    store: Store, name: str, dates: list[date], uscc: str = CO, specs: tuple[Any, ...] = SPECS
) -> list[Any]:
    """The feature of `uscc` on each date, from the builder, after checking that the reference
    agrees (on both companies: the other one is computed alongside, as in a batch)."""
    points = [(code, d) for code in (CO, OTHER) for d in dates]
    got = builder_rows(store, points, specs)
    want = reference_for(store, specs).rows(points)
    problems = differences(got, want)
    assert not problems, "builder and reference differ:\n" + "\n".join(problems)
    return [row[name] for row in got if row["uscc"] == uscc]


def days(n: int, start: date = D0) -> date:
    return start + timedelta(days=n)


# ---- publicity periods and windows -----------------------------------------------------------


def test_a_minor_penalty_counts_for_3_calendar_months(store: Store) -> None:
    """1 January 2024 + 3 months is 1 April: it counts on day 90 (31 March), not on day 91."""
    add_records(store, [rec("P1", "admin_penalty", D0, severity="minor", amount=200.0)])
    at = [days(-1), D0, days(89), days(90), days(91)]
    assert days(91) == date(2024, 4, 1)
    assert values(store, "penalties_12m", at) == [0, 1, 1, 1, 0]
    assert values(store, "minor_penalties_decayed", at) == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert values(store, "fines_3y", at) == [0.0, 200.0, 200.0, 200.0, 0.0]
    assert values(store, "days_since_penalty", at) == [None, 0, 89, 90, None]


def test_a_provinces_catalogue_is_the_one_every_stage_uses(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CREDSUP_CATALOGUE_PATH` (environment or `.env`) is the catalogue of features and
    publicity too, not of ingestion alone: a province that publishes minor penalties for 6
    months counts them 6 months; the packaged catalogue, 3."""
    from records import publicity
    from records.catalogue import load_catalogue, packaged_catalogue

    add_records(store, [rec("P1", "admin_penalty", D0, severity="minor", amount=200.0)])
    at = [days(90), days(91), date(2024, 7, 1)]
    assert values(store, "penalties_12m", at) == [1, 0, 0]
    text = (Path(load_catalogue.__code__.co_filename).parent / "catalogue-v1.yaml").read_text(
        encoding="utf-8"
    )
    longer = text.replace("minor: {min: 0, max: 3 months}", "minor: {min: 0, max: 6 months}")
    assert longer != text
    province = tmp_path / "catalogue-henan.yaml"
    province.write_text(longer, encoding="utf-8")
    monkeypatch.setenv("CREDSUP_CATALOGUE_PATH", str(province))
    assert default_catalogue() is not packaged_catalogue()
    assert values(store, "penalties_12m", at) == [1, 1, 0]  # 1 July: 6 months on
    assert publicity.period("admin_penalty", "minor", None).counts_until(D0) == date(2024, 7, 1)
    # the same from `.env` in the working directory, and a changed file is read again
    monkeypatch.delenv("CREDSUP_CATALOGUE_PATH")
    monkeypatch.chdir(tmp_path)
    assert default_catalogue() is packaged_catalogue()
    (tmp_path / ".env").write_text(f"CREDSUP_CATALOGUE_PATH={province}\n", encoding="utf-8")
    assert values(store, "penalties_12m", at) == [1, 1, 0]
    province.write_text(longer.replace("max: 6 months", "max: 2 months"), encoding="utf-8")
    os.utime(province, ns=(1, 2))  # another modification time, whatever the clock's resolution
    assert values(store, "penalties_12m", at) == [0, 0, 0]  # 1 March: 2 months on


@pytest.mark.parametrize(
    ("severity", "event_date", "end"),
    [("general", D0, date(2025, 1, 1)),  # 2024 has 366 days: day 365 still counts
     ("serious", D0, date(2027, 1, 1)),
     ("general", date(2024, 2, 29), date(2025, 2, 28)),  # the month's last day
     ("serious", date(2023, 3, 31), date(2026, 3, 31))],
)  # fmt: skip
def test_general_and_serious_penalties_expire_with_their_publicity_period(
    store: Store, severity: str, event_date: date, end: date
) -> None:
    add_records(store, [rec("P1", "admin_penalty", event_date, severity=severity, amount=1e3)])
    assert values(store, "penalties_3y", [end - timedelta(days=1), end]) == [1, 0]


def test_a_record_counts_only_once_it_is_recorded(store: Store) -> None:
    add_records(store, [rec("P1", "admin_penalty", D0, days(19), severity="general")])
    assert values(store, "penalties_12m", [D0, days(18), days(19)]) == [0, 0, 1]


def test_windows_hold_records_younger_than_their_length(store: Store) -> None:
    add_records(store, [
        rec("P1", "admin_penalty", D0, severity="serious", amount=5000.0),
        rec("T1", "tax_declaration", D0, amount=-250.5),  # never published: the window alone
    ])  # fmt: skip
    # windows are calendar months: 2024 has 366 days, so 12 months end on day 366
    at = [date(2024, 12, 31), date(2025, 1, 1), date(2026, 12, 31), date(2027, 1, 1)]
    assert at == [days(365), days(366), days(1095), days(1096)]
    assert values(store, "penalties_12m", at) == [1, 0, 0, 0]
    assert values(store, "penalties_3y", at) == [1, 1, 1, 0]
    assert values(store, "serious_penalties_3y", at) == [1, 1, 1, 0]
    assert values(store, "max_fine_3y", at) == [5000.0, 5000.0, 5000.0, 0.0]
    assert values(store, "tax_declarations_12m", at) == [1, 0, 0, 0]
    assert values(store, "tax_declared_12m", at) == [-250.5, 0.0, 0.0, 0.0]


def test_late_and_nil_tax_returns_are_counted_from_the_period_end(store: Store) -> None:
    """A return counts as late when filed after the 25th of the month after its period (period
    end + 25 days: past any extension of the 15th so far); a return whose period is not an ISO
    date is never late, in the builder and the reference alike; a nil return has amount 0."""
    q_end = date(2023, 12, 31)
    add_records(store, [
        rec("T1", "tax_declaration", q_end + timedelta(days=25), amount=0.0,
            period_end=q_end.isoformat()),
        rec("T2", "tax_declaration", q_end + timedelta(days=26), amount=0.25,
            period_end=q_end.isoformat()),
        rec("T3", "tax_declaration", q_end + timedelta(days=90), amount=-0.0, period_end="junk"),
        rec("T4", "tax_declaration", q_end + timedelta(days=90), amount=None),
        *(rec(f"T{5 + i}", "tax_declaration", q_end + timedelta(days=90), amount=1.0,
              period_end=text)
          for i, text in enumerate(["20231231", "2023/12/31", "2023-12-31 00:00:00",
                                    "2023年12月31日", "2023-12-31T00:00:00"])),
    ])  # fmt: skip
    # 3 calendar years: T1 (25 January 2024) counts until 25 January 2027, T2 a day longer
    at = [q_end + timedelta(days=25), q_end + timedelta(days=26), q_end + timedelta(days=90),
          date(2027, 1, 25), date(2027, 1, 26)]  # fmt: skip
    assert values(store, "tax_declarations_late_3y", at) == [0, 1, 1, 1, 0]
    assert values(store, "tax_nil_declarations_3y", at) == [1, 1, 2, 1, 1]
    assert values(store, "tax_declarations_3y", at) == [1, 2, 9, 8, 7]


def test_a_return_for_a_period_longer_than_a_quarter_is_not_late_by_the_quarterly_rule(
    store: Store,
) -> None:
    """An annual income-tax return (period 1 January - 31 December, due 31 May) filed in May is
    not late; a quarterly one with its start given still is; a start that is not an ISO date
    leaves the return to the quarterly rule."""
    y_end = date(2023, 12, 31)
    may = date(2024, 5, 20)
    add_records(store, [
        rec("A1", "tax_declaration", may, amount=1.0, period_start="2023-01-01",
            period_end=y_end.isoformat()),
        rec("A2", "tax_declaration", may, amount=1.0, period_start="2023-07-01",
            period_end=y_end.isoformat()),  # half a year: 183 days
        rec("Q1", "tax_declaration", may, amount=1.0, period_start="2023-10-01",
            period_end=y_end.isoformat()),  # 91 days
        rec("Q2", "tax_declaration", may, amount=1.0, period_start="2023-09-30",
            period_end=y_end.isoformat()),  # 92 days: the longest a quarter is counted
        rec("Q3", "tax_declaration", may, amount=1.0, period_start="2023-09-29",
            period_end=y_end.isoformat()),  # 93 days
        rec("J1", "tax_declaration", may, amount=1.0, period_start="20230101",
            period_end=y_end.isoformat()),
    ])  # fmt: skip
    assert values(store, "tax_declarations_late_3y", [may]) == [3]  # Q1, Q2, J1
    assert values(store, "tax_declarations_3y", [may]) == [6]


def test_negative_records_decay_with_age(store: Store) -> None:
    """Weights 1 / 0.6 / 0.3 for records at most 1 / 2 / 3 calendar years old (DOMAIN §5): a
    record exactly one year old still weighs 1 (it weighed 0.6 when years were 365 days)."""
    add_records(store, [rec("P1", "admin_penalty", D0, severity="serious")])
    at = [date(2025, 1, 1), date(2025, 1, 2), date(2026, 1, 1), date(2026, 1, 2),
          date(2026, 12, 31), date(2027, 1, 1)]  # fmt: skip
    assert values(store, "general_penalties_decayed", at) == [1.0, 0.6, 0.6, 0.3, 0.3, 0.0]


def test_decay_years_are_calendar_years_across_29_february(store: Store) -> None:
    add_records(store, [
        rec("P1", "admin_penalty", date(2023, 3, 1), severity="serious"),
        rec("P2", "admin_penalty", date(2024, 2, 29), severity="serious", uscc=OTHER),
    ])  # fmt: skip
    # 365 days after 2023-03-01 is 2024-02-29: not yet a year
    at = [date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 2), date(2025, 2, 28)]
    assert values(store, "general_penalties_decayed", at) == [1.0, 1.0, 0.6, 0.6]
    # a leap day's record is a year old on 28 February
    at = [date(2025, 2, 28), date(2025, 3, 1), date(2026, 2, 28), date(2026, 3, 1)]
    assert values(store, "general_penalties_decayed", at, uscc=OTHER) == [1.0, 0.6, 0.6, 0.3]


# ---- repairs, withdrawals, corrections -------------------------------------------------------


@pytest.mark.parametrize("kind", ["repair", "withdrawal"])
def test_a_repair_or_withdrawal_stops_counting_from_its_day_once_recorded(
    store: Store, kind: str
) -> None:
    add_records(store, [
        rec("P1", "admin_penalty", D0, severity="general"),
        rec("P2", "admin_penalty", D0, severity="general", uscc=OTHER),
    ])  # fmt: skip
    add_events(store, [
        event("P1", kind, days(60), days(64)),  # learned four days after it took effect
        event("P2", kind, days(60), days(50)),  # decided ahead of the day it takes effect
    ])  # fmt: skip
    at = [days(59), days(60), days(63), days(64)]
    assert values(store, "penalties_12m", at) == [1, 1, 1, 0]
    assert values(store, "penalties_12m", at, uscc=OTHER) == [1, 0, 0, 0]


def test_penalties_count_for_the_period_of_the_publicity_rule(store: Store) -> None:
    """A warning counts its 3 months though never published; a minor fire decision a year; a
    general decision that revokes a licence the serious 3 years (the longest type applies)."""
    add_records(store, [
        rec("W1", "admin_penalty", D0, severity="minor", penalty_types=["warning"]),
        rec("F1", "admin_penalty", D0, severity="minor", penalty_types=["fine"], domain="fire"),
        rec("R1", "admin_penalty", D0, severity="general",
            penalty_types=["fine", "licence_revoked"], uscc=OTHER),
    ])  # fmt: skip
    # 3 months from 1 January 2024 end on 1 April (day 91), a year on 1 January 2025 (day 366)
    at = [days(90), days(91), days(365), days(366)]
    assert at[1::2] == [date(2024, 4, 1), date(2025, 1, 1)]
    assert values(store, "penalties_3y", at) == [2, 1, 1, 0]
    assert values(store, "penalties_3y", [days(1095), days(1096)], uscc=OTHER) == [1, 0]


def test_a_correction_counts_in_its_corrected_form_from_its_day(store: Store) -> None:
    add_records(store, [rec("P1", "admin_penalty", D0, severity="serious", amount=9000.0)])
    fix = {**event("P1", "correction", days(30), days(32)),
           "attributes": {"severity": "general", "amount": 900}}  # fmt: skip
    add_events(store, [fix])
    at = [days(31), days(32)]
    assert values(store, "serious_penalties_3y", at) == [1, 0]
    assert values(store, "penalties_3y", at) == [1, 1]
    assert values(store, "fines_3y", at) == [9000.0, 900.0]


def test_corrections_and_objections_do_not_stop_a_record_counting(store: Store) -> None:
    add_records(store, [rec("P1", "admin_penalty", D0, severity="general")])
    add_events(store, [event("P1", "correction", days(10), days(10)),
                       event("P1", "objection_opened", days(20), days(20))])  # fmt: skip
    assert values(store, "penalties_12m", [days(30)]) == [1]


# ---- listings ---------------------------------------------------------------------------------


def test_an_open_listing_closes_when_its_removal_is_recorded(store: Store) -> None:
    add_records(store, [
        rec("L1", "abnormal_operation_list", days(9), days(11), "listed", reason="unreachable"),
        rec("X1", "abnormal_operation_list", days(120), days(140), "removed", ref="L1"),
    ])  # fmt: skip
    at = [days(10), days(11), days(139), days(140)]
    assert values(store, "on_abnormal_list", at) == [0, 1, 1, 0]
    assert values(store, "abnormal_listings_3y", at) == [0, 1, 1, 1]  # the listing still happened


def test_a_removal_without_reference_closes_earlier_listings_of_its_list_only(
    store: Store,
) -> None:
    add_records(store, [
        rec("L1", "abnormal_operation_list", days(10), severity="listed"),
        rec("F1", "focus_attention_list", days(10), severity="listed"),
        rec("X1", "abnormal_operation_list", days(60), severity="removed"),
        rec("L2", "abnormal_operation_list", days(90), severity="listed"),
        rec("X2", "abnormal_operation_list", days(200), severity="removed"),  # same day as L3
        rec("L3", "abnormal_operation_list", days(200), severity="listed"),
    ])  # fmt: skip
    at = [days(50), days(60), days(100), days(200)]
    assert values(store, "on_abnormal_list", at) == [1, 0, 1, 0]
    assert values(store, "on_focus_list", at) == [1, 1, 1, 1]


def test_a_removal_closes_only_the_listing_it_refers_to(store: Store) -> None:
    add_records(store, [
        rec("D1", "dishonest_judgment_debtor", days(1), severity="listed", amount=10_000.0),
        rec("D2", "dishonest_judgment_debtor", days(2), severity="listed"),
        rec("Y1", "dishonest_judgment_debtor", days(30), severity="removed", ref="D1"),
        rec("Y2", "dishonest_judgment_debtor", days(40), severity="removed", ref="D2",
            uscc=OTHER),  # another company's removal does not close this company's listing
    ])  # fmt: skip
    assert values(store, "on_dishonest_debtor_list", [days(50)]) == [1]
    add_records(store, [rec("Y3", "dishonest_judgment_debtor", days(60), severity="removed",
                            ref="D2")])  # fmt: skip
    assert values(store, "on_dishonest_debtor_list", [days(50), days(60)]) == [1, 0]
    # a removal refers to its listing by record_id, whichever list it was filed under
    add_records(store, [
        rec("D3", "dishonest_judgment_debtor", days(61), severity="listed"),
        rec("Y4", "abnormal_operation_list", days(70), severity="removed", ref="D3"),
    ])  # fmt: skip
    assert values(store, "on_dishonest_debtor_list", [days(69), days(70)]) == [1, 0]


def test_a_listing_reopens_when_its_removal_is_withdrawn(store: Store) -> None:
    add_records(store, [
        rec("L1", "red_list", days(1), severity="listed", list="a_grade_taxpayer"),
        rec("X1", "red_list", days(30), severity="removed", ref="L1"),
    ])  # fmt: skip
    add_events(store, [event("X1", "withdrawal", days(45), days(45))])
    assert values(store, "on_red_list", [days(29), days(30), days(45)]) == [1, 0, 1]


def test_a_serious_dishonest_listing_ends_with_its_publicity_period(store: Store) -> None:
    add_records(store, [rec("S1", "serious_dishonest_list", D0, severity="listed")])
    at = [date(2026, 12, 31), date(2027, 1, 1)]  # 3 calendar years
    assert values(store, "on_serious_dishonest_list", at) == [1, 0]
    assert values(store, "serious_dishonest_listings", at) == [1, 0]


# ---- objections -------------------------------------------------------------------------------


def test_an_objection_flag_opens_and_closes(store: Store) -> None:
    add_records(store, [
        rec("P1", "admin_penalty", D0, severity="minor"),
        rec("P2", "complaint", days(5), days(400), "unverified", uscc=OTHER),
    ])  # fmt: skip
    add_events(store, [
        event("P1", "objection_opened", days(100), days(100)),  # after the record expired
        event("P1", "objection_closed", days(110), days(112)),
        event("P1", "objection_opened", days(200), days(201)),
        event("P2", "objection_opened", days(300), days(300)),  # P2 is recorded on day 400
    ])  # fmt: skip
    at = [days(99), days(100), days(111), days(112), days(200), days(201), days(399)]
    assert values(store, "objection_open", at) == [0, 1, 1, 0, 0, 1, 1]
    assert values(store, "objection_open", [days(300), days(399), days(400)], OTHER) == [0, 0, 1]


def test_an_objection_opened_and_closed_on_one_day_is_closed(store: Store) -> None:
    add_records(store, [rec("P1", "admin_penalty", D0, severity="general")])
    add_events(store, [event("P1", "objection_opened", days(10), days(10)),
                       event("P1", "objection_closed", days(10), days(11))])  # fmt: skip
    assert values(store, "objection_open", [days(10), days(11)]) == [1, 0]


def test_an_objection_filed_again_the_day_the_first_is_decided_is_open(store: Store) -> None:
    """A decision and a new objection on one day: the order they were stored in tells."""
    add_records(store, [rec("P1", "admin_penalty", D0, severity="general")])
    add_events(store, [event("P1", "objection_opened", days(3), days(3))])
    add_events(store, [event("P1", "objection_closed", days(10), days(10))])
    add_events(store, [event("P1", "objection_opened", days(10), days(10))])
    assert values(store, "objection_open", [days(9), days(10), days(11)]) == [1, 1, 1]


# ---- entity versions --------------------------------------------------------------------------


def test_an_entity_change_shows_only_from_its_recorded_date(store: Store) -> None:
    base = {"uscc": CO, "name": "郑州市某某商贸有限公司", "industry": "F52",
            "established_date": date(2019, 12, 20)}  # fmt: skip
    add_entities(store, [{**base, "registered_capital": 1_000_000.0, "status": "active",
                          "recorded_date": date(2020, 1, 5)}])  # fmt: skip
    add_entities(store, [{**base, "registered_capital": 2_000_000.0, "status": "deregistered",
                          "recorded_date": date(2025, 7, 10)}])  # fmt: skip
    at = [date(2020, 1, 4), date(2025, 7, 9), date(2025, 7, 10)]
    assert values(store, "active", at) == [0, 1, 0]
    assert values(store, "individual_business", at) == [0, 0, 0]
    assert values(store, "industry", at) == [None, "F52", "F52"]
    assert values(store, "entity_type", at) == [None, "enterprise", "enterprise"]
    assert values(store, "region", at) == [None, CO[2:8], CO[2:8]]
    assert values(store, "registered_capital_log", at) == [
        None, round(math.log10(1_000_001), 6), round(math.log10(2_000_001), 6)
    ]  # fmt: skip
    age = (date(2025, 7, 9) - date(2019, 12, 20)).days / 365.25
    assert values(store, "entity_age_years", at)[:2] == [None, round(age, 4)]


# ---- commitments ------------------------------------------------------------------------------


def test_commitments_are_honoured_once_due_and_unless_breached(store: Store) -> None:
    add_records(store, [
        rec("K1", "credit_commitment", D0, matter="licence conditions", due_date="2024-06-30"),
        rec("K2", "credit_commitment", D0),  # no due date: due on its event date
        rec("K3", "credit_commitment", D0, due_date="2024-03-01"),
        rec("B1", "commitment_breach", date(2024, 4, 1), date(2024, 4, 5), ref="K3"),
    ])  # fmt: skip
    at = [date(2024, 3, 1), date(2024, 4, 4), date(2024, 4, 5), date(2024, 6, 30)]
    assert values(store, "honoured_commitments_3y", at) == [2, 2, 1, 2]
    assert values(store, "commitment_breach_share_3y", at) == [0.0, 0.0, 1 / 3, 1 / 3]
    assert values(store, "commitments_3y", at) == [3, 3, 3, 3]
    assert values(store, "commitment_breaches_3y", at) == [0, 0, 1, 1]


def test_a_breach_filed_for_another_company_breaks_no_commitment_of_this_one(
    store: Store,
) -> None:
    add_records(store, [rec("K1", "credit_commitment", D0),
                        rec("B1", "commitment_breach", days(5), uscc=OTHER, ref="K1")])  # fmt: skip
    assert values(store, "honoured_commitments_3y", [days(10)]) == [1]


def test_the_breach_share_is_the_share_of_the_windows_commitments_broken(store: Store) -> None:
    add_records(store, [
        rec("K0", "credit_commitment", D0 - timedelta(days=4 * 365)),  # outside the 3-year window
        rec("B0", "commitment_breach", D0, ref="K0"),  # breaks the old one
        rec("K1", "credit_commitment", D0),
        rec("B9", "commitment_breach", D0),  # refers to nothing
    ])  # fmt: skip
    assert values(store, "commitment_breach_share_3y", [days(10)]) == [0.0]
    assert values(store, "commitment_breaches_3y", [days(10)]) == [2]


def test_without_commitments_the_breach_share_is_null(store: Store) -> None:
    add_records(store, [rec("B1", "commitment_breach", D0)])
    assert values(store, "commitment_breach_share_3y", [days(10)]) == [None]
    assert values(store, "honoured_commitments_3y", [days(10)]) == [0]


# ---- latest values ----------------------------------------------------------------------------


def test_latest_amount_is_the_latest_records_own_amount(store: Store) -> None:
    signal, rating = "third_party_signal", "ecommerce_rating"
    add_records(store, [
        rec("S1", signal, D0, amount=4.5, name=rating),
        rec("S3", signal, days(30), amount=3.5, name=rating, source="a"),
        rec("S2", signal, days(30), amount=4.0, name=rating, source="b"),  # same day: S3 wins
        rec("S4", signal, days(60), amount=None, name=rating),  # the latest says nothing
        rec("S5", signal, days(70), amount=1.0, name="other"),
    ])  # fmt: skip
    at = [days(29), days(30), days(59), days(60), days(70 + 365)]
    assert values(store, "ecommerce_rating", at) == [4.5, 3.5, 3.5, None, None]
    assert values(store, "third_party_signals_12m", at) == [1, 3, 3, 4, 0]


def test_latest_value_is_the_latest_records_even_without_a_value(store: Store) -> None:
    grades = FeatureSpec("tax_grade_ab", "operations", ("tax_credit_grade",), "latest_value", 1,
                         "纳税等级{value}", "tax grade {value}",
                         values=(("A", 1.0), ("B", 2.0)))  # fmt: skip
    add_records(store, [rec("G1", "tax_credit_grade", D0, severity="B", amount=80.0),
                        rec("G2", "tax_credit_grade", days(365), severity="C")])  # fmt: skip
    at = [days(364), days(365)]
    assert values(store, "tax_grade_ab", at, specs=(grades,)) == [2.0, None]


def test_worst_value_is_the_worst_grade_in_the_window(store: Store) -> None:
    add_records(store, [rec("G1", "tax_credit_grade", D0, severity="D"),
                        rec("G2", "tax_credit_grade", days(365), severity="C"),  # better, later
                        rec("G3", "tax_credit_grade", days(730), severity="A"),
                        rec("G4", "tax_credit_grade", days(800), severity="M")])  # fmt: skip
    at = [D0 - timedelta(days=1), days(364), days(365), days(730), date(2026, 1, 1),
          date(2026, 12, 30), date(2026, 12, 31), date(2028, 3, 10), date(2028, 3, 11)]  # fmt: skip
    # D counts for 2 calendar years (until 1 January 2026: day 731), C (31 December 2024)
    # until 31 December 2026, then only A and M (11 March 2026, until 11 March 2028)
    assert days(800) == date(2026, 3, 11)
    assert values(store, "tax_grade_worst_2y", at) == [None, 4.0, 4.0, 4.0, 3.0, 3.0, 2.5, 2.5,
                                                       None]  # fmt: skip
    ungraded = FeatureSpec("tax_grade_ab_worst", "operations", ("tax_credit_grade",),
                           "worst_value", 1, "纳税等级{value}", "tax grade {value}",
                           values=(("A", 1.0), ("B", 2.0)), model_missing=2.5)  # fmt: skip
    assert values(store, "tax_grade_ab_worst", [days(365), days(800)], specs=(ungraded,)) == [
        None,
        1.0,
    ]  # severities without a value do not count


# ---- the spec set -----------------------------------------------------------------------------


def test_the_spec_set_is_valid_and_reads_every_catalogue_category() -> None:
    validate_specs()
    assert len(SPECS) >= 40
    catalogue = default_catalogue()
    read = {c for s in SPECS for c in s.categories}
    assert set(catalogue.codes) <= read
    assert set(LIST_CATEGORIES) == set(list_categories(catalogue))


def test_validation_rejects_a_spec_against_the_records_polarity() -> None:
    wrong = dataclasses.replace(by_name()["penalties_12m"], direction=-1)
    with pytest.raises(ValueError, match="penalties_12m"):
        validate_specs(tuple(wrong if s.name == "penalties_12m" else s for s in SPECS))
    with pytest.raises(ValueError, match="read by no feature"):
        validate_specs(tuple(s for s in SPECS if s.name != "honours_3y"))


def test_the_spec_version_is_stable_and_changes_with_any_definition() -> None:
    version = spec_version()
    assert re.fullmatch(r"fs-[0-9a-f]{12}", version)
    assert spec_version(tuple(dataclasses.replace(s) for s in SPECS)) == version
    script = "from features.specs import spec_version; print(spec_version())"
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):  # not dependent on hashing or dict order in this process
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, env=env, cwd=root)  # fmt: skip
        assert out.stdout.strip() == version
    first = SPECS[0]
    assert isinstance(first, FeatureSpec)
    changed = [
        dataclasses.replace(first, window_months=13),
        dataclasses.replace(first, reason_en=first.reason_en + "."),
        dataclasses.replace(first, direction=0),
        dataclasses.replace(first, severities=("serious",)),
    ]
    versions = {spec_version((c, *SPECS[1:])) for c in changed}
    assert version not in versions and len(versions) == len(changed)


def test_the_query_transpiles_to_spark_sql() -> None:
    spark = to_spark_sql(features_sql())
    assert "MAX_BY" in spark.upper() or "GET_JSON_OBJECT" in spark.upper()
    assert "json_extract_string" not in spark and "arg_max" not in spark.lower()
    sqlglot.parse_one(spark, read="spark")  # the output is itself valid Spark SQL


def test_feature_columns_are_integers_doubles_or_text(store: Store) -> None:
    """Models and the public score read plain numbers: no DECIMAL (a bare SQL literal like 0.6
    is one) reaches a feature column."""
    add_records(store, [rec("P1", "admin_penalty", D0, severity="general"),
                        rec("G1", "tax_credit_grade", D0, severity="A")])  # fmt: skip
    table = build_features_at(store, points_table([(CO, days(1))]))
    for spec in SPECS:
        kind = table.schema.field(spec.name).type
        if getattr(spec, "categorical", False):
            assert pa.types.is_string(kind), (spec.name, kind)
        else:
            assert pa.types.is_integer(kind) or pa.types.is_float64(kind), (spec.name, kind)


def test_a_feature_may_not_mix_a_category_kept_apart_with_others() -> None:
    """Tax returns and annual reports are aggregated on their own (features.builder
    APART_CATEGORIES); a feature reading one of them with another category is refused."""
    mixed = FeatureSpec("mixed", "operations", ("tax_declaration", "annual_report"), "count", 0,
                        "x{value}", "x {value}")  # fmt: skip
    with pytest.raises(ValueError, match=r"mixed: a feature reading .* may read nothing else"):
        features_sql((mixed,))
    alone = FeatureSpec(
        "alone", "operations", ("tax_declaration",), "count", 0, "x{value}", "x {value}"
    )
    assert "t0 AS (" in features_sql((alone,))


def test_a_list_flag_s_evidence_is_the_listings_still_open(store: Store) -> None:
    """A veto's evidence names the listing that is open, not one removed earlier (a removed
    listing in its publicity period once showed as the basis of an abnormal-list veto)."""
    from features.evidence import feature_evidence

    add_records(store, [
        rec("L1", "abnormal_operation_list", D0, severity="listed"),
        rec("X1", "abnormal_operation_list", days(40), severity="removed", ref="L1"),
        rec("L2", "abnormal_operation_list", days(200), severity="listed"),
        rec("P1", "admin_penalty", days(10), severity="general"),
    ])  # fmt: skip
    at = days(300)
    assert values(store, "on_abnormal_list", [at]) == [1]
    wanted = pa.Table.from_pylist([
        {"uscc": CO, "as_of": at, "feature": f}
        for f in ("on_abnormal_list", "abnormal_listings_3y", "penalties_3y")
    ])  # fmt: skip
    found = feature_evidence(store, wanted)
    flag = found[(CO, at, "on_abnormal_list")]
    assert (flag["records"], flag["matched"], flag["latest"]) == (["L2"], 1, days(200))
    assert found[(CO, at, "abnormal_listings_3y")]["records"] == ["L2", "L1"]
    assert found[(CO, at, "penalties_3y")]["records"] == ["P1"]
    only_flag = feature_evidence(store, wanted.slice(0, 1))
    assert list(only_flag) == [(CO, at, "on_abnormal_list")]
    gone = feature_evidence(store, pa.Table.from_pylist(
        [{"uscc": CO, "as_of": days(100), "feature": "on_abnormal_list"}]))  # fmt: skip
    assert gone == {}


def test_evidence_is_the_records_a_value_is_read_from(store: Store) -> None:
    """A worst grade cites the records with that grade (not an A grade given since), a largest
    fine the penalty with that fine, a latest signal the latest record; a count cites all."""
    from features.evidence import feature_evidence

    add_records(store, [
        rec("G1", "tax_credit_grade", D0, severity="D"),
        rec("G2", "tax_credit_grade", days(100), severity="D"),
        rec("G3", "tax_credit_grade", days(365), severity="C"),
        rec("G4", "tax_credit_grade", days(500), severity="A"),
        rec("P1", "admin_penalty", days(10), severity="serious", amount=500.0),
        rec("P2", "admin_penalty", days(20), severity="serious", amount=2000.0),
        rec("P3", "admin_penalty", days(30), severity="serious", amount=100.0),
        rec("T1", "third_party_signal", days(400), amount=30.0, name="supplier_payment_delay_days"),
        rec("T9", "third_party_signal", days(450), amount=12.0, name="supplier_payment_delay_days"),
        rec("T8", "third_party_signal", days(450), amount=5.0, name="supplier_payment_delay_days"),
        rec("T2", "third_party_signal", days(460), amount=90.0, name="utility_arrears_months"),
    ])  # fmt: skip
    at, later = days(600), days(850)
    features = ["tax_grade_worst_2y", "max_fine_3y", "supplier_payment_delay_days",
                "penalties_3y", "tax_grade_cd_3y"]  # fmt: skip
    got = [values(store, f, [at]) for f in features[:3]]
    assert got == [[4.0], [2000.0], [12.0]]
    assert values(store, "tax_grade_worst_2y", [later]) == [3.0]
    wanted = pa.Table.from_pylist(
        [{"uscc": CO, "as_of": at, "feature": f} for f in features]
        + [{"uscc": CO, "as_of": later, "feature": "tax_grade_worst_2y"}]
    )
    found = feature_evidence(store, wanted)

    def cited(feature: str, on: date) -> tuple[list[str], int, date]:
        e = found[(CO, on, feature)]
        return e["records"], e["matched"], e["latest"]

    assert cited("tax_grade_worst_2y", at) == (["G2", "G1"], 2, days(100))
    # the D grades have left the 2-year window: the C is now the worst
    assert cited("tax_grade_worst_2y", later) == (["G3"], 1, days(365))
    assert cited("max_fine_3y", at) == (["P2"], 1, days(20))
    # the latest by date, then by record id (as the builder picks it), not the largest value
    assert cited("supplier_payment_delay_days", at) == (["T9"], 1, days(450))
    assert cited("penalties_3y", at) == (["P3", "P2", "P1"], 3, days(30))
    assert cited("tax_grade_cd_3y", at) == (["G3", "G2", "G1"], 3, days(365))


def test_only_counts_in_a_findings_attribute_are_summed(store: Store) -> None:
    """A negative, NaN or infinite number of findings is not a count: it neither counts nor
    lowers the sum (a negative record must never lower a feature with a risk direction)."""
    add_records(store, [
        rec("S1", "spot_check", D0, severity="serious", findings_serious=3),
        *(rec(f"S{2 + i}", "spot_check", D0, severity="problem", findings_serious=bad)
          for i, bad in enumerate([-3, "NaN", "-inf", "Infinity", "-1e9"])),
        rec("S9", "spot_check", D0, severity="problem", findings_serious="2"),
    ])  # fmt: skip
    assert values(store, "spot_check_serious_findings_3y", [days(1)]) == [5.0]


def test_sums_are_exact_whatever_order_the_rows_are_added_in(store: Store) -> None:
    """A double sum depends on the order DuckDB's threads add rows in: from run to run, 1,024
    companies of 1 M differed in the last bits of one feature. Sums are exact (in decimal, then
    the nearest double): 0.1 + 0.2 + 0.3 yuan of fines is 0.6 (0.6000000000000001 in double
    arithmetic), and a penalty weighing 0.6 with one weighing 0.3 is 0.9 (not 0.8999999999999999).
    Terms of 1e16 or more are added as doubles: nothing overflows or is left out, and a count
    of 9e31 findings twice is 1.8e32 (as DECIMAL it overflowed and stopped the whole build);
    tiny amounts keep 10 decimals."""
    add_records(store, [
        *(rec(f"P{i}", "admin_penalty", D0, severity="minor", amount=a)
          for i, a in enumerate([0.1, 0.2, 0.3])),
        rec("S1", "admin_penalty", date(2022, 6, 1), severity="serious"),
        rec("S2", "admin_penalty", date(2023, 6, 1), severity="serious"),
        rec("H1", "admin_penalty", D0, severity="minor", amount=1e20, uscc=OTHER),
        rec("H2", "admin_penalty", D0, severity="minor", amount=5.0, uscc=OTHER),
        *(rec(f"T{i}", "admin_penalty", D0, severity="minor", amount=1e-7, uscc=CODES[2])
          for i in range(3)),
        *(rec(f"F{i}", "spot_check", D0, severity="serious", findings_serious=9e31, uscc=OTHER)
          for i in range(2)),
    ])  # fmt: skip
    assert sum([0.1, 0.2, 0.3]) != 0.6 and 0.6 + 0.3 != 0.9  # what double sums give
    assert values(store, "fines_3y", [days(1)]) == [0.6]
    assert values(store, "general_penalties_decayed", [date(2024, 12, 1)]) == [0.9]
    assert values(store, "fines_3y", [days(1)], uscc=OTHER) == [1e20 + 5.0]
    assert values(store, "spot_check_serious_findings_3y", [days(1)], uscc=OTHER) == [1.8e32]
    assert builder_rows(store, [(CODES[2], days(1))])[0]["fines_3y"] == 3e-7


def test_points_built_in_parts_give_the_table_of_one_query(store: Store) -> None:
    """`build_features_at` builds `POINTS_AT_ONCE` points per query (2 M companies in one ran
    out of DuckDB's 6 GB): any size of part gives the same rows in the same order (by code,
    then date), duplicates of a point included once."""
    add_entities(store, [{"uscc": c, "name": f"公司{i}", "recorded_date": D0,
                          "established_date": date(2015, 1, 1)}
                         for i, c in enumerate(CODES[:6])])  # fmt: skip
    add_records(store, [
        rec(f"P{i}", "admin_penalty", days(30 * i), severity=("minor", "general")[i % 2],
            amount=100.0 * i, uscc=CODES[i % 6])
        for i in range(24)
    ])  # fmt: skip
    dates = [days(0), days(200), days(400), days(700)]
    pairs = [(c, d) for d in dates for c in reversed(CODES[:6])] * 2  # unordered, twice each
    points = pa.table({"uscc": [c for c, _ in pairs], "as_of": [d for _, d in pairs]})
    whole = build_features_at(store, points)
    assert whole.num_rows == 24
    assert [(r["uscc"], r["as_of"]) for r in whole.select(["uscc", "as_of"]).to_pylist()] == \
        sorted((c, d) for c in CODES[:6] for d in dates)  # fmt: skip
    for at_once in (1, 5, 7, 24, 25):
        assert build_features_at(store, points, points_at_once=at_once).equals(whole), at_once
