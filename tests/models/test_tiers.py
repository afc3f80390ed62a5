"""Tier cut-offs from target shares: ties, empty tiers, weights, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.tiers import TIERS, TierPolicy


def _shares(policy: TierPolicy, proba: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    tiers, _ = (
        TierPolicy(vetoes=(), thresholds=policy.cutoffs_)
        .fit(proba)
        .assign(proba, {}, np.ones(len(proba), bool))
    )
    w = np.ones(len(proba)) if weight is None else weight
    t = np.asarray(tiers)
    return np.array([w[t == x].sum() for x in TIERS]) / w.sum()


def test_a_tied_group_on_a_boundary_goes_where_the_shares_come_closest() -> None:
    # 200 distinct values, but the top 9 % of companies share one probability (as when many
    # companies have the same features): D must not be emptied into C
    rng = np.random.default_rng(0)
    proba = np.concatenate([rng.uniform(0.05, 0.3, 9100), np.full(900, 0.4)])
    policy = TierPolicy().fit(proba)
    shares = _shares(policy, proba)
    assert shares[3] == pytest.approx(0.09)  # the tie: 9 % is nearer 5 % than 0 % is
    assert shares[:3] == pytest.approx([0.20, 0.60, 0.11], abs=0.001)
    # cut-offs lie between distinct values, so last-bit noise does not move a company
    assert not np.isin(policy.cutoffs_, proba).any()


def test_a_zero_share_leaves_its_tier_empty() -> None:
    proba = np.linspace(0.01, 0.5, 1000)
    shares = _shares(TierPolicy(shares=(0.0, 0.8, 0.15, 0.05)).fit(proba), proba)
    assert shares == pytest.approx([0.0, 0.8, 0.15, 0.05])
    shares = _shares(TierPolicy(shares=(0.25, 0.75, 0.0, 0.0)).fit(proba), proba)
    assert shares == pytest.approx([0.25, 0.75, 0.0, 0.0])


def test_weights_count_as_companies() -> None:
    proba = np.linspace(0.01, 0.5, 1000)
    weight = np.where(proba > 0.4, 10.0, 1.0)  # the riskiest stand for ten companies each
    shares = _shares(TierPolicy().fit(proba, weight), proba, weight)
    assert shares == pytest.approx([0.20, 0.60, 0.15, 0.05], abs=0.01)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one probability"):
        TierPolicy().fit(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        TierPolicy().fit(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="sum to 1"):
        TierPolicy(shares=(0.5, 0.5, 0.5, 0.0)).fit(np.array([0.1]))
    with pytest.raises(ValueError, match="increasing"):
        TierPolicy(thresholds=(0.3, 0.2, 0.4)).fit(np.array([0.1]))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.01, 0.02, 0.05, 0.1, 0.2, 0.5]), min_size=1, max_size=60),
    cut=st.lists(st.integers(0, 20), min_size=4, max_size=4),
)
def test_every_boundary_is_as_close_to_its_target_as_ties_allow(
    values: list[float], cut: list[int]
) -> None:
    """Per boundary, no other split between distinct values comes closer to the target share."""
    if sum(cut) == 0:
        cut = [1, 1, 1, 1]
    targets = np.array(cut, float) / sum(cut)
    proba = np.asarray(values)
    policy = TierPolicy(shares=(targets[0], targets[1], targets[2], targets[3])).fit(proba)
    achieved = np.cumsum(_shares(policy, proba))[:3]
    possible = np.concatenate([[0.0], [np.mean(proba <= v) for v in np.unique(proba)]])
    for k, bound in enumerate(np.cumsum(targets)[:3]):
        best = np.min(np.abs(possible - bound))
        earlier = achieved[k - 1] if k else 0.0
        # the best split, unless an earlier boundary already lies beyond it
        assert abs(achieved[k] - bound) <= best + 1e-12 or achieved[k] == earlier
    assert np.all(np.diff(policy.cutoffs_) >= 0)
