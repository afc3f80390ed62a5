"""The spot-check draw (双随机, DOMAIN §7): `serving.spotcheck.draw.draw_plan`.

- Statistics: over many seeds the realised rate of each tier is the ratio in force (binomial
  test on the pooled counts), every company of a tier is drawn equally often (chi-square test of
  homogeneity), and the stored `inclusion_prob` is that ratio; the general-item cap and the
  company-information floor scale all ratios of an item by one factor.
- Properties on random small pools: every list either comes with complete, qualified,
  conflict-free teams or the draw refuses with `insufficient_inspectors`; caps, tier A, triggers
  and joint visits are respected; shuffling the snapshot's rows changes nothing.
- Determinism and replay, workload balance, and teams split per item when no team covers all of
  a department's items.

Defects found while writing these tests are pinned by regression tests at the end of the file.
"""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from serving.spotcheck.draw import (
    LIST_COLUMNS,
    Drawn,
    DrawParams,
    PlanError,
    PopulationFilter,
    Snapshot,
    draw_plan,
    list_sha256,
)
from serving.spotcheck.items import TIERS, CheckItem, Ratios, load_preset_file, preset

ALPHA = 0.001
SEEDS = 300
FLOOR_SEEDS = 200
REGION = "410102"
INDUSTRIES = ("C13", "C14", "F52", "H62", "B06", "G54", "R89", "M73", "A03", "L72", "O80", "E48")


# ---- helpers ----------------------------------------------------------------------------------


def _code(i: int, prefix: str = "91410100") -> str:
    return f"{prefix}{i:010d}"


def _companies(tier_counts: dict[str, int], seed: int = 0, region: str = REGION) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tiers = [t for t in TIERS for _ in range(tier_counts.get(t, 0))]
    n = len(tiers)
    return pd.DataFrame(
        {
            "uscc": [_code(i) for i in range(n)],
            "tier": rng.permutation(np.array(tiers, dtype=object)),
            "region": region,
            "industry": rng.choice(np.array(INDUSTRIES, dtype=object), n),
            "entity_type": "company",
        }
    )


def _universal_inspectors(items: Iterable[CheckItem], per_department: int = 2) -> pd.DataFrame:
    """Active inspectors with area '' (everywhere), qualified for every item of their dept."""
    items = list(items)
    rows = []
    for dept in sorted({i.department for i in items}):
        qualified = ";".join(i.id for i in items if i.department == dept)
        for k in range(per_department):
            rows.append(
                {
                    "inspector_id": f"U-{dept}-{k:02d}",
                    "department": dept,
                    "area": "",
                    "items": qualified,
                    "active": True,
                }
            )
    return pd.DataFrame(rows)


def _applies(item: CheckItem, companies: pd.DataFrame) -> np.ndarray:
    ok = np.ones(len(companies), bool)
    if item.industries:
        ind = companies["industry"].astype(str)
        ok &= ind.map(lambda v: v.startswith(tuple(item.industries))).to_numpy(bool)
    if item.entity_types:
        ok &= companies["entity_type"].isin(item.entity_types).to_numpy(bool)
    return ok


def _effective_base(item: CheckItem) -> np.ndarray:
    base = np.array(item.ratios.as_tuple(), dtype=np.float64)
    if not item.samples_tier_a:
        base[0] = 0.0
    return base


def _ratios_in_force(item: CheckItem, counts: np.ndarray) -> np.ndarray:
    """What DOMAIN §7 asks for, on pools where no scaled ratio reaches 1: a binding cap scales
    the expected count down to ⌊max_ratio × E⌋, a binding floor up to ⌈floor × E⌉ (draw
    version 3: whole counts, so rounding never crosses either)."""
    base = _effective_base(item)
    total = float(counts.sum())
    expected = float((base * counts).sum())
    if item.max_ratio is not None and expected > math.floor(item.max_ratio * total + 1e-9):
        return base * (math.floor(item.max_ratio * total + 1e-9) / expected)
    least = math.ceil(item.floor * total - 1e-9)
    if least > expected + 1e-9:
        out = base * (least / expected)
        assert (out <= 1).all(), "oracle only for pools where the floor needs no capping at 1"
        return out
    return base


def _tier_index(tiers: Iterable[str]) -> np.ndarray:
    return np.array([TIERS.index(t) for t in tiers], np.int64)


def _run_many(
    items: tuple[CheckItem, ...], companies: pd.DataFrame, seeds: range
) -> tuple[np.ndarray, list[Drawn]]:
    """Selection counts (items × companies) over the seeds, and checks each draw's
    inclusion_prob against the oracle on the way."""
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors(items)})
    ordered = sorted(items, key=lambda i: i.id)
    comp = snapshot.tables["companies"]
    tier = _tier_index(comp["tier"])
    applies = np.array([_applies(i, comp) for i in ordered])
    counts_by_tier = np.array([np.bincount(tier[a], minlength=4) for a in applies])
    expected = np.array(
        [_ratios_in_force(i, c) for i, c in zip(ordered, counts_by_tier, strict=True)]
    )
    item_pos = pd.Index([i.id for i in ordered])
    comp_pos = pd.Index(comp["uscc"])
    selected = np.zeros((len(ordered), len(comp)), np.int64)
    params = DrawParams(items=items)
    first = []
    for seed in seeds:
        drawn = draw_plan(params, snapshot, seed)
        tasks = drawn.tasks
        ii = item_pos.get_indexer(tasks["item_id"])
        ci = comp_pos.get_indexer(tasks["uscc"])
        assert (ii >= 0).all() and (ci >= 0).all()
        assert applies[ii, ci].all(), "a company was drawn for an item that does not apply to it"
        np.testing.assert_allclose(
            tasks["inclusion_prob"].to_numpy(float), expected[ii, tier[ci]], rtol=1e-9, atol=0
        )
        assert (tasks["basis"] == "random").all()
        assert (tasks["tier"].to_numpy() == comp["tier"].to_numpy()[ci]).all()
        np.add.at(selected, (ii, ci), 1)
        if not first:
            first.append(drawn)
    # the summaries report the oracle's eligible counts and ratios
    for k, (item, summary) in enumerate(zip(ordered, first[0].items, strict=True)):
        assert summary.item_id == item.id
        assert summary.eligible == {t: int(counts_by_tier[k][j]) for j, t in enumerate(TIERS)}
        for j, t in enumerate(TIERS):
            assert summary.ratios[t] == pytest.approx(expected[k][j], abs=1e-9), (item.id, t)
    return selected, first


def _stratum_failures(
    items: tuple[CheckItem, ...],
    companies: pd.DataFrame,
    selected: np.ndarray,
    seeds: int,
    min_tests: int = 10,
) -> list[str]:
    """Binomial test per (item, tier) and homogeneity within it; returns what failed."""
    comp = companies.sort_values("uscc").reset_index(drop=True)
    tier = _tier_index(comp["tier"])
    failures = []
    tested = Counter()
    for k, item in enumerate(sorted(items, key=lambda i: i.id)):
        applies = _applies(item, comp)
        counts = np.bincount(tier[applies], minlength=4)
        ratios = _ratios_in_force(item, counts)
        for t in range(4):
            members = np.flatnonzero(applies & (tier == t))
            if len(members) == 0:
                continue
            c = selected[k, members]
            r = float(ratios[t])
            where = f"{item.id}/{TIERS[t]} (r={r:.4f}, E={len(members)})"
            if r == 0:
                if c.any():
                    failures.append(f"{where}: drawn although the ratio is 0")
                continue
            if r == 1:
                if (c != seeds).any():
                    failures.append(f"{where}: ratio 1 but not every company drawn every time")
                continue
            p = stats.binomtest(int(c.sum()), seeds * len(members), r).pvalue
            tested["binomial"] += 1
            if p < ALPHA:
                failures.append(
                    f"{where}: realised rate {c.sum() / (seeds * len(members)):.4f}"
                    f" (binomial p={p:.2g})"
                )
            # homogeneity of the per-company selection rates: drawn / not drawn per company
            if len(members) >= 2 and seeds * r >= 5 and seeds * (1 - r) >= 5:
                table = np.vstack([c, seeds - c])
                p = stats.chi2_contingency(table, correction=False).pvalue
                tested["homogeneity"] += 1
                if p < ALPHA:
                    failures.append(f"{where}: unequal chances (chi-square p={p:.2g})")
    assert tested["binomial"] >= min_tests and tested["homogeneity"] >= min_tests, tested
    return failures


def _grouped_homogeneity_failures(
    items: tuple[CheckItem, ...], companies: pd.DataFrame, selected: np.ndarray
) -> list[str]:
    """Companies of one tier and industry face the same items with the same ratios: their
    total selection counts over all items must be alike (chi-square, expected = mean)."""
    comp = companies.sort_values("uscc").reset_index(drop=True)
    total = selected.sum(axis=0)
    failures = []
    n_tests = 0
    for (t, ind), group in comp.groupby(["tier", "industry"]):
        obs = total[group.index.to_numpy()]
        if len(obs) < 2 or obs.mean() < 5 or (obs == obs[0]).all():
            continue
        n_tests += 1
        p = stats.chisquare(obs).pvalue
        if p < ALPHA:
            failures.append(f"{t}/{ind}: per-company totals not homogeneous (p={p:.2g})")
    assert n_tests >= 20
    return failures


