"""Behaviour of the trained tier model that must always hold.

- Adding a negative record (any negative category and severity of the catalogue) never lowers a
  company's risk nor improves its tier.
- The veto rules and the defaults always hold (property test over random inputs, and on a real
  population).
- Reasons are additive: contributions plus the base value equal the raw score, and the reasons'
  contributions are those of their features.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.builder import build_features
from features.specs import (
    ANNUAL_REPORT_FILERS,
    SPECS,
    FeatureSpec,
    spec_version,
    validate_specs,
)
from models.bundle import GOOD_HISTORY_FEATURES, SpecMismatch, TierModel, has_history
from models.risk import model_columns
from models.tiers import TIERS, TierPolicy
from records.catalogue import default_catalogue
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.train import TrainConfig, train

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Store, TierModel]:
    root = tmp_path_factory.mktemp("behaviour")
    store = Store(root / "store")
    sim = simulate(SimulationConfig(companies=8000, years=4, seed=11, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, sim.records, "records", "sim", today=END, history=True)
    outcome = train(store, TrainConfig())
    return root, store, outcome.model


def _negative_kinds() -> list[tuple[str, str | None]]:
    kinds = []
    for c in default_catalogue().categories:
        for sev in c.severities or [None]:
            if c.polarity_of(sev) == "negative":
                kinds.append((c.code, sev))
    return kinds


def test_every_negative_kind_is_covered() -> None:
    kinds = _negative_kinds()
    assert len(kinds) >= 25
    assert {"admin_penalty", "serious_dishonest_list", "spot_check", "court_judgment"} <= {
        c for c, _ in kinds
    }


def test_a_negative_record_never_lowers_risk_nor_improves_the_tier(
    province: tuple[Path, Store, TierModel],
) -> None:
    root, store, model = province
    before = build_features(store, END).to_pandas()
    before = before[before["active"] > 0].reset_index(drop=True)
    kinds = _negative_kinds()
    # every kind on companies across the whole range of risk, and on companies without history
    rng = np.random.default_rng(0)
    scored = model.score(before, reasons=0)
    order = np.argsort(scored["probability"].to_numpy())
    no_history = np.flatnonzero(
        before[[s.name for s in SPECS if isinstance(s, FeatureSpec) and s.aggregation == "count"]]
        .fillna(0)
        .sum(axis=1)
        .to_numpy()
        == 0
    )
    order = order[~np.isin(order, no_history)]
    per_kind = 36
    step = len(order) // per_kind
    assert step > len(kinds)
    spare = rng.permutation(no_history)
    picks = []
    for k in range(len(kinds)):
        spread = order[np.arange(per_kind) * step + k]  # distinct companies for every kind
        extra = spare[4 * k : 4 * k + 4]
        picks.extend((int(i), k) for i in np.concatenate([spread, extra]).astype(int))
    assert len({i for i, _ in picks}) == len(picks)
    rows = []
    for n, (i, k) in enumerate(picks):
        category, severity = kinds[k]
        day = END - timedelta(days=20 + n % 300)
        rows.append(
            {
                "record_id": f"TEST-NEG-{n:06d}",
                "uscc": before["uscc"].iloc[i],
                "category": category,
                "event_date": day,
                "recorded_date": day + timedelta(days=3),
                "severity": severity,
                "amount": 5000.0 if category in ("admin_penalty", "court_judgment") else None,
                "attributes": "{}",
            }
        )
    copy = root / "with-negative"
    shutil.copytree(root / "store", copy)
    changed = Store(copy)
    result = ingest_table(changed, pa.Table.from_pylist(rows), "records", "test", today=END)
    assert result.quarantined == 0, result.by_reason
    # each company got one record of one kind: compare it with itself before
    companies = sorted({r["uscc"] for r in rows})
    after = build_features(changed, END, companies).to_pandas().set_index("uscc")
    base = before.set_index("uscc").loc[companies]
    p0 = model.score(base.reset_index(), reasons=0).set_index("uscc")
    p1 = model.score(after.reset_index(), reasons=0).set_index("uscc")
    for column in ("raw_score", "probability"):
        drop = (p1[column] - p0[column]).loc[companies]
        assert (drop >= -1e-12).all(), drop[drop < -1e-12].head()
    t0 = p0["tier"].map(TIERS.index)
    t1 = p1["tier"].map(TIERS.index)
    assert (t1 >= t0).all(), list(p0.index[t1 < t0][:5])
    # the records did count: the features of nearly every company moved, and where the
    # model reads them, risk rose (a small model reads few features: measured 7 % here)
    names = model_columns()
    moved = (base[names].astype(str) != after.loc[companies, names].astype(str)).any(axis=1)
    assert moved.mean() > 0.9
    assert (p1["raw_score"] > p0["raw_score"] + 1e-9).mean() > 0.03


def test_negative_records_feed_no_undirected_feature() -> None:
    validate_specs()
    bad = FeatureSpec("judgments_any", "operations", ("court_judgment",), "count", 0,
                      "司法判决{value}件", "{value} judgments")  # fmt: skip
    with pytest.raises(ValueError, match="reads negative records court_judgment/defendant"):
        validate_specs((*SPECS, bad))


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.floats(0, 1),  # probability
            st.booleans(), st.booleans(), st.booleans(),  # serious, abnormal, debtor lists
            st.booleans(), st.booleans(),  # has history, good history
        ),
        min_size=1, max_size=60,
    )
)  # fmt: skip
def test_vetoes_and_defaults_always_hold(
    data: list[tuple[float, bool, bool, bool, bool, bool]],
) -> None:
    p, serious, abnormal, debtor, history, good = (np.array(c) for c in zip(*data, strict=True))
    policy = TierPolicy(thresholds=(0.2, 0.5, 0.8)).fit(p)
    features = {
        "on_serious_dishonest_list": serious.astype(float),
        "on_abnormal_list": abnormal.astype(float),
        "on_dishonest_debtor_list": debtor.astype(float),
    }
    tiers, reasons = policy.assign(p, features, history, good)
    level = np.array([TIERS.index(t) for t in tiers])
    model_level = np.searchsorted([0.2, 0.5, 0.8], p, side="left")
    assert (level[serious] == 3).all()
    assert (level[abnormal | debtor] >= 2).all()
    assert (level >= np.where(history, model_level, 1)).all()  # overrides only raise
    plain = ~serious & ~abnormal & ~debtor
    assert (level[plain & ~history] == 1).all()
    assert (
        level[plain & history & ~good] == np.maximum(model_level, 1)[plain & history & ~good]
    ).all()
    assert (level[plain & history & good] == model_level[plain & history & good]).all()
    for i, rs in enumerate(reasons):
        codes = [r["code"] for r in rs]
        assert ("veto:on_serious_dishonest_list" in codes) == bool(serious[i])
        assert ("veto:on_abnormal_list" in codes) == bool(abnormal[i])
        assert ("no_history" in codes) == (not history[i])


def test_vetoes_hold_on_the_population(province: tuple[Path, Store, TierModel]) -> None:
    _root, store, model = province
    feats = build_features(store, END).to_pandas()
    scored = model.score(feats, reasons=3)
    serious = feats["on_serious_dishonest_list"].fillna(0).to_numpy() > 0
    listed = (feats[["on_abnormal_list", "on_dishonest_debtor_list"]].fillna(0).to_numpy() > 0).any(
        axis=1
    )
    assert serious.any() and listed.any()
    assert (scored["tier"][serious] == "D").all()
    assert scored["tier"][listed].isin(["C", "D"]).all()
    # vetoes come first among the reasons, and every company on a list says so
    for tier_reasons, s, lst in zip(scored["reasons"], serious, listed, strict=True):
        kinds = [r["kind"] for r in tier_reasons]
        assert kinds == sorted(kinds, key=lambda k: {"veto": 0, "default": 1, "model": 2}[k])
        if s or lst:
            assert kinds[0] == "veto"
    good = feats[list(GOOD_HISTORY_FEATURES)].fillna(0).sum(axis=1).to_numpy() > 0
    assert not (scored["tier"].to_numpy()[~good] == "A").any()


def test_reasons_are_additive_to_the_raw_score(province: tuple[Path, Store, TierModel]) -> None:
    _root, store, model = province
    feats = build_features(store, END).to_pandas().sample(500, random_state=1)
    scored = model.score(feats, reasons=5)
    contrib = model.risk.contributions(feats)
    np.testing.assert_allclose(contrib.sum(axis=1), scored["raw_score"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        model.risk.calibrate(scored["raw_score"].to_numpy()), scored["probability"], atol=1e-12
    )
    names = model_columns()
    for row, reasons in zip(contrib, scored["reasons"], strict=True):
        model_reasons = [r for r in reasons if r["kind"] == "model"]
        assert len(model_reasons) <= 5
        values = [r["contribution"] for r in model_reasons]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        for r in model_reasons:
            assert r["contribution"] == pytest.approx(row[names.index(r["code"])], abs=1e-4)
            assert r["zh"] and r["en"]


ANNUAL_REPORT_FEATURES = [
    s.name for s in SPECS if isinstance(s, FeatureSpec) and "annual_report" in s.categories
]


def test_annual_reports_are_never_reasons_of_those_who_file_none(
    province: tuple[Path, Store, TierModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Social organisations file no annual report with market regulation: their annual-report
    features are missing (not 0) and never among their reasons, at any tier; the reasons of
    enterprises, individual businesses and cooperatives are what they were without the rule."""
    import models.reasons

    _root, store, model = province
    feats = build_features(store, END).to_pandas()
    filer = feats["entity_type"].isin(ANNUAL_REPORT_FILERS).to_numpy()
    assert (~filer).sum() >= 50 and (feats["entity_type"][~filer] == "social_organisation").all()
    assert feats.loc[~filer, ANNUAL_REPORT_FEATURES].isna().all().all()
    assert feats.loc[filer, ANNUAL_REPORT_FEATURES].notna().all().all()
    assert (feats.loc[filer, "annual_reports_on_time_3y"] == 0).any()  # a real 0 stays 0
    scored = model.score(feats, reasons=5)
    for reasons, files in zip(scored["reasons"], filer, strict=True):
        if not files:
            assert not {r["code"] for r in reasons} & set(ANNUAL_REPORT_FEATURES), reasons
    # where the model gives the missing value a positive contribution, the rule is what keeps
    # it out: without it, every positive contribution of a non-filer's is a reason
    contrib = model.risk.contributions(feats.loc[~filer])
    columns = [model_columns().index(n) for n in ANNUAL_REPORT_FEATURES]
    blamed = (contrib[:, columns] > 1e-4).any(axis=1)
    positive = (contrib[:, columns] > 0).any(axis=1)
    monkeypatch.setattr(models.reasons, "_without_not_applicable", lambda c, *_: c)
    every = model.score(feats.loc[~filer], reasons=len(model_columns()))["reasons"]
    shown = [bool({r["code"] for r in rs} & set(ANNUAL_REPORT_FEATURES)) for rs in every]
    assert all(s for s, b in zip(shown, blamed, strict=True) if b)
    assert not any(s for s, p in zip(shown, positive, strict=True) if not p)
    unruled = model.score(feats, reasons=5)
    for before, after in zip(unruled["reasons"][filer], scored["reasons"][filer], strict=True):
        assert before == after
    assert (unruled["tier"] == scored["tier"]).all()


