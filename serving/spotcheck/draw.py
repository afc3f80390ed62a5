"""The sampling design: a pure function of (parameters, pool snapshot, seed) → the list.

Nothing here reads a database or the clock, so a stored plan can be replayed anywhere and gives
the identical list (`canonical_list` is what is hashed and compared).

**Companies** (per item, in item-id order): the eligible companies of each tier are those in the
plan's population that the item applies to, minus those over a yearly cap (the department has
inspected them `department_yearly_cap` times this year, or the item `yearly_cap` times, tier D
exempt from the latter), minus, from draw version 4 with `avoid_repeat_within_year`, those
already inspected at random this calendar year by any department (`random_checks`; tier D
exempt: DOMAIN §7, "avoid repeated checks of a company within the year unless tier D or
triggered"), and minus triggered companies (which are taken with probability 1, whatever
their earlier inspections; a triggered inspection earlier in the year blocks no random draw).
Every eligible company is drawn with probability exactly its tier's ratio r, the
`inclusion_prob` stored with it (given its eligibility, which the snapshot fixes: the companies
left out are outside the frame, not drawn with a lower chance); the tiers of an item are
rounded together (systematic sampling over its eligible companies in random order,
`_draw_item`), so an item with an expected Σ rE companies draws ⌊Σ rE⌋ or ⌈Σ rE⌉ of them.
Before the draw, a general item's ratios are scaled down so that at most ⌊max_ratio × E⌋ of its
E eligible companies are expected to be drawn, and any item's ratios are scaled up (capped at 1)
so that at least ⌈floor × E⌉ are; the expected count is then a whole number, which the
systematic sampling draws exactly, so the cap is never exceeded nor the floor undercut by
rounding (draw version 3; version 2 scaled to max_ratio × E and floor × E, which rounding could
exceed or undercut by one, and is kept to replay the plans it drew).

**Joint visits**: all items drawn for one company form one visit (进一次门、查多项事), one
inspection for the repeat rule of the plans that follow.

**Inspectors**: each department of a visit sends a team of `inspectors_per_task` (≥ 2)
distinct active inspectors of that department, whose area is a prefix of the company's
region code and who are qualified for all of the department's items in the visit (if fewer
than that exist, each item gets its own team). Teams with the same candidates are shuffled and
dealt the candidates in rounds, each round every candidate once in order of (workload so far, a
fresh random key for the round): workloads stay within one task of each other inside a group,
and partners change from task to task (`_deal`). An inspector with a conflict (declared, or on the
department's previous inspection of the company) is replaced by the least-loaded candidate
without one.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from serving.spotcheck.items import TIERS, CheckItem

DRAW_VERSION = 4
"""The sampling design's version, stored with every plan: a change to anything that alters the
list drawn from the same (parameters, snapshot, seed) must increase it, so that a stored plan is
never "verified" against another design. New plans are drawn by this version; a stored plan is
replayed by the version that drew it (`DRAW_VERSIONS`)."""

DRAW_VERSIONS = (2, 3, 4)
"""The versions this release replays: 2 scaled a capped or floored item to the exact share
(max_ratio × E, floor × E), which the rounding could exceed or undercut by one company; 3
scales it to the whole count ⌊max_ratio × E⌋ or ⌈floor × E⌉; 4 also leaves out of the random
draw a company inspected at random earlier in the year (`DrawParams.avoid_repeat_within_year`,
unless tier D). Versions 2 and 3 never apply that rule, whatever their parameters say."""

_EPS = 1e-9
"""Tolerance of the count arithmetic (0.29 × 100 is 28.999999999999996 in binary)."""

MAX_ITEMS = 62
"""Items per plan (an item set is a bit mask in an int64)."""

LIST_COLUMNS = (
    "visit_no", "uscc", "tier", "item_id", "department", "inspectors", "inclusion_prob", "basis",
)  # fmt: skip

SNAPSHOT_TABLES: dict[str, tuple[str, ...]] = {
    "companies": ("uscc", "tier", "region", "industry", "entity_type"),
    "department_checks": ("uscc", "department", "n"),
    "item_checks": ("uscc", "item_id", "n"),
    "random_checks": ("uscc", "n"),
    "inspectors": ("inspector_id", "department", "area", "items", "active"),
    "conflicts": ("inspector_id", "uscc"),
}
"""What a draw reads. `department_checks`/`item_checks`: inspections in the plan's calendar year
known when it was drawn (earlier plans' tasks and the departments' `spot_check` records in the
store, each inspection once); `random_checks`: of those, the inspections drawn at random (not
on a trigger), per company, whatever the department (a plan's visit once, a department's
recorded visit once; plans drawn before version 4 stored none); `conflicts`: declared
conflicts plus, per department, the inspectors of its previous inspection of each company;
`inspectors.items`: qualified item ids joined by ';'."""

POOL_TABLES = ("companies", "department_checks", "item_checks", "random_checks")
"""The tables `Snapshot.pool_hash` covers. `random_checks` enters the hash only when it has
rows, so a snapshot stored before it existed (none: the same content) keeps its hash."""


class PlanError(ValueError):
    """The plan cannot be drawn as asked (the message says why and what to change)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PopulationFilter:
    regions: tuple[str, ...] = ()
    """Division-code prefixes (e.g. '4101' for a city); empty: all."""
    industries: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrawParams:
    """Everything the draw depends on besides the snapshot and the seed (stored with the plan)."""

    items: tuple[CheckItem, ...]
    """The plan's items with the ratios in force (preset and overrides already applied)."""
    population: PopulationFilter = PopulationFilter()
    department_yearly_cap: int = 2
    inspectors_per_task: int = 2
    triggered: tuple[str, ...] = ()
    """Companies checked on a trigger (complaint, referral): every applicable item, p = 1."""
    triggered_items: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Companies checked on a trigger for the named items only (code, item ids), p = 1."""
    draw_version: int = DRAW_VERSION
    """The sampling design that draws (or drew) the plan (`DRAW_VERSIONS`)."""
    avoid_repeat_within_year: bool = True
    """Leave out of the random draw a company inspected at random earlier in the plan's year by
    any department (`random_checks`), unless tier D (DOMAIN §7). Draw version 4 and later."""


@dataclass
class Snapshot:
    """The pools as they were when the plan was drawn (see `SNAPSHOT_TABLES`)."""

    tables: dict[str, pd.DataFrame]

    def __post_init__(self) -> None:
        for name, columns in SNAPSHOT_TABLES.items():
            frame = self.tables.get(name)
            if frame is None:
                frame = pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"snapshot table {name} lacks columns {missing}")
            frame = frame[list(columns)].astype({c: _dtype(c) for c in columns})
            # companies have one row per code: sorting by it alone is the same order, faster
            keys = ["uscc"] if name == "companies" else list(columns)
            if not (name == "companies" and frame["uscc"].is_monotonic_increasing):
                frame = frame.sort_values(keys, kind="stable")
            self.tables[name] = frame.reset_index(drop=True)
        twice = self.tables["inspectors"]["inspector_id"]
        if twice.duplicated().any():
            shown = sorted(set(twice[twice.duplicated()].astype(str)))[:5]
            raise ValueError(f"snapshot inspectors: an id appears twice: {shown}")
        codes = self.tables["companies"]["uscc"].to_numpy(dtype=object)
        if len(codes) > 1 and (codes[1:] == codes[:-1]).any():  # sorted: twins are neighbours
            raise ValueError("snapshot companies: a code appears twice")

    def digest(self, *names: str) -> str:
        """SHA-256 over the canonical CSV of the named tables (sorted rows, fixed columns)."""
        h = hashlib.sha256()
        for name in names:
            h.update(f"#{name}\n".encode())
            h.update(_csv_bytes(self.tables[name]))
        return h.hexdigest()

    @property
    def pool_hash(self) -> str:
        return self.digest(*(n for n in POOL_TABLES if n != "random_checks" or self.has(n)))

    def has(self, name: str) -> bool:
        """Whether the table has rows (an empty table is what a snapshot without it means)."""
        return not self.tables[name].empty

    @property
    def inspector_hash(self) -> str:
        return self.digest("inspectors", "conflicts")


def _dtype(column: str) -> Any:
    if column == "n":
        return "int64"
    if column == "active":
        return "bool"
    return "string"


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return sink.getvalue()


@dataclass
class ItemSummary:
    item_id: str
    department: str
    eligible: dict[str, int]
    ratios: dict[str, float]
    """Ratios in force after the cap or floor."""
    scale: float
    drawn: dict[str, int]
    triggered: int
    excluded_over_cap: int
    excluded_repeat: int = 0
    """Companies the item applies to, within no yearly cap and not triggered, left out because
    they were inspected at random earlier in the year (not tier D; version 4 and later)."""


@dataclass
class Drawn:
    tasks: pd.DataFrame
    """One row per (company, item), columns `LIST_COLUMNS` (inspectors: ids joined by ';')."""
    items: list[ItemSummary] = field(default_factory=list)
    workload: dict[str, int] = field(default_factory=dict)
    excluded_repeat: int = 0
    """Distinct companies left out of at least one item's random draw as repeats."""

    def canonical_list(self) -> bytes:
        return canonical_list(self.tasks)