# ---- 1. statistics ----------------------------------------------------------------------------

STAT_POOL = {"A": 480, "B": 640, "C": 320, "D": 160}


@pytest.fixture(scope="module", params=["national-default", "henan-2021"])
def preset_runs(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame, np.ndarray, Drawn]:
    items = preset(request.param).items
    companies = _companies(STAT_POOL, seed=3)
    selected, first = _run_many(items, companies, range(SEEDS))
    return request.param, companies, selected, first[0]


@pytest.mark.parametrize("name", ["../presets/national-default", "/etc/passwd", "nope"])
def test_a_preset_is_a_packaged_name_never_a_path(name: str) -> None:
    with pytest.raises(KeyError, match="no ratio preset"):
        preset(name)


def test_a_bad_item_file_is_named_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path
    bad = folder / "items.yaml"
    bad.write_text(
        "name: test\nratios: {A: 0.02, B: 0.08, C: 0.3, D: 1}\nitems:\n"
        "  - {id: ZZ-GS-01, department: samr, kind: general, name_zh: 检查, ratios: "
        "{A: 0.02, B: 0.08, C: 0.3, D: 1.5}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as refused:
        load_preset_file(bad)
    message = str(refused.value)
    assert message.startswith(f"{bad}: item ZZ-GS-01 ratios.D: ") and "\n" not in message
    assert "pydantic" not in message
    broken = folder / "broken.yaml"
    broken.write_text("name: x\nitems: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.yaml: not valid YAML at line 3, column 1"):
        load_preset_file(broken)


def test_preset_ratios_are_those_of_domain_7() -> None:
    nat = preset("national-default")
    hen = preset("henan-2021")
    assert nat.ratios.as_tuple() == (0.03, 0.10, 0.40, 1.00)
    assert hen.ratios.as_tuple() == (0.01, 0.02, 0.10, 0.30)
    for p in (nat, hen):
        assert p.department_yearly_cap == 2
        for item in p.items:
            assert item.ratios == p.ratios
            if item.kind == "general":
                assert item.max_ratio == 0.05
                assert item.samples_tier_a == (item.id == "SC-GS-01")
            else:
                assert item.max_ratio is None and item.samples_tier_a
        assert {i.id: i.floor for i in p.items if i.floor} == {"SC-GS-01": 0.03}


def _replicated(first: list[str], again: list[str]) -> list[str]:
    """The failures of a first run of seeds that a second, independent run repeats (for the
    same item and tier, or tier and industry)."""
    where = {f.split(":")[0] for f in again}
    return [f"{f}; again on fresh seeds" for f in first if f.split(":")[0] in where]


def test_realised_rates_match_the_ratios_and_chances_are_equal(
    preset_runs: tuple[str, pd.DataFrame, np.ndarray, Drawn],
) -> None:
    """About 250 tests at ALPHA each: one fails by chance in about one stream of seeds in five,
    however fair the draw. A failure counts when fresh seeds repeat it (for a fair draw with
    probability ALPHA); a real bias (these tests' power is high) repeats."""
    name, companies, selected, _ = preset_runs
    items = preset(name).items
    failures = _stratum_failures(items, companies, selected, SEEDS)
    failures += _grouped_homogeneity_failures(items, companies, selected)
    if failures:
        fresh, _ = _run_many(items, companies, range(SEEDS, 2 * SEEDS))
        again = _stratum_failures(items, companies, fresh, SEEDS)
        again += _grouped_homogeneity_failures(items, companies, fresh)
        failures = _replicated(failures, again)
    assert not failures, "\n".join(failures)


def test_key_items_keep_the_preset_ratios_and_sample_tier_a(
    preset_runs: tuple[str, pd.DataFrame, np.ndarray, Drawn],
) -> None:
    name, _, selected, drawn = preset_runs
    p = preset(name)
    summaries = {s.item_id: s for s in drawn.items}
    for item in p.items:
        if item.kind != "key":
            continue
        s = summaries[item.id]
        assert s.scale == 1.0
        assert s.ratios == dict(zip(TIERS, p.ratios.as_tuple(), strict=True))
        assert s.eligible["A"] > 0
    # over the seeds tier A was drawn for key items (A 3 % / 1 % of a few hundred companies)
    tiers = _tier_index(preset_runs[1].sort_values("uscc")["tier"])
    key_rows = [k for k, i in enumerate(sorted(p.items, key=lambda i: i.id)) if i.kind == "key"]
    assert selected[np.ix_(key_rows, np.flatnonzero(tiers == 0))].sum() > 0


def test_general_items_are_capped_and_scaled_by_one_factor(
    preset_runs: tuple[str, pd.DataFrame, np.ndarray, Drawn],
) -> None:
    name, companies, selected, drawn = preset_runs
    comp = companies.sort_values("uscc").reset_index(drop=True)
    summaries = {s.item_id: s for s in drawn.items}
    generals = 0
    for k, item in enumerate(sorted(preset(name).items, key=lambda i: i.id)):
        if item.kind != "general":
            continue
        generals += 1
        s = summaries[item.id]
        base = _effective_base(item)
        eligible = np.array([s.eligible[t] for t in TIERS])
        ratios = np.array([s.ratios[t] for t in TIERS])
        raw_share = float((base * eligible).sum() / eligible.sum())
        share = float((ratios * eligible).sum() / eligible.sum())
        assert raw_share > item.max_ratio  # this pool needs the cap for every general item
        assert share <= item.max_ratio + 1e-9
        # scaled to the whole count ⌊max_ratio × E⌋ (draw version 3), not to max_ratio × E
        most = math.floor(item.max_ratio * eligible.sum() + 1e-9)
        assert (ratios * eligible).sum() == pytest.approx(most, rel=1e-8)
        assert s.scale == pytest.approx(most / (base * eligible).sum(), rel=1e-8)
        np.testing.assert_allclose(ratios, base * s.scale, rtol=1e-8, atol=1e-10)
        if not item.samples_tier_a:
            assert s.ratios["A"] == 0.0 and s.drawn["A"] == 0
        # realised: the share drawn over all seeds is the capped share
        applies = _applies(item, comp)
        n_drawn = int(selected[k, applies].sum())
        p = stats.binomtest(n_drawn, SEEDS * int(applies.sum()), share).pvalue
        assert p > ALPHA, (item.id, n_drawn / (SEEDS * applies.sum()), share)
        assert n_drawn / (SEEDS * applies.sum()) < item.max_ratio * 1.1
    assert generals == 7


def test_company_information_floor_scales_every_ratio_up() -> None:
    """Henan ratios on an A-heavy pool: SC-GS-01 would cover 1.6 %, the floor lifts it to 3 %
    (every tier by the same factor); SC-DJ-02, without a floor, keeps its 0.9 %."""
    items = tuple(i for i in preset("henan-2021").items if i.id in ("SC-GS-01", "SC-DJ-02"))
    companies = _companies({"A": 700, "B": 280, "C": 15, "D": 5}, seed=5)
    selected, first = _run_many(items, companies, range(FLOOR_SEEDS))
    summaries = {s.item_id: s for s in first[0].items}
    gs, dj = summaries["SC-GS-01"], summaries["SC-DJ-02"]
    eligible = np.array([gs.eligible[t] for t in TIERS])
    base = np.array([0.01, 0.02, 0.10, 0.30])
    raw = float((base * eligible).sum() / eligible.sum())
    assert raw < 0.03
    ratios = np.array([gs.ratios[t] for t in TIERS])
    # raised to the whole count ⌈0.03 × E⌉ (draw version 3): 30 of 1000
    least = math.ceil(0.03 * eligible.sum() - 1e-9)
    assert float((ratios * eligible).sum()) == pytest.approx(least, rel=1e-8)
    assert gs.scale == pytest.approx(least / (base * eligible).sum(), rel=1e-8)
    np.testing.assert_allclose(ratios, base * gs.scale, rtol=1e-8)
    assert dj.scale == 1.0 and dj.ratios == {"A": 0.0, "B": 0.02, "C": 0.10, "D": 0.30}
    # realised: 3 % of all companies for SC-GS-01 (row 1: SC-DJ-02 sorts first), 0.86 % for
    # SC-DJ-02 over the seeds, and each tier at its ratio
    assert selected[1].sum() / (FLOOR_SEEDS * len(companies)) == pytest.approx(0.03, rel=0.05)
    assert selected[0].sum() / (FLOOR_SEEDS * len(companies)) == pytest.approx(0.0086, rel=0.1)
    failures = _stratum_failures(items, companies, selected, FLOOR_SEEDS, min_tests=4)
    if failures:  # by chance, unless fresh seeds repeat it (see the test above)
        fresh, _ = _run_many(items, companies, range(FLOOR_SEEDS, 2 * FLOOR_SEEDS))
        again = _stratum_failures(items, companies, fresh, FLOOR_SEEDS, min_tests=4)
        failures = _replicated(failures, again)
    assert not failures, "\n".join(failures)


def test_floor_bisection_caps_ratios_at_one() -> None:
    """A floor that needs some tier above 100 % leaves it at 1 and lifts the others further."""
    item = CheckItem(
        id="K-FLOOR",
        department="samr",
        name_zh="测试",
        kind="key",
        ratios=Ratios(A=0.05, B=0.05, C=0.2, D=0.5),
        floor=0.6,
    )
    companies = _companies({"A": 100, "B": 100, "C": 100, "D": 100}, seed=1)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    drawn = draw_plan(DrawParams(items=(item,)), snapshot, 7)
    s = drawn.items[0]
    ratios = np.array([s.ratios[t] for t in TIERS])
    assert ratios[3] == 1.0
    assert ratios.mean() == pytest.approx(0.6, abs=1e-8)  # equal tiers: share = mean ratio
    np.testing.assert_allclose(ratios[:3], np.array([0.05, 0.05, 0.2]) * s.scale, rtol=1e-8)
    assert s.drawn["D"] == 100


def test_randomised_rounding_in_small_strata() -> None:
    """E = 7 per tier: the tiers are rounded together, so the item draws ⌊ΣrE⌋ or ⌈ΣrE⌉
    companies (12 or 13 of the expected 12.25, 13 with probability 0.25), while every company
    keeps the rate of its tier."""
    item = CheckItem(
        id="K-SMALL",
        department="samr",
        name_zh="测试",
        kind="key",
        ratios=Ratios(A=0.1, B=0.3, C=0.45, D=0.9),
    )
    companies = _companies({t: 7 for t in TIERS}, seed=2)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    params = DrawParams(items=(item,))
    ratios = item.ratios.as_tuple()
    totals: Counter[int] = Counter()
    per_company = Counter()
    runs = 400
    for seed in range(runs):
        drawn = draw_plan(params, snapshot, seed)
        assert sum(drawn.items[0].drawn.values()) == len(drawn.tasks)
        totals[len(drawn.tasks)] += 1
        per_company.update(drawn.tasks["uscc"])
    assert set(totals) <= {12, 13}, totals
    assert stats.binomtest(totals[13], runs, 0.25).pvalue > ALPHA, totals
    tiers = companies.set_index("uscc")["tier"]
    for t, r in zip(TIERS, ratios, strict=True):
        obs = np.array([per_company[u] for u in tiers.index[tiers == t]])
        assert stats.binomtest(int(obs.sum()), runs * 7, r).pvalue > ALPHA, t
        assert stats.chi2_contingency(np.vstack([obs, runs - obs])).pvalue > ALPHA, t


def test_one_plan_never_exceeds_a_general_items_cap() -> None:
    """Each tier was rounded on its own, so on a county of 40 eligible companies a general item
    capped at 5 % (2.0 expected) drew 3 in 26.7 % of the seeds. Rounded together, the item
    draws ⌊expected⌋ or ⌈expected⌉ every time, and each company is still drawn with the
    probability stored for it."""
    item = next(i for i in preset("national-default").items if i.id == "SC-DJ-02")
    companies = _companies({"A": 10, "B": 25, "C": 4, "D": 1}, seed=4)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    runs = 3000
    counts: Counter[int] = Counter()
    drawn_count = Counter()
    stored: dict[str, float] = {}
    for seed in range(runs):
        drawn = draw_plan(DrawParams(items=(item,)), snapshot, seed)
        counts[len(drawn.tasks)] += 1
        drawn_count.update(drawn.tasks["uscc"])
        stored.update(zip(drawn.tasks["uscc"], drawn.tasks["inclusion_prob"], strict=True))
    s = drawn.items[0]
    expected = sum(s.ratios[t] * s.eligible[t] for t in TIERS)
    assert expected == pytest.approx(0.05 * 40)
    assert set(counts) == {2}, counts  # floor = ceil: exactly 2.0 expected
    tiers = companies.set_index("uscc")["tier"]
    for t in TIERS:
        members = tiers.index[tiers == t]
        obs = np.array([drawn_count[u] for u in members])
        if s.ratios[t] == 0:
            assert not obs.any()
            continue
        assert all(stored[u] == pytest.approx(s.ratios[t]) for u in members if u in stored)
        assert stats.binomtest(int(obs.sum()), runs * len(members), s.ratios[t]).pvalue > ALPHA
        if len(members) > 1:
            assert stats.chi2_contingency(np.vstack([obs, runs - obs])).pvalue > ALPHA, t


@given(
    sizes=st.lists(st.integers(0, 30), min_size=4, max_size=4),
    ratios=st.lists(st.floats(0, 1), min_size=4, max_size=4),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=200, deadline=None)
def test_an_item_draws_the_floor_or_ceiling_of_its_expected_count(
    sizes: list[int], ratios: list[float], seed: int
) -> None:
    """Whatever the tiers' sizes and ratios, all of a tier at ratio 1 and the floor or ceiling of
    the expected count in all."""
    item = CheckItem(
        id="K-ANY", department="samr", name_zh="测试", kind="key",
        ratios=Ratios(A=ratios[0], B=ratios[1], C=ratios[2], D=ratios[3]),
    )  # fmt: skip
    companies = _companies(dict(zip(TIERS, sizes, strict=True)), seed=1)
    drawn = draw_plan(
        DrawParams(items=(item,)),
        Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])}),
        seed,
    )
    expected = sum(r * n for r, n in zip(ratios, sizes, strict=True))
    assert math.floor(expected - 1e-9) <= len(drawn.tasks) <= math.ceil(expected + 1e-9)
    certain = [t for t, r in zip(TIERS, ratios, strict=True) if r == 1]
    assert all(drawn.items[0].drawn[t] == sizes[TIERS.index(t)] for t in certain)


