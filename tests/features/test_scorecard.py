"""The public credit evaluation: monotone in records, vetoes, scales, published table, history."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from features.builder import build_features
from features.results import Restatement, Results
from features.scorecard import Scorecard, ScorecardConfig, load_config
from features.specs import spec_version
from records.catalogue import default_catalogue
from records.events import append_events
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from records.workdays import china_today

AS_OF = date(2026, 6, 30)
CARD = Scorecard(load_config())
CAT = default_catalogue()
GRADE = ("grade", "--purpose", "scorecard test")
"""`credsup grade` with the purpose it requires (the read is audited)."""


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("province") / "store"
    sim = simulate(SimulationConfig(companies=150, years=3, seed=4, end=AS_OF))
    store = Store(root)
    ingest_table(store, sim.entities, "entities", "sim", today=AS_OF, history=True)
    ingest_table(store, sim.records, "records", "sim", today=AS_OF, history=True)
    return root


def _score(store: Store, uscc: str, as_of: date = AS_OF) -> dict[str, Any]:
    rows: list[dict[str, Any]] = CARD.score(build_features(store, as_of, [uscc])).to_pylist()
    return rows[0]


def _record(uscc: str, category: str, severity: str | None, event: date, n: int) -> pa.Table:
    spec = CAT[category]
    amount = None if spec.amount == "none" else "1000"
    attributes: dict[str, Any] = (
        {"name": "utility_arrears_months"} if spec.required_attributes else {}
    )
    row = {
        "record_id": f"T-{category}-{n}", "uscc": uscc, "category": category,
        "event_date": event.isoformat(), "recorded_date": event.isoformat(), "source_dept": "test",
        "severity": severity, "amount": amount, "attributes": json.dumps(attributes),
    }  # fmt: skip
    return pa.Table.from_pylist([row])


def _polar(polarity: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for c in CAT.categories:
        if c.code == "registration":
            continue
        for sev in c.severities or (None,):
            if c.polarity_of(sev) == polarity:
                out.append((c.code, sev))
    return out


NEGATIVE, POSITIVE = _polar("negative"), _polar("positive")
GRADE_ORDER = {g.grade: i for i, g in enumerate(CARD.config.grades())}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    company=st.integers(0, 149),
    kind=st.sampled_from(["negative", "positive"]),
    which=st.integers(0, 10_000),
    days_ago=st.integers(0, 1500),
)
def test_adding_a_negative_record_never_raises_the_score_and_a_positive_never_lowers_it(
    base_store: Path, tmp_path_factory: pytest.TempPathFactory, company: int, kind: str,
    which: int, days_ago: int,
) -> None:  # fmt: skip
    root = tmp_path_factory.mktemp("case") / "store"
    shutil.copytree(base_store, root)
    store = Store(root)
    uscc = sorted(store.read("entities").column("uscc").to_pylist())[company]
    before = _score(store, uscc)
    choices = NEGATIVE if kind == "negative" else POSITIVE
    category, severity = choices[which % len(choices)]
    ingest_table(store, _record(uscc, category, severity, AS_OF - timedelta(days=days_ago), which),
                 "records", "test", today=AS_OF, history=True)  # fmt: skip
    after = _score(store, uscc)
    if kind == "negative":
        assert after["score"] <= before["score"], (category, severity)
        assert GRADE_ORDER[after["grade"]] >= GRADE_ORDER[before["grade"]]
    else:
        assert after["score"] >= before["score"], (category, severity)
        assert GRADE_ORDER[after["grade"]] <= GRADE_ORDER[before["grade"]]


def _fresh_company(tmp_path: Path) -> tuple[Store, str]:
    from records import uscc as codes

    store = Store(tmp_path / "store")
    code = codes.generate(__import__("numpy").random.default_rng(9), "91", "410102")
    ent = {"uscc": code, "name": "测试有限公司", "established_date": "2010-01-01",
           "recorded_date": "2010-01-05"}  # fmt: skip
    ingest_table(store, pa.Table.from_pylist([ent]), "entities", "samr", today=AS_OF, history=True)
    return store, code


def test_an_expired_record_stops_counting_on_the_right_day(tmp_path: Path) -> None:
    store, code = _fresh_company(tmp_path)
    decided = date(2025, 1, 10)
    clean = _score(store, code, decided)["score"]
    ingest_table(
        store,
        _record(code, "admin_penalty", "minor", decided, 1),
        "records",
        "samr",
        today=AS_OF,
        history=True,
    )
    # minor penalties are public for at most 3 months (90 days) from the decision
    assert _score(store, code, decided + timedelta(days=89))["score"] < clean
    assert _score(store, code, decided + timedelta(days=90))["score"] == clean


def test_a_repaired_record_stops_counting_from_its_repair_day(tmp_path: Path) -> None:
    store, code = _fresh_company(tmp_path)
    decided = date(2024, 3, 1)
    ingest_table(
        store,
        _record(code, "admin_penalty", "general", decided, 2),
        "records",
        "samr",
        today=AS_OF,
        history=True,
    )
    clean = _score(store, code, decided - timedelta(days=1))["score"]
    repaired = date(2024, 9, 1)
    repair = {"record_id": "T-admin_penalty-2", "event_type": "repair",
              "effective_date": repaired, "recorded_date": repaired}  # fmt: skip
    append_events(store, [repair], today=AS_OF)
    assert _score(store, code, repaired - timedelta(days=1))["score"] < clean
    assert _score(store, code, repaired)["score"] == clean


def test_vetoes_cap_the_grade(tmp_path: Path) -> None:
    store, code = _fresh_company(tmp_path)
    for i in range(3):  # enough positive records to be an A on points alone
        honour = _record(code, "honor", "national", date(2026, 1, 1) + timedelta(days=i), 10 + i)
        ingest_table(store, honour, "records", "samr", today=AS_OF, history=True)
    ingest_table(
        store,
        _record(code, "red_list", "listed", date(2026, 2, 1), 20),
        "records",
        "samr",
        today=AS_OF,
        history=True,
    )
    ingest_table(
        store,
        _record(code, "tax_credit_grade", "A", date(2026, 4, 1), 21),
        "records",
        "tax",
        today=AS_OF,
        history=True,
    )
    ingest_table(
        store,
        _record(code, "spot_check", "pass", date(2026, 4, 2), 22),
        "records",
        "samr",
        today=AS_OF,
        history=True,
    )
    assert _score(store, code)["grade"] == "A"
    ingest_table(store, _record(code, "serious_dishonest_list", "listed", date(2026, 5, 1), 30),
                 "records", "samr", today=AS_OF, history=True)  # fmt: skip
    result = _score(store, code)
    assert result["grade"] == "D" and result["vetoes"] == ["on_serious_dishonest_list"]
    assert result["top_deductions"][0]["feature"] == "on_serious_dishonest_list"


def test_a_company_without_records_scores_the_base_share() -> None:
    table = pa.table({"uscc": ["x"], "as_of": [AS_OF]})
    names = {r.feature for r in CARD.config.rules}
    for name in sorted(names):
        table = table.append_column(name, pa.array([0.0]))
    row = CARD.score(table).to_pylist()[0]
    assert row["score"] == 800 and row["grade"] == "B" and row["top_deductions"] == []


def test_scales_and_cut_offs_are_configuration() -> None:
    assert [g.grade for g in load_config(scale="hunan").grades()] == ["优", "良", "中", "差"]
    assert len(load_config(scale="hebei-9").grades()) == 9
    data = load_config().model_dump()
    data["scale"] = [
        {"grade": "好", "min_score": 750, "level": 1},
        {"grade": "差", "min_score": 0, "level": 4},
    ]
    custom = ScorecardConfig.model_validate(data)
    assert [g.grade for g in custom.grades()] == ["好", "差"]
    # refused in one line naming the presets, without pydantic's dump of the whole config
    with pytest.raises(ValueError, match="unknown scale 'Z'; presets: A-D, hunan, hebei-9") as e:
        load_config(scale="Z")
    assert "pydantic" not in str(e.value) and "input_value" not in str(e.value)


def test_a_scorecard_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        # no grade at level 4: the serious-dishonest veto (at most D) has nowhere to go; this
        # passed validation and crashed `credsup score` (min() of an empty sequence)
        ([("优", 860, 1), ("良", 700, 2), ("差", 0, 3)], "no grade of the scale is at that level"),
        ([("A", 860, 1), ("A", 700, 2), ("D", 0, 4)], "distinct"),
        ([("A", 860, 1), ("B", 860, 2), ("D", 0, 4)], "same lowest score"),
        ([("A", 860, 2), ("B", 700, 1), ("D", 0, 4)], "better level"),
        ([], "must be given"),
    ],
)
def test_a_scale_that_cannot_grade_is_refused_when_loaded(
    scale: list[tuple[str, float, int]], message: str
) -> None:
    data = load_config().model_dump()
    data["scale"] = [{"grade": g, "min_score": m, "level": lv} for g, m, lv in scale]
    with pytest.raises(ValidationError, match=message):
        ScorecardConfig.model_validate(data)


def test_rules_must_be_monotone_and_signed_by_direction() -> None:
    data = load_config().model_dump()
    data["rules"] = [*data["rules"], {"feature": "tax_grade_worst_2y", "points": -10, "max": 30}]
    with pytest.raises(ValidationError, match="not monotone"):
        ScorecardConfig.model_validate(data)
    data = load_config().model_dump()
    data["rules"] = [*data["rules"], {"feature": "honours_3y", "points": -10, "max": 30}]
    with pytest.raises(ValidationError, match="disagree with direction"):
        ScorecardConfig.model_validate(data)


def test_the_points_table_is_published() -> None:
    text = CARD.table()
    assert "total 1000 points" in text
    assert "general_penalties_decayed" in text and "-50" in text
    assert "on_serious_dishonest_list → grade at most D" in text
    assert CARD.method_version.startswith("sc-")


def test_the_points_rules_are_published_for_machines_too() -> None:
    res = CliRunner().invoke(app, ["scorecard", "--scale", "hunan", "--json"])
    assert res.exit_code == 0, res.output
    published = json.loads(res.stdout)
    card = Scorecard(load_config(scale="hunan"))
    assert published["method_version"] == card.method_version
    assert [g["grade"] for g in published["grades"]] == ["优", "良", "中", "差"]
    assert ScorecardConfig.model_validate(published["config"]) == card.config


def test_cli_keeps_history_and_answers_the_grade_on_a_day(base_store: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(base_store, data_dir / "store")
    env = {"CREDSUP_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    feats = runner.invoke(app, ["features", "--as-of", "2025-12-31", "--json"], env=env)
    assert feats.exit_code == 0, feats.output
    assert json.loads(feats.stdout)["spec_version"] == spec_version()
    for day in ("2025-12-31", "2026-03-31"):
        res = runner.invoke(app, ["score", "--as-of", day, "--json"], env=env)
        assert res.exit_code == 0, res.output
        payload = json.loads(res.stdout)
        # companies registered by that day, and only those
        ent = Store(data_dir / "store").read("entities").to_pylist()
        known = {e["uscc"] for e in ent if e["recorded_date"] <= date.fromisoformat(day)}
        assert payload["companies"] == len(known) == sum(payload["grades"].values())
    uscc = sorted(Store(data_dir / "store").read("entities").column("uscc").to_pylist())[0]
    history = Results(data_dir).history(uscc)
    assert [r["as_of"] for r in history] == [date(2025, 12, 31), date(2026, 3, 31)]
    on = runner.invoke(app, [*GRADE, uscc, "--on", "2026-02-15", "--json"], env=env)
    assert json.loads(on.stdout)["as_of"] == "2025-12-31"
    assert (
        json.loads(
            runner.invoke(app, [*GRADE, uscc, "--on", "2026-04-01", "--json"], env=env).stdout
        )["as_of"]
        == "2026-03-31"
    )
    early = runner.invoke(app, [*GRADE, uscc, "--on", "2025-01-01"], env=env)
    assert early.exit_code == 1
    coming = (china_today() + timedelta(days=1)).isoformat()  # refused, as by the API
    later = runner.invoke(app, [*GRADE, uscc, "--on", coming], env=env)
    assert later.exit_code == 2 and "after today" in later.output
    text = runner.invoke(app, ["score", "--as-of", "2026-03-31"], env=env)
    assert "grades as of 2026-03-31" in text.stdout and "companies" in text.stdout
    # several methods for one date: the grade published is the one `credsup load` loads (the
    # file written last), not the method whose hash sorts last; each method's config is kept;
    # on a past day, another method's grades are a restatement
    for scale in ("hebei-9", "hunan", "A-D", "hunan"):
        args = ["score", "--as-of", "2026-03-31", "--scale", scale]
        refused = runner.invoke(app, args, env=env)
        assert refused.exit_code == 1 and "would replace it" in " ".join(refused.output.split())
        res = runner.invoke(app, [*args, "--restate", "the province changed its scale"], env=env)
        assert res.exit_code == 0, res.output
        graded = runner.invoke(app, [*GRADE, uscc, "--on", "2026-04-01", "--json"], env=env)
        method = Scorecard(load_config(scale=scale)).method_version
        assert json.loads(graded.stdout)["method_version"] == method, scale
        kept = Results(data_dir).method(method)
        assert kept is not None and Scorecard(ScorecardConfig(**kept)).method_version == method


def test_a_past_days_published_evaluation_is_not_silently_rewritten(
    base_store: Path, tmp_path: Path
) -> None:
    """A record sent today but recorded (by its department) before a past as-of day changed
    that day's stored grades when `score` ran again: `grade --on` then reported a grade that
    was never published. A daily feed's late row now counts from the day it arrives, so the past
    day stays; a back-fill of history (--history) may still change it, and that needs --restate
    with a reason, and the old file is kept."""
    data_dir = tmp_path / "data"
    shutil.copytree(base_store, data_dir / "store")
    env = {"CREDSUP_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    day = "2026-03-31"
    assert runner.invoke(app, ["score", "--as-of", day], env=env).exit_code == 0
    published = data_dir / "results" / "scores" / f"as_of={day}"
    (first,) = published.glob("*.parquet")
    written = first.stat().st_mtime_ns
    assert runner.invoke(app, ["score", "--as-of", day], env=env).exit_code == 0  # the same
    assert first.stat().st_mtime_ns == written  # not rewritten: still the one published
    # another method (scale) would become the published one: a restatement as well
    hunan = runner.invoke(app, ["score", "--as-of", day, "--scale", "hunan"], env=env)
    assert hunan.exit_code == 1 and "would replace it" in " ".join(hunan.output.split())
    assert list(published.glob("*.parquet")) == [first]
    uscc = sorted(Store(data_dir / "store").read("entities").column("uscc").to_pylist())[0]

    def graded() -> dict[str, Any]:
        res = runner.invoke(app, [*GRADE, uscc, "--on", "2026-04-15", "--json"], env=env)
        return dict(json.loads(res.stdout))

    before = graded()
    late = tmp_path / "late.csv"
    late.write_text(
        "record_id,uscc,category,severity,event_date,recorded_date,source_dept,amount,attributes\n"
        f"LATE-1,{uscc},serious_dishonest_list,listed,2026-03-01,2026-03-01,samr,,{{}}\n"
    )
    ingest = ["ingest", str(late), "--kind", "records", "--source", "samr"]
    daily = tmp_path / "daily.csv"
    daily.write_text(late.read_text().replace("LATE-1", "DAILY-1"))
    assert runner.invoke(app, [*ingest[:1], str(daily), *ingest[2:]], env=env).exit_code == 0
    assert runner.invoke(app, ["score", "--as-of", day], env=env).exit_code == 0  # unchanged
    assert first.stat().st_mtime_ns == written and graded() == before
    assert runner.invoke(app, [*ingest, "--history"], env=env).exit_code == 0
    refused = runner.invoke(app, ["score", "--as-of", day], env=env)
    assert refused.exit_code == 1 and "not silently rewritten" in refused.output, refused.output
    assert "score or grade of 1 companies would change" in " ".join(refused.output.split())
    assert graded() == before
    # the features stored for the day carry the flags served with its scores: the same rule
    features = data_dir / "results" / "features" / f"as_of={day}"
    (flags,) = features.glob("*.parquet")
    stored = flags.stat().st_mtime_ns
    alone = runner.invoke(app, ["features", "--as-of", day], env=env)
    assert alone.exit_code == 1 and "on_serious_dishonest_list" in alone.output, alone.output
    assert flags.stat().st_mtime_ns == stored and list(features.glob("*.parquet")) == [flags]
    restated = runner.invoke(
        app, ["score", "--as-of", day, "--restate", "dishonest listing sent late"], env=env
    )
    assert restated.exit_code == 0, restated.output
    after = graded()
    assert after["grade"] == "D" != before["grade"]
    assert after["vetoes"] == ["on_serious_dishonest_list"]
    folder = data_dir / "results" / "scores" / f"as_of={day}"
    assert len(list(folder.glob("*.parquet.superseded-*"))) == 1
    (line,) = (data_dir / "results" / "scores" / "restatements.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "dishonest listing sent late"
    assert json.loads(line)["changed"] == 1
    (line,) = (data_dir / "results" / "features" / "restatements.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "dishonest listing sent late"
    served = pq.read_table(flags, columns=["uscc", "on_serious_dishonest_list"]).to_pylist()
    assert {r["uscc"]: r["on_serious_dishonest_list"] for r in served}[uscc] == 1
    # today's evaluation may still grow (records of the day arrive all day): no restatement
    today = china_today().isoformat()
    assert runner.invoke(app, ["score", "--as-of", today], env=env).exit_code == 0
    more = tmp_path / "more.csv"
    more.write_text(
        late.read_text()
        .replace("LATE-1", "LATE-2")
        .replace(
            uscc, sorted(Store(data_dir / "store").read("entities").column("uscc").to_pylist())[1]
        )
    )
    assert runner.invoke(app, ["ingest", str(more), "--kind", "records", "--source", "samr"],
                         env=env).exit_code == 0  # fmt: skip
    assert runner.invoke(app, ["score", "--as-of", today], env=env).exit_code == 0


def test_the_method_version_follows_rules_and_cut_offs() -> None:
    base = Scorecard(load_config())
    assert Scorecard(load_config()).method_version == base.method_version
    assert Scorecard(load_config(scale="hunan")).method_version != base.method_version
    data = load_config().model_dump()
    data["rules"][0]["points"] = -51
    assert Scorecard(ScorecardConfig.model_validate(data)).method_version != base.method_version


def test_changing_a_preset_cut_off_changes_the_method_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import features.scorecard as module

    before = Scorecard(load_config()).method_version
    monkeypatch.setitem(
        module.SCALES, "A-D", (("A", 900, 1), ("B", 700, 2), ("C", 600, 3), ("D", 0, 4))
    )
    assert Scorecard(load_config()).method_version != before


def test_stored_tiers_of_a_past_day_are_restated_only_knowingly(tmp_path: Path) -> None:
    results = Results(tmp_path)
    day, today = date(2026, 3, 31), date(2026, 4, 1)
    tiers = pa.table({"uscc": ["a", "b"], "tier": ["A", "C"], "probability": [0.1, 0.4]})
    results.write_published("tiers", tiers, day, "credit-tier-v1", today=today)
    results.write_published("tiers", tiers, day, "credit-tier-v1", today=today)  # the same
    moved = tiers.set_column(1, "tier", pa.array(["A", "D"]))
    with pytest.raises(Restatement, match="tier or probability of 1 companies would change"):
        results.write_published("tiers", moved, day, "credit-tier-v1", today=today)
    assert results.read("tiers", day, "credit-tier-v1") == tiers
    results.write_published("tiers", moved, day, "credit-tier-v1", today=day)  # still that day
    assert results.read("tiers", day, "credit-tier-v1") == moved
    with pytest.raises(Restatement):  # a company left out is a change too
        results.write_published("tiers", moved.slice(0, 1), day, "credit-tier-v1", today=today)
    results.write_published("tiers", tiers, day, "credit-tier-v1", today=today, restate="fix")
    assert results.read("tiers", day, "credit-tier-v1") == tiers
