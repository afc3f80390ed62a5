"""Figures on the real data of ../shared/data (skip when absent); `pytest -s` prints them.

Boston: risk-ranked inspection of a held-out later period finds more of the severe violations in
its top 20 % than random order (20 %). BDCI 2020: cross-validated AUC and F1 without the id string.
The bounds sit well below the measured figures (in the comments), which are deterministic.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from records.store import Store
from training.real_data import (
    BDCI_DIR,
    ID_DERIVED_COLUMNS,
    bdci_cross_validation,
    boston_backtest,
    ingest_bdci,
    ingest_boston,
    top_share,
)

pytestmark = pytest.mark.real_data
TODAY = date(2026, 11, 22)


def _show(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}\n{json.dumps(figures, indent=1, ensure_ascii=False)}")


def test_top_share_counts_ties_as_random_order() -> None:
    assert top_share([1, 0, 0, 0, 0], [5, 4, 3, 2, 1]) == 1.0
    assert top_share([0, 0, 0, 0, 1], [5, 4, 3, 2, 1]) == 0.0
    # all tied: random order, whatever the labels
    assert top_share([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], np.zeros(10)) == pytest.approx(0.2)
    # 2 places, 1 above the tie; the tied three hold 1 of the 2 positives
    assert top_share([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [9, 5, 5, 5, 1, 1, 1, 1, 1, 1]) == (
        pytest.approx((1 + 1 / 3) / 2)
    )


def test_boston_risk_ranking_beats_random_order_on_a_later_period(
    store: Store, shared_data: Path
) -> None:
    ingest_boston(store, shared_data, TODAY)
    figures = boston_backtest(store, split_date=date(2013, 1, 1))
    _show("Boston back-test (train 2006-2012, hold out 2013-2015)", figures)

    assert figures["train_inspections"] + figures["held_out_inspections"] == 34_879
    assert figures["held_out_period"][0] >= "2013-01-01" > figures["train_period"][1]
    model, baseline = figures["model"], figures["baseline"]
    # measured: share 0.293 (random 0.20, best possible 0.421), AUC 0.692
    assert model["top20_share"] > 0.25
    assert model["lift"] == pytest.approx(model["top20_share"] / 0.2, abs=1e-3)
    assert model["auc"] > 0.62
    # measured: the baseline (past severe inspections) reaches 0.264 and AUC 0.658
    assert baseline["top20_share"] > 0.2
    assert model["auc"] > baseline["auc"]
    # a plan drawn once, as of the split: measured 0.325 (restaurants' first later inspection)
    assert figures["plan_as_of_split"]["model"]["top20_share"] > 0.25


def test_bdci_cross_validated_auc_and_f1_without_the_id(store: Store, shared_data: Path) -> None:
    ingest_bdci(store, shared_data, TODAY)
    labels = shared_data / BDCI_DIR / "entprise_info.csv"

    specs = bdci_cross_validation(store, labels, folds=5, seed=0)
    _show("BDCI 2020, project SPECS, RiskModel, 5-fold CV", specs)
    assert (specs["companies"], specs["positives"]) == (14_865, 981)
    assert specs["as_of"] == "2020-09-12"  # the day after the latest news item
    assert not set(ID_DERIVED_COLUMNS) & set(specs["informative_columns"])
    # measured: AUC 0.547 ± 0.010 (few companies have any SPECS feature); F1 0.155
    assert specs["auc"]["mean"] > 0.52
    assert specs["f1"]["mean"] > specs["positive_rate"]  # flagging everyone gives F1 ≈ 0.124

    extended = bdci_cross_validation(store, labels, folds=5, seed=0, feature_set="extended")
    _show("BDCI 2020, SPECS + all-time counts, LightGBM, 5-fold CV", extended)
    assert not set(ID_DERIVED_COLUMNS) & set(extended["informative_columns"])
    # measured: AUC 0.761 ± 0.020, F1 0.420 (precision 0.401, recall 0.444)
    assert extended["auc"]["mean"] > 0.70
    assert extended["f1"]["mean"] > 0.30
    assert extended["auc"]["mean"] > specs["auc"]["mean"]