# ---- 2. properties on random pools ------------------------------------------------------------

REGIONS = ("410102", "410105", "410203", "420106")
P_INDUSTRIES = ("C13", "C14", "F52", "H62", "B06", "G54", "R89")
ENTITY_TYPES = ("company", "sole", "branch")
DEPARTMENTS = ("samr", "fire", "tax")
PRESET_ITEMS = {i.id: i for i in preset("national-default").items}


@st.composite
def _custom_item(draw: st.DrawFn, k: int) -> CheckItem:
    kind = draw(st.sampled_from(["general", "key"]))
    ratio = st.one_of(st.sampled_from([0.0, 0.05, 0.3, 0.5, 1.0]), st.floats(0.001, 1))
    ratios = Ratios(A=draw(ratio), B=draw(ratio), C=draw(ratio), D=draw(ratio))
    max_ratio = draw(st.one_of(st.none(), st.floats(0.01, 1))) if kind == "general" else None
    a_tier = draw(st.sampled_from([None, "sample", "triggered_only"]))
    samples_a = (a_tier or ("sample" if kind == "key" else "triggered_only")) == "sample"
    floor = 0.0
    # a floor only where it is reachable by scaling every tier (the other case is a known
    # defect, see test_floor_fallback_keeps_tier_a_alone_and_the_cap below)
    if samples_a and min(ratios.as_tuple()) > 0 and draw(st.booleans()):
        floor = draw(st.floats(0.01, max_ratio if max_ratio is not None else 1.0))
    return CheckItem(
        id=f"T{k}",
        department=draw(st.sampled_from(DEPARTMENTS)),
        name_zh="测试事项",
        kind=kind,
        ratios=ratios,
        max_ratio=max_ratio,
        floor=floor,
        yearly_cap=draw(st.integers(1, 3)),
        a_tier=a_tier,
        industries=tuple(
            draw(st.lists(st.sampled_from(["C", "C13", "F", "H6", "B"]), max_size=2, unique=True))
        ),
        entity_types=tuple(draw(st.lists(st.sampled_from(ENTITY_TYPES), max_size=2, unique=True))),
    )