def canonical_list(tasks: pd.DataFrame) -> bytes:
    """The list as UTF-8 CSV bytes: what is stored, hashed and compared on replay."""
    frame = tasks[list(LIST_COLUMNS)].copy()
    values, where = np.unique(
        frame["inclusion_prob"].to_numpy(dtype=np.float64), return_inverse=True
    )
    frame["inclusion_prob"] = np.array([f"{p:.10g}" for p in values], dtype=object)[where]
    frame = frame.astype({c: "string" for c in LIST_COLUMNS})
    return _csv_bytes(frame)


def list_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- parameters as stored, and the seed's commitment ------------------------------------


def params_to_json(params: DrawParams) -> str:
    doc = {
        "draw_version": params.draw_version,
        "items": [i.model_dump(mode="json") for i in params.items],
        "population": asdict(params.population),
        "department_yearly_cap": params.department_yearly_cap,
        "inspectors_per_task": params.inspectors_per_task,
        "triggered": list(params.triggered),
    }
    if params.triggered_items:  # plans without them keep the parameters they always had
        doc["triggered_items"] = [[c, list(ids)] for c, ids in params.triggered_items]
    if params.draw_version >= 4:  # the repeat rule's version on: earlier ones never apply it
        doc["avoid_repeat_within_year"] = params.avoid_repeat_within_year
    return json.dumps(doc, ensure_ascii=False, sort_keys=True)