def test_a_model_of_another_spec_version_is_refused(
    province: tuple[Path, Store, TierModel],
) -> None:
    _root, _store, model = province
    assert model.spec_version == spec_version()
    model.check_spec()
    stale = TierModel(model.risk, model.policy, "fs-000000000000")
    with pytest.raises(SpecMismatch, match="fs-000000000000"):
        stale.check_spec()


def test_scores_do_not_depend_on_row_order(province: tuple[Path, Store, TierModel]) -> None:
    _root, store, model = province
    feats = build_features(store, END).to_pandas().head(400)
    a = model.score(feats, reasons=3).set_index("uscc")
    b = model.score(feats.iloc[::-1], reasons=3).set_index("uscc").loc[a.index]
    pd.testing.assert_frame_equal(a, b)


def test_the_tier_does_not_depend_on_asking_for_reasons(
    province: tuple[Path, Store, TierModel],
) -> None:
    """With cut-offs exactly on observed probabilities, where a last-bit difference between
    two ways of computing the score would move whole tie groups, both ways agree bit for bit."""
    _root, store, model = province
    feats = build_features(store, END).to_pandas()
    p = model.predict_proba(feats)
    on_values = np.quantile(p, [0.2, 0.8, 0.95], method="nearest")
    policy = TierPolicy(thresholds=(on_values[0], on_values[1], on_values[2])).fit(p)
    assert np.isin(policy.cutoffs_, p).all()
    exact = TierModel(model.risk, policy, model.spec_version)
    plain, explained = exact.score(feats, reasons=0), exact.score(feats, reasons=3)
    pd.testing.assert_frame_equal(plain, explained.drop(columns="reasons"), check_exact=True)
    np.testing.assert_array_equal(plain["probability"], model.predict_proba(feats))