def _area(draw: st.DrawFn) -> str:
    k = draw(st.integers(0, 9))
    if k == 0:
        return "43"  # covers none of the regions
    if k <= 5:
        return ""  # everywhere
    if k <= 7:
        return "41"
    return draw(st.sampled_from(REGIONS))[: draw(st.sampled_from([4, 6]))]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[DrawParams, dict[str, pd.DataFrame], int]:
    preset_ids = draw(st.lists(st.sampled_from(sorted(PRESET_ITEMS)), max_size=4, unique=True))
    n_custom = draw(st.integers(0 if preset_ids else 1, 3))
    items = tuple(PRESET_ITEMS[i] for i in preset_ids) + tuple(
        draw(_custom_item(k)) for k in range(n_custom)
    )
    n = draw(st.integers(0, 30))
    codes = [
        _code(i, "91410000")
        for i in draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    ]
    companies = pd.DataFrame(
        {
            "uscc": codes,
            "tier": [draw(st.sampled_from(TIERS)) for _ in codes],
            "region": [draw(st.sampled_from(REGIONS)) for _ in codes],
            "industry": [draw(st.sampled_from(P_INDUSTRIES)) for _ in codes],
            "entity_type": [draw(st.sampled_from(ENTITY_TYPES)) for _ in codes],
        },
        columns=["uscc", "tier", "region", "industry", "entity_type"],
    )
    depts = sorted({i.department for i in items} | {"other"})
    ids = [i.id for i in items] + ["ZZ-99"]
    rows: list[dict[str, object]] = []
    for dept in depts:  # 0–8 inspectors per department, most of them active and qualified
        for _ in range(draw(st.integers(0, 8))):
            rows.append(
                {
                    "inspector_id": f"I{len(rows):03d}",
                    "department": dept,
                    "area": _area(draw),
                    "items": ";".join(i for i in ids if draw(st.integers(0, 5)) > 0),
                    "active": draw(st.integers(0, 5)) > 0,
                }
            )
    inspectors = pd.DataFrame(
        rows, columns=["inspector_id", "department", "area", "items", "active"]
    )
    pairs = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))
    conflicts = pd.DataFrame(
        [
            {
                "inspector_id": inspectors["inspector_id"].iloc[a % len(inspectors)],
                "uscc": codes[b % len(codes)],
            }
            for a, b in (draw(st.lists(pairs, max_size=15)) if n and len(inspectors) else [])
        ],
        columns=["inspector_id", "uscc"],
    )
    department_checks = pd.DataFrame(
        [
            {"uscc": codes[b % n], "department": depts[a % len(depts)], "n": c}
            for a, b, c in (
                draw(
                    st.lists(
                        st.tuples(st.integers(0, 99), st.integers(0, 10**6), st.integers(1, 3)),
                        max_size=20,
                    )
                )
                if n
                else []
            )
        ],
        columns=["uscc", "department", "n"],
    )
    item_checks = pd.DataFrame(
        [
            {"uscc": codes[b % n], "item_id": ids[a % len(ids)], "n": c}
            for a, b, c in (
                draw(
                    st.lists(
                        st.tuples(st.integers(0, 99), st.integers(0, 10**6), st.integers(1, 2)),
                        max_size=20,
                    )
                )
                if n
                else []
            )
        ],
        columns=["uscc", "item_id", "n"],
    )
    random_checks = pd.DataFrame(
        [
            {"uscc": codes[b % n], "n": c}
            for b, c in (
                draw(
                    st.lists(
                        st.tuples(st.integers(0, 10**6), st.integers(1, 2)),
                        max_size=10,
                        unique_by=lambda t: t[0] % n,
                    )
                )
                if n
                else []
            )
        ],
        columns=["uscc", "n"],
    )
    triggered = tuple(draw(st.lists(st.sampled_from(codes), max_size=4, unique=True))) if n else ()
    if draw(st.booleans()):
        triggered += ("91000000UNKNOWN000",)
    population = PopulationFilter(
        regions=tuple(
            draw(st.lists(st.sampled_from(["41", "4101", "410203", "42"]), max_size=2, unique=True))
        ),
        industries=tuple(
            draw(st.lists(st.sampled_from(["C", "F52", "H", "G"]), max_size=2, unique=True))
        ),
        entity_types=tuple(draw(st.lists(st.sampled_from(ENTITY_TYPES), max_size=2, unique=True))),
        tiers=tuple(draw(st.lists(st.sampled_from(TIERS), max_size=3, unique=True))),
    )
    if draw(st.booleans()):
        population = PopulationFilter()
    params = DrawParams(
        items=items,
        population=population,
        department_yearly_cap=draw(st.integers(1, 3)),
        inspectors_per_task=draw(st.integers(2, 3)),
        triggered=triggered,
        avoid_repeat_within_year=draw(st.booleans()),
        draw_version=draw(st.sampled_from([3, 4, 4])),
    )
    tables = {
        "companies": companies,
        "inspectors": inspectors,
        "conflicts": conflicts,
        "department_checks": department_checks,
        "item_checks": item_checks,
        "random_checks": random_checks,
    }
    return params, tables, draw(st.integers(0, 2**63 - 1))


def _copy(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v.copy() for k, v in tables.items()}