def params_from_json(text: str, for_replay: bool = True) -> DrawParams:
    doc = json.loads(text)
    version = doc.get("draw_version")
    if for_replay and version not in DRAW_VERSIONS:
        raise PlanError(
            "draw_version",
            f"the plan was drawn by version {version} of the sampling design and this release "
            f"replays versions {', '.join(map(str, DRAW_VERSIONS))}: replay it with the release "
            "that drew it",
        )
    pop = doc["population"]
    return DrawParams(
        items=tuple(CheckItem.model_validate(i) for i in doc["items"]),
        population=PopulationFilter(**{k: tuple(v) for k, v in pop.items()}),
        department_yearly_cap=int(doc["department_yearly_cap"]),
        inspectors_per_task=int(doc["inspectors_per_task"]),
        triggered=tuple(doc["triggered"]),
        triggered_items=tuple((c, tuple(ids)) for c, ids in doc.get("triggered_items", [])),
        draw_version=int(version) if version in DRAW_VERSIONS else DRAW_VERSION,
        # plans drawn before the rule (version 2, 3) say nothing: they were drawn without it
        avoid_repeat_within_year=bool(doc.get("avoid_repeat_within_year", False)),
    )


def seed_commitment(seed: int | str, salt: str) -> str:
    """What the notice shows of the seed until the checks are over: sha256 of "seed:salt" (the
    salt, 128 random bits, keeps a small chosen seed from being guessed)."""
    return hashlib.sha256(f"{seed}:{salt}".encode()).hexdigest()


# ---- the draw ---------------------------------------------------------------------------------


