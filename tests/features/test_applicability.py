"""Features that do not apply to an entity (`FeatureSpec.applies_to`): annual reports are filed
with market regulation by enterprises, individual businesses and cooperatives only. For anyone
else those features are null (not 0) on every date, whatever records arrive, and the public
evaluation gives them no points; an enterprise without reports still has 0 (not filed)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from features.scorecard import Scorecard, load_config
from features.specs import (
    ANNUAL_REPORT_FILERS,
    SPECS,
    FeatureSpec,
    by_name,
    spec_version,
    validate_specs,
)
from records import uscc
from records.store import Store
from records.uscc import entity_type_of_code
from tests.features.scenarios import CODES, NON_FILERS
from tests.features.stores import (
    add_entities,
    add_records,
    builder_rows,
    differences,
    reference_for,
)

ENTERPRISE, SILENT_ENTERPRISE, INDIVIDUAL = CODES[0], CODES[1], CODES[4]
SOCIAL, INSTITUTION, ORGAN = NON_FILERS
DATES = [date(2022, 12, 31), date(2024, 7, 1), date(2025, 7, 15), date(2026, 3, 31)]

ANNUAL_REPORT_FEATURES = [
    s.name for s in SPECS if isinstance(s, FeatureSpec) and "annual_report" in s.categories
]


def _unregistered() -> str:
    """Another social group's code, of which no entity version is known."""
    return uscc.generate_many(np.random.default_rng(2028), ["52"], ["410105"])[0]


def _entity(code: str, **kw: Any) -> dict[str, Any]:
    return {"uscc": code, "name": f"某某{code[:2]}", "industry": "S94", "region": "410102",
            "registered_capital": 100000.0, "established_date": date(2015, 3, 1),
            "status": "active", "recorded_date": date(2015, 3, 5), **kw}  # fmt: skip


def _report(rid: str, code: str, day: date, severity: str) -> dict[str, Any]:
    return {"record_id": rid, "uscc": code, "category": "annual_report", "severity": severity,
            "event_date": day, "recorded_date": day, "source_dept": "samr", "amount": None,
            "attributes": json.dumps({"year": day.year - 1})}  # fmt: skip


def _penalty(rid: str, code: str, day: date) -> dict[str, Any]:
    return {"record_id": rid, "uscc": code, "category": "admin_penalty", "severity": "general",
            "event_date": day, "recorded_date": day, "source_dept": "samr", "amount": 5000.0,
            "attributes": "{}"}  # fmt: skip


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[dict[str, Any]]]:
    """Filers and non-filers with the same annual-report records (a department that sends them
    for a social organisation too), an enterprise and a social group without any, and a social
    group known by its records alone (no entity version)."""
    store = Store(tmp_path_factory.mktemp("applicability") / "store", memory_limit="1GB")
    add_entities(store, [_entity(c) for c in (ENTERPRISE, SILENT_ENTERPRISE, INDIVIDUAL,
                                              SOCIAL, INSTITUTION, ORGAN)])  # fmt: skip
    reports = []
    for i, code in enumerate((ENTERPRISE, INDIVIDUAL, SOCIAL, INSTITUTION, ORGAN, _unregistered())):
        reports += [
            _report(f"AR{i}a", code, date(2023, 5, 10), "on_time"),
            _report(f"AR{i}b", code, date(2024, 7, 1), "missing"),
            _report(f"AR{i}c", code, date(2024, 9, 1), "late"),
            _report(f"AR{i}d", code, date(2025, 7, 1), "missing"),
            _penalty(f"P{i}", code, date(2025, 6, 1)),
        ]
    add_records(store, reports)
    points = [(c, d) for c in (ENTERPRISE, SILENT_ENTERPRISE, INDIVIDUAL, *NON_FILERS,
                               _unregistered()) for d in DATES]  # fmt: skip
    got = builder_rows(store, points)
    problems = differences(got, reference_for(store).rows(points))
    assert not problems, "builder and reference differ:\n" + "\n".join(problems)
    return store, got


def _rows(got: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in got if r["uscc"] == code]


def test_the_annual_report_features_are_declared_for_filers_only() -> None:
    assert len(ANNUAL_REPORT_FEATURES) == 4
    assert set(ANNUAL_REPORT_FILERS) == {"enterprise", "individual_business", "cooperative"}
    for name in ANNUAL_REPORT_FEATURES:
        assert by_name()[name].applies_to == ANNUAL_REPORT_FILERS  # type: ignore[union-attr]
    assert [entity_type_of_code(c) for c in NON_FILERS] == [
        "social_organisation",
        "public_institution",
        "other",
    ]