def _shuffled(tables: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {k: v.iloc[rng.permutation(len(v))].reset_index(drop=True) for k, v in tables.items()}


def _with_plenty(params: DrawParams, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Add, per department, inspectors_per_task universal inspectors without conflicts."""
    extra = _universal_inspectors(params.items, params.inspectors_per_task)
    tables = _copy(tables)
    tables["inspectors"] = pd.concat([tables["inspectors"], extra], ignore_index=True)
    return tables


def _draw_or_error(
    params: DrawParams, tables: dict[str, pd.DataFrame], seed: int
) -> tuple[Drawn | None, PlanError | None]:
    try:
        return draw_plan(params, Snapshot(_copy(tables)), seed), None
    except PlanError as e:
        return None, e


def _check_plan(params: DrawParams, tables: dict[str, pd.DataFrame], drawn: Drawn) -> None:
    """Everything DOMAIN §7 and the engine's docstring promise about one drawn list."""
    comp = tables["companies"].set_index("uscc")
    items = {i.id: i for i in params.items}
    tasks = drawn.tasks
    assert list(tasks.columns) == list(LIST_COLUMNS)
    ipt = params.inspectors_per_task

    # who may be drawn at all
    pop = params.population
    in_pop = pd.Series(True, index=comp.index)
    if pop.regions:
        in_pop &= comp["region"].map(lambda r: r.startswith(pop.regions))
    if pop.industries:
        in_pop &= comp["industry"].map(lambda r: r.startswith(pop.industries))
    if pop.entity_types:
        in_pop &= comp["entity_type"].isin(pop.entity_types)
    if pop.tiers:
        in_pop &= comp["tier"].isin(pop.tiers)
    triggered = {u for u in params.triggered if u in comp.index and in_pop[u]}
    dept_n: Counter[tuple[str, str]] = Counter()
    for r in tables["department_checks"].itertuples():
        dept_n[(r.uscc, r.department)] += r.n
    item_n: Counter[tuple[str, str]] = Counter()
    for r in tables["item_checks"].itertuples():
        item_n[(r.uscc, r.item_id)] += r.n
    reset = comp.reset_index()

    def applies(item: CheckItem) -> pd.Series:
        return pd.Series(_applies(item, reset), index=comp.index) & in_pop

    def over_cap(u: str, item: CheckItem) -> bool:
        if dept_n[(u, item.department)] >= params.department_yearly_cap:
            return True
        return item_n[(u, item.id)] >= item.yearly_cap and comp.at[u, "tier"] != "D"

    # the repeat rule (version 4): inspected at random this year, any department, not tier D
    seen = set(tables.get("random_checks", pd.DataFrame(columns=["uscc"]))["uscc"])
    rule_on = params.draw_version >= 4 and params.avoid_repeat_within_year

    def repeat(u: str) -> bool:
        return rule_on and u in seen and comp.at[u, "tier"] != "D"

    # joint visits: one visit per company, one task per (company, item)
    assert not tasks.duplicated(["uscc", "item_id"]).any()
    assert (tasks.groupby("uscc")["visit_no"].nunique() == 1).all()
    assert (tasks.groupby("visit_no")["uscc"].nunique() == 1).all()
    if len(tasks):
        assert sorted(tasks["visit_no"].unique()) == list(range(1, tasks["uscc"].nunique() + 1))

    summaries = {s.item_id: s for s in drawn.items}
    assert sorted(summaries) == sorted(items)
    for item_id, item in items.items():
        s = summaries[item_id]
        assert s.department == item.department
        mine = tasks[tasks["item_id"] == item_id]
        app = applies(item)
        elig = [
            u
            for u in comp.index[app]
            if u not in triggered and not over_cap(u, item) and not repeat(u)
        ]
        assert s.eligible == {t: int((comp.loc[elig, "tier"] == t).sum()) for t in TIERS}
        assert s.excluded_over_cap == sum(
            1 for u in comp.index[app] if u not in triggered and over_cap(u, item)
        )
        assert s.excluded_repeat == sum(
            1 for u in comp.index[app] if u not in triggered and not over_cap(u, item) and repeat(u)
        )
        # triggered companies: every applicable item, p = 1, whatever their tier or caps
        trig = mine[mine["basis"] == "triggered"]
        assert set(trig["uscc"]) == {u for u in triggered if app[u]}
        assert (trig["inclusion_prob"] == 1.0).all()
        assert s.triggered == len(trig)
        rand = mine[mine["basis"] == "random"]
        assert len(trig) + len(rand) == len(mine)
        assert set(rand["uscc"]) <= set(elig)
        # ratios in force: tier A left alone unless sampled, cap, floor, one factor
        base = _effective_base(item)
        ratios = np.array([s.ratios[t] for t in TIERS])
        counts = np.array([s.eligible[t] for t in TIERS])
        np.testing.assert_allclose(ratios, np.minimum(1.0, base * s.scale), rtol=1e-7, atol=1e-9)
        if counts.sum():
            # whole counts (draw version 3): at most ⌊cap × E⌋, at least ⌈floor × E⌉ expected,
            # and drawn exactly when the cap or the floor binds
            raw = float((base * counts).sum())
            want = float((ratios * counts).sum())
            most = (
                math.floor(item.max_ratio * counts.sum() + 1e-9)
                if item.max_ratio is not None else None
            )  # fmt: skip
            least = math.ceil(item.floor * counts.sum() - 1e-9)
            if most is not None:
                least = min(least, most)
            reachable = int(counts[base > 0].sum())
            if most is not None and raw > most + 1e-9:
                assert want == pytest.approx(most, abs=1e-7)
                assert len(rand) == most
            elif least > raw + 1e-9:
                assert want == pytest.approx(min(least, reachable), abs=1e-7)
                assert len(rand) == min(least, reachable)
            else:
                assert s.scale == 1.0
            if most is not None:
                assert len(rand) <= most
        if not item.samples_tier_a:
            assert s.ratios["A"] == 0.0
            assert not (rand["tier"] == "A").any()
        for j, t in enumerate(TIERS):
            got = rand[rand["tier"] == t]
            assert s.drawn[t] == len(got)
            r, e = ratios[j], counts[j]
            assert math.floor(r * e - 1e-6) <= len(got) <= math.ceil(r * e + 1e-6), (item_id, t)
            if r == 1.0:
                assert len(got) == e
            np.testing.assert_allclose(got["inclusion_prob"].to_numpy(float), r, rtol=0, atol=1e-9)
            assert (got["inclusion_prob"] > 0).all()

    # each task: tier, department, and a team of qualified, active, conflict-free inspectors
    insp = tables["inspectors"].set_index("inspector_id")
    conflicts = set(
        zip(tables["conflicts"]["inspector_id"], tables["conflicts"]["uscc"], strict=True)
    )
    teams_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
    tasks_of: Counter[str] = Counter()
    for t in tasks.itertuples():
        item = items[t.item_id]
        assert t.tier == comp.at[t.uscc, "tier"]
        assert t.department == item.department
        members = t.inspectors.split(";")
        assert members == sorted(members)
        assert len(set(members)) == len(members) == ipt, t
        region = comp.at[t.uscc, "region"]
        for m in members:
            row = insp.loc[m]
            assert bool(row["active"]), (m, "inactive")
            assert row["department"] == item.department, (m, "department")
            assert region.startswith(row["area"]), (m, "area", region)
            assert item.id in row["items"].split(";"), (m, "not qualified", item.id)
            assert (m, t.uscc) not in conflicts, (m, "conflict", t.uscc)
            teams_of[m].add((t.uscc, t.department))
            tasks_of[m] += 1
    # workload: teams per inspector, between its visits and its tasks
    assert set(drawn.workload) == set(teams_of)
    for m, load in drawn.workload.items():
        assert len(teams_of[m]) <= load <= tasks_of[m]


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_random_pools_give_a_valid_list_or_refuse(
    scenario: tuple[DrawParams, dict[str, pd.DataFrame], int],
) -> None:
    params, tables, seed = scenario
    drawn, error = _draw_or_error(params, tables, seed)
    # rows in another order: the same outcome, byte for byte
    again, error2 = _draw_or_error(params, _shuffled(tables, seed % 1000), seed)
    if error is not None:
        assert error.code == "insufficient_inspectors", error
        assert error2 is not None and error2.code == error.code and str(error2) == str(error)
        return
    assert drawn is not None and again is not None
    assert again.canonical_list() == drawn.canonical_list()
    _check_plan(params, tables, drawn)


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_with_enough_inspectors_the_draw_never_refuses(
    scenario: tuple[DrawParams, dict[str, pd.DataFrame], int],
) -> None:
    params, tables, seed = scenario
    tables = _with_plenty(params, tables)
    drawn = draw_plan(params, Snapshot(_copy(tables)), seed)
    _check_plan(params, tables, drawn)


def test_a_department_without_inspectors_is_refused() -> None:
    items = tuple(i for i in preset("national-default").items if i.id in ("SC-CP-04", "XF-01"))
    companies = _companies({"C": 30, "D": 30}, seed=4)
    companies["industry"] = "C13"
    inspectors = _universal_inspectors(items)
    inspectors = inspectors[inspectors["department"] != "fire"]
    with pytest.raises(PlanError) as info:
        draw_plan(
            DrawParams(items=items), Snapshot({"companies": companies, "inspectors": inspectors}), 1
        )
    assert info.value.code == "insufficient_inspectors"
    assert "fire" in str(info.value)
    # inactive, out-of-area or unqualified inspectors do not count either
    for change in (
        {"active": False},
        {"area": "42"},
        {"items": "SC-CP-04"},
    ):
        fire = _universal_inspectors(items).query("department == 'fire'").assign(**change)
        with pytest.raises(PlanError) as info:
            draw_plan(
                DrawParams(items=items),
                Snapshot({"companies": companies, "inspectors": pd.concat([inspectors, fire])}),
                1,
            )
        assert info.value.code == "insufficient_inspectors", change
    fire = _universal_inspectors(items).query("department == 'fire'")
    ok = draw_plan(
        DrawParams(items=items),
        Snapshot({"companies": companies, "inspectors": pd.concat([inspectors, fire])}),
        1,
    )
    assert (ok.tasks["department"] == "fire").any()


def test_conflicted_inspectors_are_replaced() -> None:
    """Four qualified inspectors, a and b in conflict with every other company: those
    companies are visited by c and d, the others by any pair."""
    item = CheckItem(
        id="K1", department="samr", name_zh="测试", kind="key", ratios=Ratios(A=1, B=1, C=1, D=1)
    )
    companies = _companies({"B": 40}, seed=8)
    inspectors = pd.DataFrame(
        {
            "inspector_id": ["a", "b", "c", "d"],
            "department": "samr",
            "area": "",
            "items": "K1",
            "active": True,
        }
    )
    conflicted = companies["uscc"].iloc[::2]
    conflicts = pd.DataFrame(
        {
            "inspector_id": ["a"] * len(conflicted) + ["b"] * len(conflicted),
            "uscc": list(conflicted) * 2,
        }
    )
    drawn = draw_plan(
        DrawParams(items=(item,)),
        Snapshot({"companies": companies, "inspectors": inspectors, "conflicts": conflicts}),
        3,
    )
    teams = drawn.tasks.set_index("uscc")["inspectors"]
    assert len(teams) == 40
    for u in conflicted:
        assert teams[u] == "c;d"
    assert sum(drawn.workload.values()) == 80
    # a single conflict-free pair left is not enough for a third: refused, not half-staffed
    with pytest.raises(PlanError) as info:
        draw_plan(
            DrawParams(items=(item,), inspectors_per_task=3),
            Snapshot({"companies": companies, "inspectors": inspectors, "conflicts": conflicts}),
            3,
        )
    assert info.value.code == "insufficient_inspectors"
    # the message says how many were qualified and how many a conflict excluded, and where
    # (it said "4 of 3", as if there were enough)
    message = str(info.value)
    assert ": 4 qualified of 3 needed, 2 of them excluded at " in message
    assert any(f"excluded at {u} (a declared conflict" in message for u in conflicted)


def test_caps_exclude_companies_and_triggers_override_them() -> None:
    key = CheckItem(
        id="K1", department="samr", name_zh="测试", kind="key", ratios=Ratios(A=1, B=1, C=1, D=1)
    )
    other = CheckItem(
        id="K2", department="fire", name_zh="测试", kind="key", ratios=Ratios(A=1, B=1, C=1, D=1)
    )
    companies = pd.DataFrame(
        {
            "uscc": [f"C{i}" for i in range(6)],
            "tier": ["B", "B", "D", "D", "A", "C"],
            "region": REGION,
            "industry": "C13",
            "entity_type": "company",
        }
    )
    department_checks = pd.DataFrame(
        {
            "uscc": ["C0", "C2", "C5", "C5"],
            "department": ["samr", "samr", "samr", "samr"],
            "n": [2, 2, 1, 1],
        }
    )
    item_checks = pd.DataFrame(
        {"uscc": ["C1", "C3", "C4"], "item_id": ["K1", "K1", "K1"], "n": [1, 1, 1]}
    )
    snapshot = Snapshot(
        {
            "companies": companies,
            "department_checks": department_checks,
            "item_checks": item_checks,
            "inspectors": _universal_inspectors([key, other]),
        }
    )
    drawn = draw_plan(DrawParams(items=(key, other), triggered=("C4",)), snapshot, 0)
    got = drawn.tasks.groupby("item_id")["uscc"].apply(set).to_dict()
    # C0, C2 (department twice, even tier D), C5 (1 + 1 department checks) and C1 (item once,
    # tier B) are over a cap for K1; C3 is tier D (item cap exempt); C4 is triggered
    assert got["K1"] == {"C3", "C4"}
    assert got["K2"] == {f"C{i}" for i in range(6)}  # another department: no cap reached
    s = {x.item_id: x for x in drawn.items}["K1"]
    assert s.excluded_over_cap == 4 and s.triggered == 1
    t = drawn.tasks.set_index(["uscc", "item_id"])
    assert (
        t.loc[("C4", "K1"), "basis"] == "triggered" and t.loc[("C4", "K2"), "basis"] == "triggered"
    )
    assert t.loc[("C3", "K1"), "basis"] == "random"


# ---- 3. determinism ---------------------------------------------------------------------------


def _big_case() -> tuple[DrawParams, dict[str, pd.DataFrame]]:
    items = preset("national-default").items
    rng = np.random.default_rng(21)
    companies = _companies({"A": 400, "B": 500, "C": 300, "D": 100}, seed=9)
    companies["region"] = rng.choice(np.array(REGIONS, dtype=object), len(companies))
    inspectors = []
    for dept in sorted({i.department for i in items}):
        qualified = [i.id for i in items if i.department == dept]
        for k in range(12):
            inspectors.append(
                {
                    "inspector_id": f"{dept}-{k:02d}",
                    "department": dept,
                    "area": rng.choice(["", "41", "4101", "4102", "42"]),
                    "items": ";".join(q for q in qualified if rng.random() < 0.8 or k < 4),
                    "active": bool(k < 4 or rng.random() < 0.9),
                }
            )
    inspectors_df = pd.DataFrame(inspectors)
    codes = companies["uscc"].to_numpy()
    tables = {
        "companies": companies,
        "inspectors": pd.concat(
            [inspectors_df, _universal_inspectors(items, 2)], ignore_index=True
        ),
        "conflicts": pd.DataFrame(
            {
                "inspector_id": rng.choice(inspectors_df["inspector_id"].to_numpy(), 200),
                "uscc": rng.choice(codes, 200),
            }
        ),
        "department_checks": pd.DataFrame(
            {
                "uscc": rng.choice(codes, 150),
                "department": rng.choice(["samr", "fire"], 150),
                "n": rng.integers(1, 3, 150),
            }
        ),
        "item_checks": pd.DataFrame(
            {
                "uscc": rng.choice(codes, 150),
                "item_id": rng.choice(["SC-GS-01", "XF-01"], 150),
                "n": 1,
            }
        ),
    }
    params = DrawParams(items=items, triggered=tuple(codes[:5]))
    return params, tables


def test_same_inputs_give_the_same_bytes_whatever_the_row_order() -> None:
    params, tables = _big_case()
    snap = Snapshot(_copy(tables))
    first = draw_plan(params, snap, 20240601)
    data = first.canonical_list()
    assert len(first.tasks) > 500 and data.startswith(b'"visit_no","uscc","tier","item_id",')
    assert draw_plan(params, Snapshot(_copy(tables)), 20240601).canonical_list() == data
    assert draw_plan(params, snap, 20240601).canonical_list() == data  # snapshot reusable
    for shuffle_seed in (1, 2):
        shuffled = Snapshot(_shuffled(tables, shuffle_seed))
        assert shuffled.pool_hash == snap.pool_hash
        assert shuffled.inspector_hash == snap.inspector_hash
        other = draw_plan(params, shuffled, 20240601)
        assert other.canonical_list() == data
        assert other.workload == first.workload
    # the order of the items and of the triggered codes does not matter either
    reordered = DrawParams(
        items=tuple(reversed(params.items)), triggered=tuple(reversed(params.triggered))
    )
    assert draw_plan(reordered, snap, 20240601).canonical_list() == data
    # replay from the stored snapshot (CSV files written and read back): the same bytes
    stored = {}
    for name, frame in tables.items():
        text = {c: str for c in frame.columns if c not in ("n", "active")}
        buffer = io.StringIO(frame.to_csv(index=False))
        stored[name] = pd.read_csv(buffer, dtype=text, keep_default_na=False)
    replay = Snapshot(stored)
    assert (replay.pool_hash, replay.inspector_hash) == (snap.pool_hash, snap.inspector_hash)
    assert list_sha256(draw_plan(params, replay, 20240601).canonical_list()) == list_sha256(data)


def test_a_different_seed_gives_a_different_list() -> None:
    params, tables = _big_case()
    snap = Snapshot(_copy(tables))
    lists = {draw_plan(params, snap, seed).canonical_list() for seed in (1, 2, 3, 2**40)}
    assert len(lists) == 4


def test_hashes_change_with_the_content() -> None:
    _, tables = _big_case()
    snap = Snapshot(_copy(tables))
    changed = _copy(tables)
    changed["companies"].loc[0, "tier"] = "D" if changed["companies"].loc[0, "tier"] != "D" else "C"
    other = Snapshot(changed)
    assert other.pool_hash != snap.pool_hash and other.inspector_hash == snap.inspector_hash
    changed = _copy(tables)
    changed["inspectors"].loc[0, "active"] = not changed["inspectors"].loc[0, "active"]
    other = Snapshot(changed)
    assert other.pool_hash == snap.pool_hash and other.inspector_hash != snap.inspector_hash


# ---- 4. workload balance ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n_inspectors=st.integers(2, 12),
    ipt=st.integers(2, 4),
    n_companies=st.integers(1, 150),
    ratios=st.lists(st.floats(0.05, 1), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_identical_inspectors_share_the_work_within_one(
    n_inspectors: int, ipt: int, n_companies: int, ratios: list[float], seed: int
) -> None:
    ipt = min(ipt, n_inspectors)
    items = tuple(
        CheckItem(
            id=f"K{k}",
            department="samr",
            name_zh="测试",
            kind="key",
            ratios=Ratios(A=r, B=r, C=r, D=r),
        )
        for k, r in enumerate(ratios)
    )
    companies = _companies({"B": n_companies}, seed=seed % 1000)
    inspectors = _universal_inspectors(items, n_inspectors)
    drawn = draw_plan(
        DrawParams(items=items, inspectors_per_task=ipt),
        Snapshot({"companies": companies, "inspectors": inspectors}),
        seed,
    )
    loads = [drawn.workload.get(i, 0) for i in inspectors["inspector_id"]]
    visits = drawn.tasks["uscc"].nunique()
    assert sum(loads) == ipt * visits  # one team per visit: all are qualified for all items
    assert max(loads) - min(loads) <= 1, loads


def test_workload_balance_on_a_preset_plan() -> None:
    items = preset("national-default").items
    companies = _companies({"A": 300, "B": 400, "C": 200, "D": 100}, seed=6)
    inspectors = _universal_inspectors(items, 7)
    drawn = draw_plan(
        DrawParams(items=items, inspectors_per_task=3),
        Snapshot({"companies": companies, "inspectors": inspectors}),
        11,
    )
    by_dept = defaultdict(list)
    for r in inspectors.itertuples():
        by_dept[r.department].append(drawn.workload.get(r.inspector_id, 0))
    for dept, loads in by_dept.items():
        assert max(loads) - min(loads) <= 1, (dept, loads)
        assert sum(loads) == 3 * len(
            drawn.tasks.query("department == @dept").drop_duplicates("uscc")
        )


def _pairing(n_inspectors: int, tasks: int, seed: int, size: int = 2) -> pd.DataFrame:
    """`tasks` one-item visits (every tier B company at ratio 1) staffed by `n_inspectors`."""
    item = CheckItem(
        id="K1", department="samr", name_zh="测试", kind="key", ratios=Ratios(A=1, B=1, C=1, D=1)
    )
    drawn = draw_plan(
        DrawParams(items=(item,), inspectors_per_task=size),
        Snapshot(
            {
                "companies": _companies({"B": tasks}, seed=1),
                "inspectors": _universal_inspectors([item], n_inspectors),
            }
        ),
        seed,
    )
    assert len(drawn.tasks) == tasks
    return drawn.tasks


def test_partners_are_drawn_at_random_for_every_task() -> None:
    """DOMAIN §7: inspectors drawn at random per task. The candidates were ranked once per
    plan and dealt in that order, so each inspector always had the same partner (8 inspectors,
    200 two-person tasks: 4 distinct pairs of the 28 possible)."""
    pairings = []
    for seed in (1, 2, 3):
        tasks = _pairing(8, 200, seed)
        teams = [tuple(t.split(";")) for t in tasks["inspectors"]]
        assert all(len(set(t)) == 2 for t in teams)  # two different people
        loads = Counter(m for t in teams for m in t)
        assert sorted(loads.values()) == [50] * 8  # the balance is as before: exactly 50 each
        pairs = Counter(teams)
        assert len(pairs) >= 20, pairs  # of 28: expected about 27.9
        partners = {m: {p for t in pairs for p in t if m in t and p != m} for m in loads}
        assert min(len(p) for p in partners.values()) >= 6, partners  # of 7
        pairings.append(dict(zip(tasks["uscc"], tasks["inspectors"], strict=True)))
    assert pairings[0] != pairings[1] != pairings[2]


@pytest.mark.parametrize(("n_inspectors", "size", "tasks"), [(3, 2, 31), (5, 3, 40), (7, 4, 23)])
def test_teams_across_rounds_never_repeat_a_member(
    n_inspectors: int, size: int, tasks: int
) -> None:
    """Teams that span two rounds of the deal (the end of one, the start of the next) are the
    ones that could meet a member twice; over many seeds none does, and the workloads stay
    within one task."""
    distinct = set()
    for seed in range(60):
        frame = _pairing(n_inspectors, tasks, seed, size)
        teams = [t.split(";") for t in frame["inspectors"]]
        assert all(len(set(t)) == size for t in teams), teams
        loads = Counter(m for t in teams for m in t)
        assert len(loads) == n_inspectors
        assert max(loads.values()) - min(loads.values()) <= 1, loads
        distinct.update(frozenset(t) for t in teams)
    assert len(distinct) == math.comb(n_inspectors, size)


# ---- 5. teams split per item ------------------------------------------------------------------


def _two_items() -> tuple[CheckItem, CheckItem]:
    return tuple(
        CheckItem(
            id=i, department="samr", name_zh="测试", kind="key", ratios=Ratios(A=1, B=1, C=1, D=1)
        )
        for i in ("K1", "K2")
    )  # type: ignore[return-value]


@pytest.mark.parametrize("both", [[], ["e"]])
def test_teams_split_when_nobody_covers_all_items(both: list[str]) -> None:
    items = _two_items()
    companies = _companies({"A": 5, "B": 10, "C": 10, "D": 5}, seed=12)
    rows = [("a", "K1"), ("b", "K1"), ("c", "K2"), ("d", "K2")] + [(x, "K1;K2") for x in both]
    inspectors = pd.DataFrame(
        {
            "inspector_id": [r[0] for r in rows],
            "department": "samr",
            "area": "",
            "items": [r[1] for r in rows],
            "active": True,
        }
    )
    drawn = draw_plan(
        DrawParams(items=items), Snapshot({"companies": companies, "inspectors": inspectors}), 5
    )
    tasks = drawn.tasks
    assert len(tasks) == 2 * len(companies)  # every company, both items, one visit each
    assert (tasks.groupby("uscc")["visit_no"].nunique() == 1).all()
    qualified = {"K1": {"a", "b", *both}, "K2": {"c", "d", *both}}
    for t in tasks.itertuples():
        members = set(t.inspectors.split(";"))
        assert len(members) == 2 and members <= qualified[t.item_id], t
    # one team per task now: the workload counts tasks
    assert sum(drawn.workload.values()) == 2 * len(tasks)


def test_one_team_per_department_when_enough_cover_all_items() -> None:
    items = _two_items()
    companies = _companies({"B": 20, "C": 20}, seed=13)
    rows = [("a", "K1;K2"), ("b", "K1;K2"), ("c", "K1;K2"), ("d", "K1"), ("e", "K2")]
    inspectors = pd.DataFrame(
        {
            "inspector_id": [r[0] for r in rows],
            "department": "samr",
            "area": "",
            "items": [r[1] for r in rows],
            "active": True,
        }
    )
    drawn = draw_plan(
        DrawParams(items=items), Snapshot({"companies": companies, "inspectors": inspectors}), 5
    )
    teams = drawn.tasks.groupby("uscc")["inspectors"].agg(set)
    assert (teams.map(len) == 1).all()  # both items of a visit: one team
    assert set().union(*teams).issubset({"a;b", "a;c", "b;c"})
    assert sum(drawn.workload.values()) == 2 * len(companies)
    assert set(drawn.workload) == {"a", "b", "c"}


# ---- engine checks of the parameters ----------------------------------------------------------


def test_parameter_errors() -> None:
    item = _two_items()[0]
    snap = Snapshot(
        {"companies": _companies({"B": 3}), "inspectors": _universal_inspectors([item])}
    )
    for params, code in (
        (DrawParams(items=()), "no_items"),
        (DrawParams(items=(item,), inspectors_per_task=1), "team_too_small"),
    ):
        with pytest.raises(PlanError) as info:
            draw_plan(params, snap, 0)
        assert info.value.code == code
    bad = _companies({"B": 3})
    bad.loc[0, "tier"] = "E"
    with pytest.raises(PlanError) as info:
        draw_plan(DrawParams(items=(item,)), Snapshot({"companies": bad}), 0)
    assert info.value.code == "invalid_tier"
    dup = pd.concat([_companies({"B": 3}), _companies({"B": 1})])
    with pytest.raises(ValueError, match="appears twice"):
        Snapshot({"companies": dup})


def test_empty_pool_gives_an_empty_list() -> None:
    items = preset("national-default").items
    drawn = draw_plan(DrawParams(items=items), Snapshot({}), 0)
    assert drawn.tasks.empty and list(drawn.tasks.columns) == list(LIST_COLUMNS)
    assert drawn.workload == {}
    assert drawn.canonical_list().decode().replace('"', "").strip() == ",".join(LIST_COLUMNS)


# ---- regressions: defects found by these tests, fixed -----------------------------------------


def test_floor_fallback_keeps_tier_a_alone_and_the_cap() -> None:
    """A general item that leaves tier A alone, with a 3 % floor and a 5 % cap, on a pool of
    971 A and 29 D companies: the B–D share (2.9 %) cannot reach the floor by scaling, and the
    engine's fallback used to set every tier, A included, to at least the floor (A 3 %), so A-tier
    companies are drawn for a triggered-only item and 5.8 % are expected (above the 5 % cap),
    while the summary reports scale 1.0."""
    item = CheckItem(
        id="G1",
        department="samr",
        name_zh="测试",
        kind="general",
        ratios=Ratios(A=0.03, B=0.1, C=0.4, D=1.0),
        max_ratio=0.05,
        floor=0.03,
    )
    assert not item.samples_tier_a
    companies = _companies({"A": 971, "D": 29}, seed=0)
    drawn = draw_plan(
        DrawParams(items=(item,)),
        Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])}),
        0,
    )
    s = drawn.items[0]
    share = sum(s.ratios[t] * s.eligible[t] for t in TIERS) / sum(s.eligible.values())
    assert s.ratios["A"] == 0.0 and not (drawn.tasks["tier"] == "A").any()
    assert share <= item.max_ratio + 1e-9


