"""The tabulated TreeSHAP of `models.reasons.contributions` equals LightGBM's `pred_contrib`."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.reasons import _pattern_tables, contributions


def _data(seed: int, n: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "count": rng.poisson(1.0, n).astype(float),
            "amount": rng.lognormal(8, 2, n),
            "days": rng.integers(0, 2000, n).astype(float),
            "share": rng.random(n),
            "kind": pd.Categorical(rng.choice(["a", "b", "c", "d"], n)),
        }
    )
    x.loc[rng.random(n) < 0.2, "days"] = np.nan  # missing values take the learned default side
    x.loc[rng.random(n) < 0.1, "amount"] = 0.0
    logit = 0.6 * x["count"] - 0.001 * x["days"].fillna(3000) + (x["kind"] == "b") - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y.to_numpy()


@pytest.mark.parametrize(
    ("seed", "params"),
    [
        (0, {"num_leaves": 7}),
        (1, {"num_leaves": 7, "monotone_constraints": [1, 0, -1, 0, 0]}),
        (2, {"num_leaves": 5, "min_data_per_group": 10, "cat_smooth": 1.0}),
        (3, {"num_leaves": 63, "max_depth": 12}),  # too big for tables: LightGBM answers
    ],
)
def test_equal_to_pred_contrib(seed: int, params: dict[str, object]) -> None:
    x, y = _data(seed)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": seed, "num_threads": 2, **params},
        lgb.Dataset(x, y, categorical_feature=["kind"]),
        num_boost_round=60,
    )
    # small trees go through the tables, the big one is left to LightGBM
    assert (_pattern_tables(booster) is not None) == (params["num_leaves"] != 63)
    test, _ = _data(seed + 100, 2000)
    # awkward inputs: values exactly at split thresholds, infinities, unseen categories
    thresholds = [t for t in booster.dump_model()["tree_info"][0]["tree_structure"].values()
                  if isinstance(t, float)]  # fmt: skip
    if thresholds:
        test.loc[:9, "count"] = thresholds[0]
    test.loc[10:19, "amount"] = np.inf
    test.loc[20:29, "share"] = -np.inf
    expected = np.asarray(booster.predict(test, pred_contrib=True), dtype=float)
    got = contributions(booster, test)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        got.sum(axis=1), booster.predict(test, raw_score=True), rtol=0, atol=1e-9
    )


def test_a_row_alone_gets_the_same_bits_as_in_a_block() -> None:
    """Re-scoring one company must reproduce the batch exactly: the tables sum each row's terms
    in one order whatever the number of rows."""
    x, y = _data(5)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 5, "num_threads": 2, "num_leaves": 7},
        lgb.Dataset(x, y, categorical_feature=["kind"]),
        num_boost_round=200,
    )
    assert _pattern_tables(booster) is not None
    test, _ = _data(105, 300)
    block = contributions(booster, test)
    alone = np.vstack([contributions(booster, test.iloc[[i]]) for i in range(len(test))])
    np.testing.assert_array_equal(alone, block)


def test_a_missing_value_is_said_in_words_in_a_reason() -> None:
    """ "第三方数据：电商评分-" read as a dash: a company without a rating is told so."""
    from models.reasons import _phrases

    zh, en = "第三方数据：电商评分{value}", "third-party data: e-commerce rating {value}"
    for column in (np.array([4.5, np.nan, 3.0]), np.array([4.5, None, 3.0], dtype=object)):
        zhs, ens = _phrases(column, zh, en)
        assert [z.removeprefix("第三方数据：电商评分") for z in zhs] == ["4.50", "（无）", "3"]
        assert ens[1] == "third-party data: e-commerce rating (none)"