@pytest.mark.parametrize("code", [SOCIAL, INSTITUTION, ORGAN], ids=["51", "12", "11"])
def test_a_non_filer_has_no_annual_report_features_on_any_date(
    market: tuple[Store, list[dict[str, Any]]], code: str
) -> None:
    _store, got = market
    rows = _rows(got, code)
    assert len(rows) == len(DATES)
    for row in rows:
        for name in ANNUAL_REPORT_FEATURES:
            assert row[name] is None, (row["as_of"], name, row[name])
        assert row["penalties_3y"] == (1 if row["as_of"] >= date(2025, 6, 1) else 0)  # others count


def test_a_non_filer_known_by_its_code_alone_has_none_either(
    market: tuple[Store, list[dict[str, Any]]],
) -> None:
    _store, got = market
    for row in _rows(got, _unregistered()):
        assert row["entity_type"] is None
        assert all(row[name] is None for name in ANNUAL_REPORT_FEATURES)


def test_filers_count_their_reports_and_a_silent_enterprise_has_zero(
    market: tuple[Store, list[dict[str, Any]]],
) -> None:
    _store, got = market
    for code in (ENTERPRISE, INDIVIDUAL):
        last = _rows(got, code)[-1]
        counts = [last[name] for name in ANNUAL_REPORT_FEATURES]
        assert dict(zip(ANNUAL_REPORT_FEATURES, counts, strict=True)) == {
            "annual_reports_missing_3y": 2, "annual_reports_late_3y": 1,
            "annual_reports_on_time_3y": 1, "annual_reports_missing_all": 2,
        }  # fmt: skip
    for row in _rows(got, SILENT_ENTERPRISE):  # no report is a missing report, a real negative
        assert [row[name] for name in ANNUAL_REPORT_FEATURES] == [0, 0, 0, 0]


def test_the_evaluation_gives_a_non_filer_neither_deduction_nor_addition(
    market: tuple[Store, list[dict[str, Any]]],
) -> None:
    _store, got = market
    card = Scorecard(load_config())
    last = [r for r in got if r["as_of"] == DATES[-1]]
    scored = {r["uscc"]: r for r in card.score(pa.Table.from_pylist(last)).to_pylist()}
    base = card.config.base_share * card.config.dimensions["operations"]
    for code in (SOCIAL, INSTITUTION, ORGAN, _unregistered(), SILENT_ENTERPRISE):
        assert scored[code]["points_operations"] == base, code
        assert not {d["feature"] for d in scored[code]["top_deductions"]} & set(
            ANNUAL_REPORT_FEATURES
        )
    # the same records cost an enterprise points, and it is told which
    assert scored[ENTERPRISE]["points_operations"] < base
    assert {d["feature"] for d in scored[ENTERPRISE]["top_deductions"]} & set(
        ANNUAL_REPORT_FEATURES
    )
    # other dimensions count alike for both: the penalty is deducted from each
    assert scored[SOCIAL]["points_supervision"] == scored[ENTERPRISE]["points_supervision"]
    assert scored[SOCIAL]["points_supervision"] < card.config.base_share * 400


def test_the_published_method_says_which_rules_apply_to_whom() -> None:
    table = Scorecard(load_config()).table()
    assert "neither deduction nor addition" in table
    lines = [line for line in table.splitlines() if "annual_reports_missing_3y" in line]
    assert lines and "applies to: enterprise, individual_business, cooperative" in lines[0]
    tax = next(line for line in table.splitlines() if "tax_grade_cd_3y" in line)
    assert "applies to" not in tax


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"applies_to": ("enterprise", "company")}, "applies_to must name distinct entity types"),
        ({"applies_to": ()}, "applies_to must name distinct entity types"),
        ({"aggregation": "days_since_last", "direction": -1, "model_missing": None},
         "null without a record"),
        ({"model_missing": 0.0}, "model_missing"),
    ],
)  # fmt: skip
def test_applicability_must_leave_null_meaning_not_applicable(
    change: dict[str, Any], message: str
) -> None:
    spec = by_name()["annual_reports_missing_3y"]
    assert isinstance(spec, FeatureSpec)
    bad = dataclasses.replace(spec, name="bad", **change)
    with pytest.raises(ValueError, match=message):
        validate_specs((*SPECS, bad))


def test_applicability_is_part_of_the_spec_and_method_versions() -> None:
    """Results computed before the rule (0 for non-filers) and after it never share a version:
    a model artifact of the old spec is refused, and stored evaluations keep their method."""
    everyone = tuple(
        dataclasses.replace(s, applies_to=None) if isinstance(s, FeatureSpec) else s for s in SPECS
    )
    assert spec_version(everyone) != spec_version()
    config = load_config()
    assert Scorecard(config, everyone).method_version != Scorecard(config).method_version