def test_conflict_in_a_joint_team_falls_back_to_teams_per_item() -> None:
    """Two inspectors qualified for both items (x, y), x in conflict with the company; z is
    qualified for K1 only, w for K2 only. Teams (y, z) for K1 and (y, w) for K2 satisfy every
    rule, but the engine raises insufficient_inspectors."""
    items = _two_items()
    companies = pd.DataFrame(
        {
            "uscc": ["914101000000000001"],
            "tier": ["B"],
            "region": REGION,
            "industry": "C13",
            "entity_type": "company",
        }
    )
    inspectors = pd.DataFrame(
        {
            "inspector_id": ["x", "y", "z", "w"],
            "department": "samr",
            "area": "",
            "items": ["K1;K2", "K1;K2", "K1", "K2"],
            "active": True,
        }
    )
    conflicts = pd.DataFrame({"inspector_id": ["x"], "uscc": ["914101000000000001"]})
    drawn = draw_plan(
        DrawParams(items=items),
        Snapshot({"companies": companies, "inspectors": inspectors, "conflicts": conflicts}),
        0,
    )
    assert set(drawn.tasks["inspectors"]) == {"w;y", "y;z"}


def test_an_inspector_listed_twice_is_one_person() -> None:
    """The same inspector_id on two rows (e.g. two areas) was sent as both members of a team
    ('p1;p1'), and with any conflicts table the draw crashed with pandas InvalidIndexError.
    Either the snapshot rejects the duplicate or the team has two different people."""
    item = _two_items()[0]
    companies = pd.DataFrame(
        {
            "uscc": ["914101000000000001"],
            "tier": ["B"],
            "region": REGION,
            "industry": "C13",
            "entity_type": "company",
        }
    )
    inspectors = pd.DataFrame(
        {
            "inspector_id": ["p1", "p1"],
            "department": "samr",
            "area": ["", "41"],
            "items": "K1",
            "active": True,
        }
    )
    try:
        snap = Snapshot({"companies": companies, "inspectors": inspectors})
    except ValueError:
        return
    try:
        drawn = draw_plan(DrawParams(items=(item,)), snap, 0)
    except PlanError as e:
        assert e.code == "insufficient_inspectors"
        return
    members = drawn.tasks["inspectors"].iloc[0].split(";")
    assert len(set(members)) == len(members)


