"""The risk model, the tier policy and reason codes on a simulated province."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.builder import build_features
from features.specs import SPECS, FeatureSpec
from models.reasons import top_reasons
from models.risk import OneLabelCalibration, RiskModel, model_columns
from models.tiers import TierPolicy
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.dataset import training_frame

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, pd.DataFrame, RiskModel]:
    store = Store(tmp_path_factory.mktemp("model") / "store")
    sim = simulate(SimulationConfig(companies=8000, years=4, seed=21, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, sim.records, "records", "sim", today=END, history=True)
    frame = training_frame(store).to_pandas()
    # a small province (~1,800 checks): small trees generalise best here (hidden-truth AUC 0.84)
    model = RiskModel(n_estimators=300, num_leaves=4, min_child_samples=50, learning_rate=0.03)
    model.fit(frame, frame["label"], sample_weight=frame["weight"])
    return store, frame, model


def test_the_model_ranks_risk_better_than_chance(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    from sklearn.metrics import roc_auc_score

    _store, frame, model = trained
    late = frame.iloc[int(len(frame) * 0.8) :]
    auc = roc_auc_score(
        late["label"], model.predict_proba(late)[:, 1], sample_weight=late["weight"]
    )
    assert auc > 0.6


def test_monotone_in_every_risk_raising_count(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    _store, frame, model = trained
    rows = frame.sample(200, random_state=0)
    base = model.raw_score(rows)
    for spec in SPECS:
        if isinstance(spec, FeatureSpec) and spec.direction != 0 and spec.aggregation == "count":
            bumped = rows.copy()
            bumped[spec.name] = bumped[spec.name].fillna(0) + 1
            moved = model.raw_score(bumped) - base
            assert (moved * spec.direction >= -1e-9).all(), spec.name


def test_an_open_objection_is_never_a_model_input(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    # objecting is a company's right (DOMAIN §10): the flag is served, never learnt from, so a
    # company's risk is the same with and without an objection open, even if the training
    # examples had objections that coincided with problems
    _store, frame, _model = trained
    assert "objection_open" not in model_columns()
    rows = frame.copy()
    rows["objection_open"] = rows["label"].astype(int)  # a flag that would predict the label
    model = RiskModel(n_estimators=50, num_leaves=4, min_child_samples=50)
    model.fit(rows, rows["label"], sample_weight=rows["weight"])
    sample = rows.head(300)
    flipped = sample.assign(objection_open=1 - sample["objection_open"])
    np.testing.assert_array_equal(model.raw_score(sample), model.raw_score(flipped))


def test_contributions_plus_base_equal_the_raw_score(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    _store, frame, model = trained
    rows = frame.head(300)
    contrib = model.contributions(rows)
    assert contrib.shape[1] == len(model_columns()) + 1
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_score(rows), rtol=1e-9, atol=1e-9)


def test_tiers_follow_target_shares_and_vetoes(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    store, _frame, model = trained
    feats = build_features(store, END).to_pandas()
    proba = model.predict_proba(feats)[:, 1]
    policy = TierPolicy().fit(proba)
    has_history = (
        feats[
            [s.name for s in SPECS if isinstance(s, FeatureSpec) and s.aggregation == "count"]
        ].sum(axis=1)
        > 0
    )
    tiers, reasons = policy.assign(
        proba, {c: feats[c].to_numpy() for c in feats.columns}, has_history.to_numpy()
    )
    tiers_s = pd.Series(tiers)
    # vetoes and defaults hold exactly
    assert (tiers_s[feats["on_serious_dishonest_list"].to_numpy() > 0] == "D").all()
    assert tiers_s[feats["on_abnormal_list"].to_numpy() > 0].isin(["C", "D"]).all()
    vetoed = (
        feats[["on_serious_dishonest_list", "on_abnormal_list", "on_dishonest_debtor_list"]].sum(
            axis=1
        )
        > 0
    )
    assert (tiers_s[(~has_history & ~vetoed).to_numpy()] == "B").all()
    assert all(
        r and r[0]["code"] == "no_history"
        for r, h in zip(reasons, has_history, strict=True)
        if not h
    )
    # before overrides, the model's tiers match the target shares
    plain, _ = TierPolicy(vetoes=()).fit(proba).assign(proba, {}, np.ones(len(proba), bool))
    shares = pd.Series(plain).value_counts(normalize=True)
    for tier, target in zip("ABCD", (0.20, 0.60, 0.15, 0.05), strict=True):
        assert shares.get(tier, 0) == pytest.approx(target, abs=0.03)
    with pytest.raises(ValueError, match="sum to 1"):
        TierPolicy(shares=(0.5, 0.5, 0.5, 0.0)).fit(proba)


def test_reason_codes_name_the_features_that_raise_risk(
    trained: tuple[Store, pd.DataFrame, RiskModel],
) -> None:
    _store, frame, model = trained
    risky = frame.sort_values("penalties_3y", ascending=False).head(20)
    contrib = model.contributions(risky)
    reasons = top_reasons(contrib, model.feature_names_, risky.to_dict("records"))
    assert all(r for r in reasons)
    first = reasons[0][0]
    assert first["contribution"] > 0 and first["zh"] and first["en"]
    assert "{value}" not in first["zh"] + first["en"]


def test_fit_validates_its_input(trained: tuple[Store, pd.DataFrame, RiskModel]) -> None:
    _store, frame, _model = trained
    with pytest.raises(ValueError, match="both classes"):
        RiskModel().fit(frame, np.zeros(len(frame)))
    with pytest.raises(ValueError, match="missing feature columns"):
        RiskModel().fit(frame.drop(columns=["penalties_3y"]), frame["label"])
    one_class_at_the_end = np.r_[
        frame["label"].to_numpy()[: len(frame) // 2], np.zeros(len(frame) - len(frame) // 2)
    ]
    with pytest.raises(OneLabelCalibration, match="calibrate the model, carry only label 0"):
        RiskModel(calibration_fraction=0.2).fit(frame, one_class_at_the_end)


def test_categorical_reasons_name_the_category_in_both_languages() -> None:
    from models.reasons import top_reasons

    names = ["entity_type", "industry", "penalties_3y"]
    values = pd.DataFrame(
        {"entity_type": ["social_organisation", "other"], "industry": ["H62", "Z99"],
         "penalties_3y": [2.0, 1.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1, -1.0], [0.3, 0.2, 0.1, -1.0]])
    first, second = top_reasons(contrib, names, values, k=3)
    assert [r["zh"] for r in first][:2] == [
        "主体类型社会组织（同类主体的总体风险统计，非失信记录）",
        "行业H62（住宿和餐饮业）",
    ]
    assert [r["en"] for r in first][:2] == [
        "entity type social organisation (the risk observed among entities of that type, not a "
        "record of misconduct)",
        "industry H62 (accommodation and catering)",
    ]
    assert [r["zh"] for r in second][:2] == [  # no name known: the code
        "主体类型其他（同类主体的总体风险统计，非失信记录）",
        "行业Z99",
    ]


@pytest.mark.parametrize("k", [1, 2, 4])  # the partial selection (k < columns) and the full sort
@pytest.mark.parametrize("as_dicts", [False, True])
def test_a_feature_that_does_not_apply_is_never_a_reason(k: int, as_dicts: bool) -> None:
    """A social organisation files no annual report with market regulation: its annual-report
    features are null, and whatever the model's contribution for the missing value, it never
    reads "0 annual reports filed on time" as a reason. An enterprise's 0 is a real one."""
    from models.reasons import top_reasons

    names = ["annual_reports_on_time_3y", "annual_reports_missing_3y", "penalties_3y", "industry"]
    values = pd.DataFrame(
        {"annual_reports_on_time_3y": [np.nan, 0.0], "annual_reports_missing_3y": [np.nan, 1.0],
         "penalties_3y": [1.0, 1.0], "industry": ["S94", "S94"]}
    )  # fmt: skip
    contrib = np.array([[0.5, 0.4, 0.1, 0.05, -1.0], [0.5, 0.4, 0.1, 0.05, -1.0]])
    social, enterprise = top_reasons(
        contrib, names, values.to_dict("records") if as_dicts else values, k=k
    )
    assert [r["code"] for r in social] == ["penalties_3y", "industry"][:k]
    assert [r["code"] for r in enterprise] == names[:k]
    assert enterprise[0]["zh"] == "近3年按时报送年报0次"