def draw_plan(params: DrawParams, snapshot: Snapshot, seed: int) -> Drawn:
    """Draw companies per item and tier, merge them into visits and staff every visit."""
    items = sorted(params.items, key=lambda i: i.id)
    if not items:
        raise PlanError("no_items", "the plan has no check items")
    if len(items) > MAX_ITEMS:
        raise PlanError("too_many_items", f"at most {MAX_ITEMS} items in one plan")
    if params.inspectors_per_task < 2:
        raise PlanError("team_too_small", "at least 2 inspectors per task (DOMAIN §7)")
    if params.draw_version not in DRAW_VERSIONS:
        raise PlanError(
            "draw_version",
            f"the plan was drawn by version {params.draw_version} of the sampling design and this "
            f"release replays versions {', '.join(map(str, DRAW_VERSIONS))}: replay it with the "
            "release that drew it",
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    comp = snapshot.tables["companies"]
    n = len(comp)
    tier = _tier_codes(comp["tier"])
    columns = _Columns(comp)
    in_population = _population_mask(columns, tier, params.population)
    triggered = comp["uscc"].isin(set(params.triggered)).to_numpy() & in_population
    # triggered for named items: p = 1 for those, and out of the random draw of those only
    named_trigger: dict[str, np.ndarray] = {}
    for _code, item_ids in params.triggered_items:
        for item_id in item_ids:
            named_trigger.setdefault(item_id, np.zeros(n, bool))
    if named_trigger:
        where = pd.Index(comp["uscc"]).get_indexer(pd.Index([c for c, _ in params.triggered_items]))
        for (_, item_ids), k in zip(params.triggered_items, where, strict=True):
            if k >= 0 and in_population[k]:
                for item_id in item_ids:
                    named_trigger[item_id][k] = True
    chosen_company: list[np.ndarray] = []
    chosen_item: list[np.ndarray] = []
    chosen_prob: list[np.ndarray] = []
    chosen_basis: list[np.ndarray] = []
    summaries = []
    code_index = _Codes(comp["uscc"])
    dept_capped = _over_cap(snapshot.tables["department_checks"], code_index, "department",
                            params.department_yearly_cap)  # fmt: skip
    item_counts = _counts(snapshot.tables["item_checks"], code_index, "item_id")
    repeat = _repeats(params, snapshot, code_index, tier)
    kept_out = np.zeros(n, bool)
    for k, item in enumerate(items):
        applies = in_population & _applies(columns, item)
        capped = dept_capped.get(item.department, np.zeros(n, bool)).copy()
        over_item = item_counts.get(item.id)
        if over_item is not None:
            capped |= (over_item >= item.yearly_cap) & (tier != 3)
        item_triggered = triggered | named_trigger.get(item.id, np.zeros(n, bool))
        repeated = applies & repeat & ~capped & ~item_triggered
        kept_out |= repeated
        eligible = applies & ~capped & ~item_triggered & ~repeat
        base = np.array(item.ratios.as_tuple(), dtype=np.float64)
        if not item.samples_tier_a:
            base[0] = 0.0
        counts = np.bincount(tier[eligible], minlength=4)
        ratios, scale = _scaled_ratios(base, counts, item, params.draw_version)
        idx = np.flatnonzero(eligible)
        picked = _draw_item(rng, idx, ratios[tier[idx]], tier[idx], params.draw_version)
        by_tier = np.bincount(tier[picked], minlength=4)
        drawn = {TIERS[t]: int(by_tier[t]) for t in range(4)}
        chosen_company.append(picked)
        chosen_item.append(np.full(len(picked), k, np.int32))
        chosen_prob.append(ratios[tier[picked]])
        chosen_basis.append(np.zeros(len(picked), np.int8))
        trig = np.flatnonzero(applies & item_triggered)
        chosen_company.append(trig)
        chosen_item.append(np.full(len(trig), k, np.int32))
        chosen_prob.append(np.ones(len(trig)))
        chosen_basis.append(np.ones(len(trig), np.int8))
        summaries.append(
            ItemSummary(
                item.id, item.department,
                eligible={TIERS[t]: int(counts[t]) for t in range(4)},
                ratios={TIERS[t]: round(float(ratios[t]), 10) for t in range(4)},
                scale=round(scale, 10), drawn=drawn, triggered=len(trig),
                excluded_over_cap=int((applies & capped & ~item_triggered).sum()),
                excluded_repeat=int(repeated.sum()),
            )
        )  # fmt: skip
    company = np.concatenate(chosen_company).astype(np.int64)
    item_k = np.concatenate(chosen_item)
    prob = np.concatenate(chosen_prob)
    basis = np.concatenate(chosen_basis)
    order = np.lexsort((item_k, company))
    company, item_k, prob, basis = company[order], item_k[order], prob[order], basis[order]
    team_of_task, team_members, insp_ids, load = _staff(
        rng, params, snapshot, items, company, item_k, code_index, columns.coded["region"]
    )
    visit_no = np.unique(company, return_inverse=True)[1] + 1 if len(company) else company
    members = _member_text(team_members, insp_ids)
    tasks = pd.DataFrame(
        {
            "visit_no": np.asarray(visit_no, np.int64),
            "uscc": comp["uscc"].to_numpy(dtype=object)[company],
            "tier": np.array(TIERS, dtype=object)[tier[company]],
            "item_id": np.array([i.id for i in items], dtype=object)[item_k],
            "department": np.array([i.department for i in items], dtype=object)[item_k],
            "inspectors": members[team_of_task],
            "inclusion_prob": prob,
            "basis": np.where(basis == 1, "triggered", "random").astype(object),
        }
    )
    workload = {insp_ids[i]: int(c) for i, c in enumerate(load) if c}
    return Drawn(
        tasks=tasks, items=summaries, workload=workload, excluded_repeat=int(kept_out.sum())
    )


def _repeats(params: DrawParams, snapshot: Snapshot, codes: _Codes, tier: np.ndarray) -> np.ndarray:
    """Companies the repeat rule keeps out of the random draw: inspected at random earlier in
    the year (any department), not tier D; none before draw version 4 or with the rule off."""
    repeat = np.zeros(len(codes), bool)
    if params.draw_version < 4 or not params.avoid_repeat_within_year:
        return repeat
    frame = snapshot.tables["random_checks"]
    pos = codes.positions(frame["uscc"])
    seen = pos[(pos >= 0) & (frame["n"].to_numpy() > 0)]
    repeat[seen] = True
    repeat &= tier != 3
    return repeat


def check_population(params: DrawParams, snapshot: Snapshot) -> None:
    """Refuse a request that could only draw nothing or drop what it asked for: a population
    filter (or one of its region or industry prefixes) that leaves no company of the pool, items
    that apply to none of the population, and triggered companies the draw would leave out.

    Only for new plans: it is not part of `draw_plan`, so stored plans replay as they were."""
    comp = snapshot.tables["companies"]
    cols = _Columns(comp)
    tier = _tier_codes(comp["tier"])
    pop = params.population
    pool = f"of the {len(comp)} companies in the pool (tiered on the snapshot day)"
    for column, values in (("region", pop.regions), ("industry", pop.industries)):
        unmatched = [v for v in values if not cols.prefixed(column, (v,)).any()]
        if unmatched:
            raise PlanError(
                "empty_population",
                f"none of the {column} codes {pool} starts with {', '.join(unmatched)}",
            )
    steps = (
        ("regions", pop.regions, cols.prefixed("region", pop.regions)),
        ("industries", pop.industries, cols.prefixed("industry", pop.industries)),
        ("entity_types", pop.entity_types, cols.within("entity_type", pop.entity_types)),
        ("tiers", pop.tiers, np.isin(tier, [TIERS.index(t) for t in pop.tiers])),
    )
    mask = np.ones(len(comp), bool)
    named: list[str] = []
    for name, values, matches in steps:
        if not values:
            continue
        mask &= matches
        named.append(f"{name} {', '.join(values)}")
        if not mask.any():
            raise PlanError(
                "empty_population",
                f"no company {pool} is left by the population filter {'; '.join(named)}",
            )
    applies = np.zeros(len(comp), bool)
    for item in params.items:
        applies |= _applies(cols, item)
    if not (mask & applies).any():
        within = f"the population ({'; '.join(named)})" if named else "the pool"
        raise PlanError(
            "empty_population",
            f"no item of the plan ({', '.join(i.id for i in params.items)}) applies to any of the "
            f"{int(mask.sum())} companies of {within}: the items' industries and entity types "
            "match none of them",
        )
    for_items = {code: ids for code, ids in params.triggered_items}
    codes = list(params.triggered) + [c for c in for_items if c not in set(params.triggered)]
    if not codes:
        return
    position = pd.Index(comp["uscc"]).get_indexer(pd.Index(codes))
    dropped = []
    by_id = {i.id: i for i in params.items}
    for code, k in zip(codes, position, strict=True):
        if k < 0:
            dropped.append(f"{code} (not in the pool: no tier on the snapshot day)")
            continue
        outside = [name for name, values, matches in steps if values and not matches[k]]
        if outside:
            dropped.append(f"{code} (outside the population: {', '.join(outside)})")
        elif not applies[k]:
            dropped.append(f"{code} (no item of the plan applies to it)")
        elif code in for_items:
            idle = [i for i in for_items[code] if not _applies(cols, by_id[i])[k]]
            if idle:
                dropped.append(f"{code} (item {', '.join(idle)} does not apply to it)")
    if dropped:
        raise PlanError(
            "triggered_not_drawable",
            f"triggered companies the plan cannot check: {'; '.join(dropped)}. Remove them, or "
            "widen the plan's population or items",
        )


def _member_text(members: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each team's inspector ids, sorted and joined by ';' (rows with -1: unused teams)."""
    if len(members) == 0:
        return np.zeros(0, dtype=object)
    ids = np.asarray(ids, dtype=object)
    rank = np.argsort(np.argsort(ids.astype(str), kind="stable"), kind="stable")
    used = (members >= 0).all(axis=1)
    safe = np.where(members >= 0, members, 0)
    ordered = np.take_along_axis(safe, np.argsort(rank[safe], axis=1), axis=1)
    # few distinct teams: name each once (a team as one integer where that fits)
    base = max(len(ids), 2)
    if base ** ordered.shape[1] < 2**62:
        key = np.zeros(len(ordered), np.int64)
        for col in range(ordered.shape[1]):
            key = key * base + ordered[:, col]
        where, _uniq = pd.factorize(key)
        teams = ordered[np.unique(where, return_index=True)[1]]
    else:
        teams, where = np.unique(ordered, axis=0, return_inverse=True)
    text = np.array([";".join(str(ids[m]) for m in row) for row in teams], dtype=object)
    return np.where(used, text[where.reshape(-1)], "")


def _tier_codes(tiers: pd.Series) -> np.ndarray:
    codes, uniques = pd.factorize(tiers.fillna(""))
    known = np.array([TIERS.index(u) if u in TIERS else -1 for u in uniques], np.int64)
    mapped = known[codes] if len(codes) else np.zeros(0, np.int64)
    if (mapped < 0).any():
        bad = sorted({str(u) for u in uniques if u not in TIERS})[:5]
        raise PlanError("invalid_tier", f"companies without a tier A–D in the snapshot: {bad}")
    return mapped


class _Columns:
    """The companies' text columns, factorised once (filters test each distinct value once)."""

    def __init__(self, comp: pd.DataFrame) -> None:
        self.n = len(comp)
        self.coded = {
            c: pd.factorize(comp[c].fillna(""), sort=True)
            for c in ("region", "industry", "entity_type")
        }

    def match(self, column: str, test: Any) -> np.ndarray:
        codes, uniques = self.coded[column]
        hit = np.array([bool(test(str(u))) for u in uniques], dtype=bool)
        out: np.ndarray = hit[codes] if self.n else np.zeros(0, bool)
        return out

    def prefixed(self, column: str, prefixes: tuple[str, ...]) -> np.ndarray:
        if not prefixes:
            return np.ones(self.n, bool)
        return self.match(column, lambda v: v.startswith(tuple(prefixes)))

    def within(self, column: str, values: tuple[str, ...]) -> np.ndarray:
        if not values:
            return np.ones(self.n, bool)
        return self.match(column, lambda v: v in values)


def _population_mask(cols: _Columns, tier: np.ndarray, pop: PopulationFilter) -> np.ndarray:
    mask: np.ndarray = cols.prefixed("region", pop.regions) & cols.prefixed(
        "industry", pop.industries
    )
    mask &= cols.within("entity_type", pop.entity_types)
    if pop.tiers:
        mask &= np.isin(tier, [TIERS.index(t) for t in pop.tiers])
    return mask


def _applies(cols: _Columns, item: CheckItem) -> np.ndarray:
    mask: np.ndarray = cols.prefixed("industry", item.industries)
    mask = mask & cols.within("entity_type", item.entity_types)
    return mask


class _Codes:
    """The snapshot's company codes, indexed once (the hash table is reused by every look-up)."""

    def __init__(self, codes: pd.Series) -> None:
        self.index = pd.Index(codes)

    def __len__(self) -> int:
        return len(self.index)

    def positions(self, values: pd.Series) -> np.ndarray:
        """Each value's position among the codes, -1 where it is not one of them."""
        found: np.ndarray = self.index.get_indexer(pd.Index(values))
        return found


def _counts(frame: pd.DataFrame, codes: _Codes, key: str) -> dict[str, np.ndarray]:
    """Per value of `key`, the count for each company of the snapshot (0 if none)."""
    out: dict[str, np.ndarray] = {}
    if frame.empty:
        return out
    pos = codes.positions(frame["uscc"])
    known = pos >= 0
    for value, part in frame[known].assign(_pos=pos[known]).groupby(key, sort=True):
        arr = np.zeros(len(codes), np.int64)
        np.add.at(arr, part["_pos"].to_numpy(), part["n"].to_numpy())
        out[str(value)] = arr
    return out


def _over_cap(frame: pd.DataFrame, codes: _Codes, key: str, cap: int) -> dict[str, Any]:
    return {k: v >= cap for k, v in _counts(frame, codes, key).items()}


def _scaled_ratios(
    base: np.ndarray, counts: np.ndarray, item: CheckItem, version: int = DRAW_VERSION
) -> tuple[np.ndarray, float]:
    """Ratios after the general-item cap and the floor (share of the eligible companies).

    Version 3 scales to whole counts: at most ⌊max_ratio × E⌋ expected when the cap binds, at
    least ⌈floor × E⌉ when the floor does (where both cannot hold, ⌈floor × E⌉ > ⌊max_ratio × E⌋
    on a handful of companies, the cap, a legal maximum, wins). Version 2 scaled to the shares
    themselves."""
    total = counts.sum()
    if total == 0:
        return base, 1.0
    expected_count = float((base * counts).sum())
    if version >= 3:
        most = math.floor(item.max_ratio * total + _EPS) if item.max_ratio is not None else None
        least = math.ceil(item.floor * total - _EPS) if item.floor > 0 else 0
        if most is not None:
            least = min(least, most)
        if most is not None and expected_count > most + _EPS:
            scale = most / expected_count
            return base * scale, scale
        if least and expected_count < least - _EPS:
            return _raised(base, counts, least / float(total))
        return base, 1.0
    expected = expected_count / float(total)
    if item.max_ratio is not None and expected > item.max_ratio:
        scale = item.max_ratio / expected
        return base * scale, scale
    if item.floor > 0 and expected < item.floor:
        return _raised(base, counts, item.floor)
    return base, 1.0


def _raised(base: np.ndarray, counts: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """The ratios scaled up (each at most 1) until `floor` of the eligible companies are
    expected: only tiers with a ratio are raised (tier A left alone stays alone)."""
    total = counts.sum()
    sampled = base > 0
    if not sampled.any():
        return base, 1.0
    top = 1.0 / float(base[sampled].min())  # every sampled tier at 1
    if float((counts * sampled).sum() / total) <= floor:
        return np.where(sampled, 1.0, 0.0), top  # the floor is out of reach: all of them
    lo, hi = 1.0, top
    for _ in range(200):  # bisection on s: sum(min(1, s r) E) = floor * total
        mid = (lo + hi) / 2
        if float((np.minimum(1.0, base * mid) * counts).sum() / total) < floor:
            lo = mid
        else:
            hi = mid
    return np.minimum(1.0, base * hi), hi


def _draw_item(
    rng: np.random.Generator,
    idx: np.ndarray,
    prob: np.ndarray,
    stratum: np.ndarray,
    version: int = DRAW_VERSION,
) -> np.ndarray:
    """Each of the companies `idx` with its probability `prob` (its tier's ratio, one per
    `stratum`), all tiers of an item rounded together: systematic sampling (points u, u + 1, …
    on the cumulated probabilities) over the companies, tier after tier, in random order within
    each. Every company is drawn with exactly its probability; the points that fall in a tier
    number ⌊rE⌋ or ⌈rE⌉, and in the item ⌊Σ rE⌋ or ⌈Σ rE⌉ (rounding each tier on its own
    could round up in several tiers at once: above a general item's cap).

    In random order within a tier, the points pick a uniform subset of the count that falls in
    it: so the counts come from the tiers' sums alone, and each tier's companies are a uniform
    subset of that size (1 M companies: about 27 ms an item; sorting the whole item in random
    order took 160 ms). From version 3 an expected count within `_EPS` of a whole number (what
    the cap and the floor scale to) is taken as that number, so it is drawn exactly."""
    jitter = rng.random()  # drawn even for an empty item, so the stream does not depend on it
    sure = prob >= 1.0  # taken whatever the sums' rounding error
    maybe = np.flatnonzero((prob > 0.0) & ~sure)
    codes = stratum[maybe].astype(np.int16)  # tiers 0-3: a radix sort, and sizes by bincount
    by_stratum = maybe[np.argsort(codes, kind="stable")]
    sizes = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
    sizes = sizes[sizes > 0]
    starts = np.cumsum(sizes) - sizes
    sums = prob[by_stratum[starts]] * sizes  # one ratio per stratum
    running = np.cumsum(sums)
    if version >= 3 and len(running):
        whole = np.round(running[-1])
        if abs(running[-1] - whole) < _EPS:
            running[-1] = whole
    points = np.ceil(running - jitter)  # points u, u + 1, … below each running sum
    counts = np.minimum(np.diff(points, prepend=0.0).astype(np.int64), sizes)
    picked = [np.flatnonzero(sure)]
    for start, size, n in zip(starts, sizes, counts, strict=True):
        if n:  # a uniform subset of n of the stratum's companies
            chosen = rng.choice(int(size), size=int(n), replace=False, shuffle=False)
            picked.append(by_stratum[start + chosen])
    out: np.ndarray = idx[np.sort(np.concatenate(picked))]
    return out


# ---- inspectors -------------------------------------------------------------------------------


@dataclass
class _Pool:
    ids: np.ndarray
    dept: np.ndarray
    area: np.ndarray
    area_code: np.ndarray
    area_codes: dict[str, int]
    qualified: np.ndarray
    """Bit mask over the plan's items."""
    tiebreak: np.ndarray
    load: np.ndarray


def _inspector_pool(rng: np.random.Generator, snapshot: Snapshot, items: list[CheckItem]) -> _Pool:
    frame = snapshot.tables["inspectors"]
    frame = frame[frame["active"].to_numpy(dtype=bool)].reset_index(drop=True)
    bit = {item.id: 1 << k for k, item in enumerate(items)}
    qualified = np.array(
        [sum(bit.get(i, 0) for i in set(str(q).split(";")) if i) for q in frame["items"]],
        dtype=np.int64,
    )
    area = frame["area"].fillna("").to_numpy(dtype=object)
    area_code, area_uniques = pd.factorize(area)
    return _Pool(
        ids=frame["inspector_id"].to_numpy(dtype=object),
        dept=frame["department"].to_numpy(dtype=object),
        area=area,
        area_code=area_code,
        area_codes={str(a): k for k, a in enumerate(area_uniques)},
        qualified=qualified,
        tiebreak=rng.random(len(frame)),
        load=np.zeros(len(frame), np.int64),
    )


def _staff(
    rng: np.random.Generator,
    params: DrawParams,
    snapshot: Snapshot,
    items: list[CheckItem],
    company: np.ndarray,
    item_k: np.ndarray,
    code_index: _Codes,
    region_codes: tuple[np.ndarray, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Teams per (company, department): returns (team of each task, members, ids, loads).

    `members` is (teams × size) of inspector positions in `ids`.
    """
    pool = _inspector_pool(rng, snapshot, items)
    size = params.inspectors_per_task
    comp = snapshot.tables["companies"]
    region_k, regions = region_codes  # sorted: groups are staffed in code order
    depts = sorted({i.department for i in items})
    dept_k = np.array([depts.index(i.department) for i in items], np.int64)
    if len(company) == 0:
        return np.zeros(0, np.int64), np.zeros((0, size), np.int64), pool.ids, pool.load
    # first pass: one team per (company, department) with every item of that department
    team_key = company * len(depts) + dept_k[item_k]
    uniq, team_of_task = np.unique(team_key, return_inverse=True)
    masks = np.zeros(len(uniq), np.int64)
    np.bitwise_or.at(masks, team_of_task, np.int64(1) << item_k.astype(np.int64))
    team_company = uniq // len(depts)
    team_dept = uniq % len(depts)
    staff = _Staffing(
        pool, size, depts, np.asarray(regions, dtype=object), region_k, len(comp),
        _conflict_keys(snapshot, pool, code_index),
    )  # fmt: skip
    members = np.full((len(uniq), size), -1, np.int64)
    short = staff.assign(rng, team_company, team_dept, masks, np.arange(len(uniq)), members)
    if len(short):
        # too few inspectors qualified for all of a department's items: one team per item
        team_of_task = team_of_task.copy()
        split_tasks = np.flatnonzero(np.isin(team_of_task, short))
        new_ids = np.arange(len(members), len(members) + len(split_tasks))
        team_of_task[split_tasks] = new_ids
        team_company = np.concatenate([team_company, company[split_tasks]])
        team_dept = np.concatenate([team_dept, dept_k[item_k[split_tasks]]])
        masks = np.concatenate([masks, np.int64(1) << item_k[split_tasks].astype(np.int64)])
        members = np.vstack([members, np.full((len(split_tasks), size), -1, np.int64)])
        still = staff.assign(rng, team_company, team_dept, masks, new_ids, members)
        if len(still):
            staff.raise_short(still, items, team_company, team_dept, masks,
                              comp["uscc"].astype(str).to_numpy())  # fmt: skip
    return team_of_task, members, pool.ids, pool.load


def _conflict_keys(snapshot: Snapshot, pool: _Pool, codes: _Codes) -> np.ndarray:
    """(inspector position × companies + company position) of each conflict, sorted."""
    frame = snapshot.tables["conflicts"]
    if frame.empty or len(pool.ids) == 0:
        return np.zeros(0, np.int64)
    ipos = pd.Index(pool.ids).get_indexer(frame["inspector_id"])
    cpos = codes.positions(frame["uscc"])
    ok = (ipos >= 0) & (cpos >= 0)
    return np.unique(ipos[ok].astype(np.int64) * len(codes) + cpos[ok])


def _in_sorted(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`np.isin(keys, table)` for a sorted `table` (binary search: no hashing of the table)."""
    if len(table) == 0:
        return np.zeros(np.shape(keys), bool)
    pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    found: np.ndarray = table[pos] == keys
    return found


def _deal(
    rng: np.random.Generator, cand: np.ndarray, load: np.ndarray, teams: int, size: int
) -> np.ndarray:
    """The members of `teams` consecutive teams of `size` distinct candidates, as one sequence.

    The sequence is dealt in rounds: each round is every candidate once, ordered by (workload,
    a fresh random key), so each full round gives every candidate one more task and the partial
    last round goes to the least loaded, while partners change from round to round (DOMAIN §7:
    inspectors drawn at random per task). A team that spans two rounds may meet a member twice;
    the repeat is swapped with the first candidate not in the team that comes after the team in
    the later round. That candidate has the same workload as the repeat (it follows it in that
    round and precedes the team in the earlier one), so the workloads are as without the swap.
    """
    n = len(cand)
    total = teams * size
    rounds = -(-total // n)
    keys = rng.random((rounds, n))
    order = np.lexsort((keys, np.broadcast_to(load, (rounds, n))), axis=1)
    seq = cand[order].reshape(-1)
    if size < n and rounds > 1:
        # a team [j·size, (j+1)·size) spans rounds when a round starts strictly inside it
        starts = np.arange(1, rounds) * n
        spanning = np.unique(starts[starts % size != 0] // size)
        spanning = spanning[spanning < teams]
        rows = np.sort(seq[: teams * size].reshape(teams, size)[spanning], axis=1)
        todo = spanning[(rows[:, 1:] == rows[:, :-1]).any(axis=1)].tolist()
        while todo:  # few: a repeat needs the end of one round to meet the start of the next
            j = todo.pop(0)
            lo, hi = j * size, (j + 1) * size
            round_end = ((hi - 1) // n + 1) * n  # the end of the later round
            seen: set[int] = set()
            for pos in range(lo, hi):
                if int(seq[pos]) in seen:  # a repeat: in the later round, after its first
                    team = set(seq[lo:hi].tolist())
                    q = next(q for q in range(hi, round_end) if int(seq[q]) not in team)
                    seq[pos], seq[q] = seq[q], seq[pos]
                    # the repeat moved to team q // size: check it too if it spans rounds
                    moved = q // size
                    if moved < teams and (moved * size) // n != (moved * size + size - 1) // n:
                        todo = sorted({*todo, moved})
                seen.add(int(seq[pos]))
    out: np.ndarray = seq[:total]
    return out


@dataclass
class _Staffing:
    pool: _Pool
    size: int
    depts: list[str]
    regions: np.ndarray
    region_k: np.ndarray
    """Region index of each snapshot company."""
    n_comp: int
    conflicts: np.ndarray
    _base: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def candidates(self, dept: int, region: int, mask: int) -> np.ndarray:
        """Active inspectors of the department whose area covers the region, qualified."""
        base = self._base.get((dept, region))
        if base is None:
            code = str(self.regions[region])
            prefixes = [""] + [code[:k] for k in range(1, len(code) + 1)]
            base = np.flatnonzero(
                (self.pool.dept == self.depts[dept])
                & np.isin(self.pool.area_code, [self.pool.area_codes.get(p, -1) for p in prefixes])
            )
            self._base[(dept, region)] = base
        found: np.ndarray = base[(self.pool.qualified[base] & mask) == mask]
        return found

    def assign(
        self,
        rng: np.random.Generator,
        team_company: np.ndarray,
        team_dept: np.ndarray,
        masks: np.ndarray,
        teams: np.ndarray,
        members: np.ndarray,
    ) -> np.ndarray:
        """Staff `teams` (rows of `members`); returns those with too few candidates."""
        pool, size = self.pool, self.size
        reg = self.region_k[team_company[teams]]
        order = np.lexsort((masks[teams], reg, team_dept[teams]))
        teams = teams[order]
        d_s, r_s, m_s = team_dept[teams], self.region_k[team_company[teams]], masks[teams]
        change = np.flatnonzero((np.diff(d_s) != 0) | (np.diff(r_s) != 0) | (np.diff(m_s) != 0))
        bounds = np.concatenate([[0], change + 1, [len(teams)]])
        short = []
        for lo, hi in itertools.pairwise(bounds):
            group = teams[lo:hi]
            cand = self.candidates(int(d_s[lo]), int(r_s[lo]), int(m_s[lo]))
            if len(cand) < size:
                short.append(group)
                continue
            group = group[rng.permutation(len(group))]
            slots = _deal(rng, cand, pool.load[cand], len(group), size)
            np.add.at(pool.load, slots, 1)
            members[group] = slots.reshape(len(group), size)
        done = np.setdiff1d(teams, np.concatenate(short)) if short else teams
        if len(self.conflicts) and len(done):
            keys = members[done] * self.n_comp + team_company[done][:, None]
            for team in done[_in_sorted(keys, self.conflicts).any(axis=1)]:
                if not self._replace_conflicted(int(team), team_company, team_dept, masks, members):
                    np.add.at(pool.load, members[team], -1)  # unstaffed: split or refused
                    members[team] = -1
                    short.append(np.array([team]))
        return np.concatenate(short) if short else np.zeros(0, np.int64)

    def _replace_conflicted(
        self,
        team: int,
        team_company: np.ndarray,
        team_dept: np.ndarray,
        masks: np.ndarray,
        members: np.ndarray,
    ) -> bool:
        """Replace the team's conflicted members; False if there are too few without one."""
        pool, company = self.pool, int(team_company[team])
        cand = self.candidates(int(team_dept[team]), int(self.region_k[company]), int(masks[team]))
        bad = _in_sorted(cand * self.n_comp + company, self.conflicts).tolist()
        clear = [int(c) for c, b in zip(cand.tolist(), bad, strict=True) if not b]
        clear_set = set(clear)
        row = members[team]
        in_row = set(row.tolist())
        for s in range(len(row)):
            member = int(row[s])
            if member in clear_set:
                continue
            free = [c for c in clear if c not in in_row]
            if not free:  # the caller takes the team apart (its loads as they stand)
                return False
            # the least loaded, ties broken by the inspector's random key for this plan
            best = min(free, key=lambda c: (pool.load[c], pool.tiebreak[c]))
            pool.load[member] -= 1
            pool.load[best] += 1
            row[s] = best
            in_row.discard(member)
            in_row.add(best)
        return True

    def raise_short(
        self,
        short: np.ndarray,
        items: list[CheckItem],
        team_company: np.ndarray,
        team_dept: np.ndarray,
        masks: np.ndarray,
        codes: np.ndarray | None = None,
    ) -> None:
        """Refuse the plan, naming each department, region and items short of inspectors: how
        many are qualified of those needed, and where a conflict (declared, or the company's
        last inspection) excluded some, how many and at which company."""
        problems = set()
        for team in short[:1000]:
            c = int(team_company[team])
            d, r = int(team_dept[team]), int(self.region_k[c])
            mask = int(masks[team])
            cand = self.candidates(d, r, mask)
            names = [i.id for k, i in enumerate(items) if mask >> k & 1]
            excluded = (
                int(_in_sorted(cand * self.n_comp + c, self.conflicts).sum())
                if len(self.conflicts) and len(cand) else 0
            )  # fmt: skip
            why = ""
            if excluded:
                at = f" at {codes[c]}" if codes is not None else ""
                why = (f", {excluded} of them excluded{at} (a declared conflict, or they "
                       "inspected it last time)")  # fmt: skip
            problems.add(
                f"{self.depts[d]} in {self.regions[r] or '(no region)'} for "
                f"{'+'.join(names)}: {len(cand)} qualified of {self.size} needed{why}"
            )
        listed = "; ".join(sorted(problems)[:10])
        raise PlanError(
            "insufficient_inspectors",
            f"too few active, qualified inspectors without a conflict for {len(short)} task(s) "
            f"(department, region, items: {listed}); "
            "import inspectors for these departments and areas, or narrow the plan",
        )