def _report_item(**fields: object) -> CheckItem:
    return CheckItem.model_validate(
        {"id": "ZZ-GS-01", "department": "samr", "name_zh": "企业公示信息抽查", "kind": "general",
         "ratios": {"A": 0.02, "B": 0.08, "C": 0.30, "D": 1.0}, "a_tier": "sample", **fields}
    )  # fmt: skip


def test_a_binding_cap_draws_at_most_its_whole_count() -> None:
    """The review's SJ-2026-00001: cap 6 % of 536 eligible is 32.16 companies; rounding the
    scaled ratios drew 33 (6.16 %). Now the ratios are scaled to ⌊0.06 × 536⌋ = 32, drawn every
    time, and each company still has its stored probability."""
    item = _report_item(max_ratio=0.06)
    companies = _companies({"A": 200, "B": 250, "C": 70, "D": 16}, seed=8)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    sizes = Counter()
    for seed in range(200):
        drawn = draw_plan(DrawParams(items=(item,)), snapshot, seed)
        sizes[len(drawn.tasks)] += 1
    s = drawn.items[0]
    assert sum(s.eligible.values()) == 536
    assert sum(s.ratios[t] * s.eligible[t] for t in TIERS) == pytest.approx(32)
    assert set(sizes) == {32}, sizes
    # version 2 (plans drawn before) scaled to 32.16 and sometimes drew 33: kept for replay
    old = Counter(
        len(draw_plan(DrawParams(items=(item,), draw_version=2), snapshot, seed).tasks)
        for seed in range(200)
    )
    assert 33 in old and set(old) <= {32, 33}