@pytest.mark.parametrize("k", [2, 3])  # the partial selection (k < columns) and the full sort
def test_a_contribution_reported_as_zero_is_not_a_reason(k: int) -> None:
    """Reasons carry contributions rounded to 4 decimals: one that rounds to 0.0 (seen with a
    retrained model: a reason "adding 0.0") is not given, and the list ends there."""
    names = ["penalties_3y", "complaints_12m", "coercions_3y"]
    values = pd.DataFrame({"penalties_3y": [2.0, 1.0], "complaints_12m": [1.0, 3.0],
                           "coercions_3y": [1.0, 1.0]})  # fmt: skip
    contrib = np.array([[0.3, 0.00004, 0.000049, -1.0], [0.00005001, 0.2, -0.1, -1.0]])
    first, second = top_reasons(contrib, names, values, k=k)
    assert [(r["code"], r["contribution"]) for r in first] == [("penalties_3y", 0.3)]
    assert [(r["code"], r["contribution"]) for r in second] == [
        ("complaints_12m", 0.2), ("penalties_3y", 0.0001)
    ][:k]  # fmt: skip


def test_a_calibration_that_ranks_against_the_model_is_not_used() -> None:
    """If the latest (calibration) rows rank against the model, a Platt slope <= 0 would turn
    every feature's direction round: the model keeps its own, increasing, probabilities."""
    from models.risk import categorical_columns

    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({c: np.zeros(n) for c in model_columns()})
    for c in categorical_columns():
        frame[c] = "C13"
    frame["penalties_3y"] = rng.integers(0, 6, n)
    labels = (frame["penalties_3y"] > 2).astype(int).to_numpy().copy()
    labels[800:] = 1 - labels[800:]  # the latest 20 % say the opposite
    with pytest.warns(UserWarning, match="rank against the model"):
        model = RiskModel(n_estimators=20).fit(frame, labels)
    assert model.calibrator_ is None
    probe = frame.iloc[:2].copy()
    probe["penalties_3y"] = [0, 5]
    low, high = model.predict_proba(probe)[:, 1]
    assert high > low