def test_records_without_a_count_are_history_too(province: tuple[Path, Store, TierModel]) -> None:
    """A listing, a grade or a signal alone is credit history (the company is not "new"); the
    red list is good history."""
    _root, store, model = province
    feats = build_features(store, END).to_pandas()
    blank = feats[~has_history(feats)].head(1).reset_index(drop=True)
    assert len(blank) == 1

    def codes(row: pd.DataFrame) -> list[str]:
        return [r["code"] for r in model.score(row, reasons=3)["reasons"][0]]

    assert codes(blank)[0] == "no_history"
    for column, value in (
        ("on_focus_list", 1), ("on_red_list", 1), ("shared_address_companies", 12),
        ("tax_grade_worst_2y", 3.0), ("ecommerce_rating", 4.5),
    ):  # fmt: skip
        row = blank.copy()
        row[column] = value
        assert "no_history" not in codes(row), column
    red = blank.copy()
    red["on_red_list"] = 1
    assert "no_good_history" not in codes(red)
    focus = blank.copy()
    focus["on_focus_list"] = 1
    assert "no_good_history" in codes(focus) or model.score(focus)["tier"][0] != "A"


def test_no_rows_score_to_no_rows(province: tuple[Path, Store, TierModel]) -> None:
    _root, store, model = province
    empty = build_features(store, END).to_pandas().head(0)
    for reasons in (0, 3):
        scored = model.score(empty, reasons=reasons)
        assert len(scored) == 0 and {"probability", "tier"} <= set(scored.columns)


def test_a_listing_behind_a_veto_and_a_model_reason_is_counted_once(
    province: tuple[Path, Store, TierModel],
) -> None:
    from models.bundle import with_evidence

    _root, store, model = province
    feats = build_features(store, END).to_pandas()
    listed = feats[feats["on_abnormal_list"] > 0].head(40).reset_index(drop=True)
    scored = with_evidence(store, model.score(listed, reasons=10))
    both = 0
    for reasons in scored["reasons"]:
        found = {r["code"].removeprefix("veto:"): r for r in reasons if "evidence" in r}
        veto = next(r for r in reasons if r["code"] == "veto:on_abnormal_list")
        evidence = veto["evidence"]
        assert len(set(evidence["records"])) == len(evidence["records"])
        assert evidence["matched"] >= len(evidence["records"]) >= 1
        model_reason = [r for r in reasons if r["code"] == "on_abnormal_list"]
        if model_reason:
            both += 1
            assert model_reason[0]["evidence"] == evidence == found["on_abnormal_list"]["evidence"]
    assert both > 0