def test_a_binding_floor_draws_at_least_its_whole_count() -> None:
    """The review's SJ-2026-00007: a 3 % floor on 436 companies is 13.08; 13 were drawn
    (2.98 %) for 185 of 200 seeds. Now ⌈0.03 × 436⌉ = 14 are drawn every time."""
    item = _report_item(
        ratios={"A": 0.002, "B": 0.005, "C": 0.01, "D": 0.05}, floor=0.03, max_ratio=0.06
    )
    companies = _companies({"A": 150, "B": 200, "C": 70, "D": 16}, seed=9)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    sizes = Counter(
        len(draw_plan(DrawParams(items=(item,)), snapshot, seed).tasks) for seed in range(200)
    )
    assert set(sizes) == {14}, sizes
    old = Counter(
        len(draw_plan(DrawParams(items=(item,), draw_version=2), snapshot, seed).tasks)
        for seed in range(200)
    )
    assert 13 in old  # version 2 undercut the floor


def test_a_cap_below_one_company_draws_none_and_beats_the_floor() -> None:
    """Where ⌈floor × E⌉ > ⌊cap × E⌋ (a handful of companies) the cap, a legal maximum, wins."""
    item = _report_item(max_ratio=0.05, floor=0.03)
    companies = _companies({"B": 6, "C": 3}, seed=1)
    snapshot = Snapshot({"companies": companies, "inspectors": _universal_inspectors([item])})
    assert all(
        draw_plan(DrawParams(items=(item,)), snapshot, seed).tasks.empty for seed in range(50)
    )


def test_an_unknown_draw_version_is_refused() -> None:
    item = _report_item()
    snapshot = Snapshot(
        {"companies": _companies({"B": 5}), "inspectors": _universal_inspectors([item])}
    )
    with pytest.raises(PlanError) as refused:
        draw_plan(DrawParams(items=(item,), draw_version=1), snapshot, 0)
    assert refused.value.code == "draw_version"


# ---- the repeat rule (draw version 4) -------------------------------------------------------


def _repeat_case() -> tuple[CheckItem, CheckItem, Snapshot]:
    """Two departments' key items at ratio 1, eight companies: C0, C1, C4, C7 inspected at
    random this year (C4 is tier D), C1 also twice by samr (over samr's cap), C6 triggered."""
    ones = Ratios(A=1, B=1, C=1, D=1)
    key = CheckItem(id="K1", department="samr", name_zh="测试", kind="key", ratios=ones)
    other = CheckItem(id="K2", department="fire", name_zh="测试", kind="key", ratios=ones)
    companies = pd.DataFrame(
        {
            "uscc": [f"C{i}" for i in range(8)],
            "tier": ["B", "B", "B", "B", "D", "D", "C", "A"],
            "region": REGION,
            "industry": "C13",
            "entity_type": "company",
        }
    )
    snapshot = Snapshot(
        {
            "companies": companies,
            "department_checks": pd.DataFrame({"uscc": ["C1"], "department": ["samr"], "n": [2]}),
            "random_checks": pd.DataFrame({"uscc": ["C0", "C1", "C4", "C7"], "n": [1, 2, 1, 1]}),
            "inspectors": _universal_inspectors([key, other]),
        }
    )
    return key, other, snapshot


def test_a_company_inspected_at_random_this_year_is_left_out_of_every_items_draw() -> None:
    """DOMAIN §7: no repeated check of a company within the year unless tier D or triggered,
    whatever department checked it; the items one plan draws for a company are one visit."""
    key, other, snapshot = _repeat_case()
    drawn = draw_plan(DrawParams(items=(key, other), triggered=("C6", "C7")), snapshot, 0)
    got = drawn.tasks.groupby("item_id")["uscc"].apply(set).to_dict()
    # K1: C1 over samr's cap, C0 a repeat; C4 tier D; C6 and C7 triggered (C7 a repeat too)
    assert got["K1"] == {"C2", "C3", "C4", "C5", "C6", "C7"}
    assert got["K2"] == {"C2", "C3", "C4", "C5", "C6", "C7"}  # C1 is a repeat for fire too
    s = {x.item_id: x for x in drawn.items}
    assert (s["K1"].excluded_over_cap, s["K1"].excluded_repeat) == (1, 1)  # the cap first
    assert (s["K2"].excluded_over_cap, s["K2"].excluded_repeat) == (0, 2)
    assert s["K1"].eligible == s["K2"].eligible == {"A": 0, "B": 2, "C": 0, "D": 2}
    assert drawn.excluded_repeat == 2  # C0 and C1, kept out of at least one item
    t = drawn.tasks.set_index(["uscc", "item_id"])
    assert t.loc[("C7", "K1"), "basis"] == "triggered" and t.loc[("C4", "K1"), "basis"] == "random"
    # both items of a company are one visit, not a repeat
    assert (drawn.tasks.groupby("uscc")["visit_no"].nunique() == 1).all()
    assert drawn.tasks.groupby("uscc").size().to_dict() == {f"C{i}": 2 for i in range(2, 8)}


def test_the_repeat_rule_off_or_before_version_4_draws_as_before() -> None:
    key, other, snapshot = _repeat_case()
    on = draw_plan(DrawParams(items=(key, other)), snapshot, 7)
    off = draw_plan(DrawParams(items=(key, other), avoid_repeat_within_year=False), snapshot, 7)
    v3 = draw_plan(DrawParams(items=(key, other), draw_version=3), snapshot, 7)
    assert set(off.tasks["uscc"]) == {f"C{i}" for i in range(8)}
    assert {x.excluded_repeat for x in off.items} == {0} and off.excluded_repeat == 0
    assert v3.canonical_list() == off.canonical_list()  # version 3 ignores random_checks
    assert {x.excluded_repeat for x in v3.items} == {0}
    assert on.canonical_list() != off.canonical_list()
    assert not {"C0", "C1", "C7"} & set(on.tasks["uscc"])


def test_the_inclusion_probability_is_the_ratio_among_the_eligible() -> None:
    """Repeats are out of the frame, not drawn with a lower chance: every eligible company is
    drawn with exactly its tier's ratio (the stored `inclusion_prob`), a repeat never."""
    item = CheckItem(id="K1", department="samr", name_zh="测试", kind="key",
                     ratios=Ratios(A=0.25, B=0.25, C=0.25, D=0.5))  # fmt: skip
    companies = _companies({"B": 60, "D": 8}, seed=2)
    repeats = companies.loc[companies["tier"] == "B", "uscc"].iloc[:20].tolist()
    d_repeats = companies.loc[companies["tier"] == "D", "uscc"].iloc[:4].tolist()
    snapshot = Snapshot(
        {
            "companies": companies,
            "random_checks": pd.DataFrame({"uscc": repeats + d_repeats, "n": 1}),
            "inspectors": _universal_inspectors([item]),
        }
    )
    counts: Counter[str] = Counter()
    for seed in range(SEEDS):
        drawn = draw_plan(DrawParams(items=(item,)), snapshot, seed)
        assert drawn.items[0].eligible == {"A": 0, "B": 40, "C": 0, "D": 8}
        assert drawn.items[0].excluded_repeat == 20
        tiers = drawn.tasks["tier"]
        assert (drawn.tasks.loc[tiers == "B", "inclusion_prob"] == 0.25).all()
        assert (drawn.tasks.loc[tiers == "D", "inclusion_prob"] == 0.5).all()
        assert (tiers == "B").sum() == 10 and (tiers == "D").sum() == 4  # 0.25 × 40, 0.5 × 8
        counts.update(drawn.tasks["uscc"])
    assert not set(repeats) & set(counts)
    eligible_b = set(companies.loc[companies["tier"] == "B", "uscc"]) - set(repeats)
    observed = [counts[u] for u in sorted(eligible_b)]
    # every eligible company equally likely: chi-square homogeneity around 0.25 × SEEDS each
    assert stats.chisquare(observed).pvalue > ALPHA
    assert abs(sum(observed) / (len(observed) * SEEDS) - 0.25) < 1e-12
    assert sum(counts[u] for u in d_repeats) > 0  # tier D: drawn although inspected


def test_the_pool_hash_covers_random_checks_only_when_there_are_some() -> None:
    """A snapshot stored before the table existed (none) keeps its hash; one with repeats has
    another hash than the same pool without them."""
    *_, snapshot = _repeat_case()
    tables = {k: v.copy() for k, v in snapshot.tables.items()}
    without = Snapshot({k: v for k, v in tables.items() if k != "random_checks"})
    empty = Snapshot({**tables, "random_checks": tables["random_checks"].iloc[:0]})
    assert without.pool_hash == empty.pool_hash
    assert without.digest("companies", "department_checks", "item_checks") == without.pool_hash
    assert snapshot.pool_hash != without.pool_hash
    assert snapshot.inspector_hash == without.inspector_hash
