"""`credsup train`, `promote`, `models`, `tier` and `predict`: the risk model's commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from cli.main import (
    JsonOpt,
    ReadPurposeOpt,
    RestateOpt,
    _as_of,
    _emit_json,
    _progress,
    _refuse_restatement,
    _required_purpose,
    _settings,
    _store,
    app,
    err,
    out,
    share_table,
)
from records.settings import Settings
from records.workdays import china_today

ModelOpt = Annotated[
    str, typer.Option("--model", help="A registered version number or alias.")
]  # fmt: skip


def _registry(settings: Settings) -> Any:
    from training.registry import Registry

    return Registry(settings.data_dir)


def _load(settings: Settings, ref: str) -> tuple[Any, str, Any]:
    from models.bundle import SpecMismatch
    from models.published import ModelNotFound

    registry = _registry(settings)
    try:
        version, model = registry.load(ref)
        model.check_spec()
    except ModelNotFound as exc:
        err.print(f"{exc}; train one with `credsup train` and promote it with `credsup promote`")
        raise typer.Exit(2) from None
    except SpecMismatch as exc:
        err.print(f"model {registry.name} version {ref}: {exc}")
        raise typer.Exit(2) from None
    return registry, version, model


def _tier_rows(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for c in ("tier", "checks", "weighted companies", "problem rate"):
        table.add_column(c, justify="right")
    for r in rows:
        rate = "-" if r["problem_rate"] is None else f"{r['problem_rate']:.1%}"
        table.add_row(r["tier"], f"{r['examples']:,}", f"{r['weighted']:,.0f}", rate)
    return table


def print_report(report: dict[str, Any]) -> None:
    """The evaluation report, as tables and lines."""
    from training.dataset import MIN_VALIDATION_CHECKS, MIN_VALIDATION_EACH_LABEL

    out.print(
        f"validation: {report['examples']:,} checks {report['validation_from']} – "
        f"{report['validation_until']} (trained on {report['training_examples']:,} earlier)"
    )
    if report.get("validation_extended"):
        out.print(
            f"  the latest {report['validation_days']} days held fewer than "
            f"{MIN_VALIDATION_CHECKS} checks with {MIN_VALIDATION_EACH_LABEL} of each label: "
            "the validation reaches back further"
        )
    if report.get("training_short"):
        err.print(
            f"[yellow]warning:[/yellow] trained on {report['training_examples']:,} checks, fewer "
            f"than {MIN_VALIDATION_CHECKS} with {MIN_VALIDATION_EACH_LABEL} of each label: a "
            "model of so few is not to be promoted"
        )
    if report.get("validation_short"):
        err.print(
            f"[yellow]warning:[/yellow] {report['examples']:,} validation checks are fewer than "
            f"{MIN_VALIDATION_CHECKS} with {MIN_VALIDATION_EACH_LABEL} of each label: the "
            "figures below are uncertain; compare models on more checks before promoting one"
        )
    out.print(
        f"AUC {report['auc']:.4f}  PR-AUC {report['pr_auc']:.4f}  Brier {report['brier']:.4f}  "
        f"calibration error {report['calibration_error']:.4f}   (all weighted by 1/inclusion)"
    )
    invalid = report.get("invalid_inclusion_prob", 0)
    if invalid:
        shown = report.get("invalid_inclusion_prob_records", [])
        more = f", … {invalid - len(shown):,} more" if invalid > len(shown) else ""
        out.print(
            f"{invalid:,} spot check{' has' if invalid == 1 else 's have'} an inclusion "
            f"probability that is not a number in (0, 1] ({', '.join(shown)}{more}): "
            "weighted 1, as where it is unknown"
        )
    triggered = report.get("triggered_left_out", 0)
    if triggered:
        out.print(
            f"{triggered:,} spot check{'' if triggered == 1 else 's'} not drawn at random "
            f"(triggered) {'was' if triggered == 1 else 'were'} left out: the examples describe "
            "the population through the random draws"
        )
    out.print(_tier_rows(report["tiers"], "observed problem rate by tier"))
    plan = report["plan"]
    out.print(
        f"tier-weighted plan (A 3 %, B 10 %, C 40 %, D 100 %) finds problems in "
        f"{plan['tiered']:.1%} of inspections, a uniform plan of the same size "
        f"{plan['uniform']:.1%}: lift {plan['lift']:.2f}"
    )
    pop = report["population"]
    shares = "  ".join(f"{t} {s:.1%}" for t, s in pop["shares"].items())
    out.print(f"population {pop['companies']:,} active companies as of {pop['as_of']}: {shares}")
    if pop.get("model_shares"):
        model = "  ".join(f"{t} {s:.1%}" for t, s in pop["model_shares"].items())
        target = pop.get("target_shares")
        wanted = (
            "  (target " + "  ".join(f"{t} {s:.0%}" for t, s in target.items()) + ")"
            if target
            else ""
        )
        out.print(f"  before vetoes and defaults: {model}{wanted}")
    if report.get("truth_skipped"):
        out.print(f"hidden truth not used: {report['truth_skipped']}")
    if report.get("stability_skipped"):
        out.print(report["stability_skipped"])
    if "stability" in report:
        s = report["stability"]
        out.print(
            f"against the previous model: PSI {s['psi']:.4f}, {s['changed_share']:.1%} of "
            "companies change tier"
        )
        matrix = Table(title="transitions (rows: previous tier, columns: new tier)")
        matrix.add_column("")
        for t in "ABCD":
            matrix.add_column(t, justify="right")
        for t, row in s["transitions"].items():
            matrix.add_row(t, *(f"{row[x]:,}" for x in "ABCD"))
        out.print(matrix)
    truth = report.get("truth")
    if truth:
        out.print(_tier_rows(truth["tiers"], "hidden truth: true problem probability by tier"))
        out.print(
            f"hidden truth, validation checks: tier-weighted plan {truth['plan']['tiered']:.1%} vs "
            f"uniform {truth['plan']['uniform']:.1%}: lift {truth['plan']['lift']:.2f} "
            f"(ranking by the truth itself: {truth['oracle_plan']['lift']:.2f})"
        )
        if "population" in truth:
            p = truth["population"]
            out.print(
                f"hidden truth, whole population ({p['companies']:,} companies, "
                f"{p['truth_column']}): lift {p['plan']['lift']:.2f} ("
                + (
                    f"best model of these records, fitted on the truth itself: "
                    f"{p['information_plan']['lift']:.2f}; "
                    if "information_plan" in p
                    else ""
                )
                + f"ranking by the truth itself: {p['oracle_plan']['lift']:.2f}); "
                + "true rate by tier "
                + "  ".join(f"{r['tier']} {r['problem_rate']:.1%}" for r in p["tiers"]
                            if r["problem_rate"] is not None)
            )  # fmt: skip


def _numbers(option: str, text: str, count: int) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise typer.BadParameter(f"{option} needs {count} comma-separated numbers, got {text!r}")
    return values


@app.command()
def train(
    label: Annotated[
        str, typer.Option(help="problem (problem or serious) or serious.")
    ] = "problem",
    validation_days: Annotated[
        int, typer.Option(min=30, help="Validate on the checks of the last N days.")
    ] = 183,
    until: Annotated[
        str | None, typer.Option(help="Train as of this day: only checks made by then.")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Hidden truth folder of a simulated province (evaluation only)."),
    ] = None,
    plots: Annotated[bool, typer.Option(help="Log the ROC, calibration, SHAP plots.")] = True,
    shares: Annotated[
        str,
        typer.Option(help="Target tier shares A,B,C,D in per cent of the active companies."),
    ] = "20,60,15,5",
    thresholds: Annotated[
        str | None,
        typer.Option(help="Probability cut-offs A|B,B|C,C|D instead of shares, e.g. 0.1,0.2,0.4."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a tier model on the stored spot checks, evaluate it, log it to MLflow and register
    it as a new version (not promoted: see `credsup promote`)."""
    from training.train import MissingTruth, NotEnoughData, TrainConfig, check_truth_dir
    from training.train import train as run_training

    if label not in ("problem", "serious"):
        raise typer.BadParameter(f"label must be problem or serious, got {label!r}")
    if truth is not None:
        try:
            check_truth_dir(truth)  # before any work: nothing is trained or registered
        except MissingTruth as exc:
            err.print(f"--truth: {exc}")
            raise typer.Exit(2) from None
    settings = _settings()
    registry = _registry(settings)
    share_values = _numbers("--shares", shares, 4)
    if min(share_values) < 0 or abs(sum(share_values) - 100) > 1e-6:
        raise typer.BadParameter(f"--shares must be 4 per cents that add up to 100, got {shares}")
    cutoffs = _numbers("--thresholds", thresholds, 3) if thresholds else None
    if cutoffs and not (0 <= cutoffs[0] <= cutoffs[1] <= cutoffs[2] <= 1):
        raise typer.BadParameter(
            f"--thresholds must be 3 increasing probabilities in [0, 1], got {thresholds}"
        )
    config = TrainConfig(
        label=label,  # type: ignore[arg-type]
        validation_days=validation_days,
        until=_as_of(until) if until else None,
        shares=(share_values[0] / 100, share_values[1] / 100, share_values[2] / 100,
                share_values[3] / 100),
        thresholds=(cutoffs[0], cutoffs[1], cutoffs[2]) if cutoffs else None,
    )  # fmt: skip
    started = time.perf_counter()
    with _progress("training") as step:
        step("loading the champion")
        previous = registry.champion()
        step("building examples and fitting")
        try:
            outcome = run_training(
                _store(settings), config, truth_dir=truth,
                previous=previous[1] if previous else None,
                previous_version=previous[0] if previous else None,
            )  # fmt: skip
        except NotEnoughData as exc:
            err.print(f"cannot train: {exc}")
            raise typer.Exit(1) from None
        step("logging to MLflow")
        registered = registry.log_training(outcome, config, plots=plots)
    payload = {
        "model": registry.name, "version": registered.version, "run_id": registered.run_id,
        "tracking_uri": registry.uri, "spec_version": outcome.model.spec_version,
        "previous_champion": previous[0] if previous else None,
        "seconds": round(time.perf_counter() - started, 1), "report": outcome.report,
    }  # fmt: skip
    if as_json:
        _emit_json(payload)
        return
    print_report(outcome.report)
    out.print(
        f"registered {registry.name} version {registered.version} (run {registered.run_id}) at "
        f"{registry.uri} in {payload['seconds']} s; promote it with "
        f"`credsup promote {registered.version}`"
    )


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Version number to promote (or 'latest').")],
    force: Annotated[
        bool, typer.Option(help="Promote even if it does not beat the champion.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            help="Why (required with --force; otherwise kept with the decision as a note)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a version the champion if it beats the current one on the validation metrics."""
    from models.published import ModelNotFound

    registry = _registry(_settings())
    if version == "latest":
        versions = registry.versions()
        if not versions:
            err.print(f"no versions of {registry.name} registered yet")
            raise typer.Exit(2)
        version = versions[-1]["version"]
    try:
        decision = registry.promote(version, force=force, reason=reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except ModelNotFound as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    if as_json:
        _emit_json(decision)
    else:
        verb = "promoted to champion" if decision["promoted"] else "not promoted"
        out.print(
            f"{registry.name} version {decision['version']} (label {decision['label'] or '-'}) "
            f"{verb}: {decision['why']}"
        )
        gain = decision.get("comparison", {}).get("auc_gain")
        if gain:
            out.print(
                f"AUC gain {gain['estimate']:+.4f}, 90 % bootstrap interval "
                f"[{gain['p05']:+.4f}, {gain['p95']:+.4f}] ({gain['resamples']} resamples)"
            )
        if decision.get("forced"):
            out.print(f"forced: {decision['reason']}")
        elif decision.get("reason"):
            out.print(f"reason noted with the decision: {decision['reason']}")
    if not decision["promoted"]:
        raise typer.Exit(1)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """Registered versions of the tier model, their metrics and aliases."""
    registry = _registry(_settings())
    rows = registry.versions()
    if as_json:
        _emit_json({"model": registry.name, "tracking_uri": registry.uri, "versions": rows})
        return
    table = Table(title=f"{registry.name} at {registry.uri}")
    for c in ("version", "aliases", "created", "spec", "label", "AUC", "Brier"):
        table.add_column(c)
    for r in rows:
        m = r["metrics"]
        table.add_row(
            r["version"], ",".join(r["aliases"]), r["created"], r["spec_version"] or "-",
            r["label"] or "-",
            f"{m.get('auc', float('nan')):.4f}", f"{m.get('brier', float('nan')):.4f}",
        )  # fmt: skip
    out.print(table)


@app.command()
def tier(
    as_of: Annotated[str, typer.Option("--as-of", help="Date the tiers describe, YYYY-MM-DD.")],
    model: ModelOpt = "champion",
    reasons: Annotated[int, typer.Option(min=0, max=10, help="Reasons per company.")] = 3,
    evidence: Annotated[bool, typer.Option(help="Fill the records behind reasons in.")] = True,
    restate: RestateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tier every active company as of a date with a registered model (default: the champion)
    and store probability, tier and reasons with the as-of date and model version. A past
    day's stored tiers of that model are not rewritten with other tiers unless restated."""
    from features.results import Restatement, Results
    from models.batch import tier_companies

    settings = _settings()
    day = _as_of(as_of, china_today())
    started = time.perf_counter()
    with _progress(f"tiering as of {day}") as step:
        step("loading the model")
        registry, version, tier_model = _load(settings, model)
        trained_until = registry.trained_until(version, tier_model)
        step("features, scores and reasons")
        table = tier_companies(
            _store(settings), tier_model, day, registry.name, version, reasons, evidence
        )
        if table.num_rows == 0:
            err.print(f"no company registered and active as of {day}: nothing tiered or stored")
            raise typer.Exit(1)
        try:
            path = Results(settings.data_dir).write_published(
                "tiers", table, day, f"{registry.name}-v{version}", today=china_today(),
                restate=restate,
            )  # fmt: skip
        except Restatement as exc:
            _refuse_restatement(exc, as_json)
    tiers = table.column("tier").to_pylist()
    n = len(tiers)
    counts = {t: tiers.count(t) for t in "ABCD"}
    payload = {
        "as_of": day.isoformat(), "model": registry.name, "version": version,
        "spec_version": tier_model.spec_version, "companies": n, "tiers": counts,
        "shares": {t: round(c / n, 4) if n else 0.0 for t, c in counts.items()},
        "overridden": sum(a != b for a, b in zip(table.column("model_tier").to_pylist(), tiers,
                                                 strict=True)),
        "path": str(path), "seconds": round(time.perf_counter() - started, 2),
        "trained_until": str(trained_until) if trained_until else None,
        "hindsight": bool(trained_until and trained_until > day),
    }  # fmt: skip
    if payload["hindsight"]:
        # the features are point in time, the model is not: it learnt from checks after the day
        err.print(
            f"warning: {registry.name} version {version} was trained on checks until "
            f"{trained_until}, after {day}: these tiers use outcomes not known on {day} "
            "(hindsight); to see what could have been known, tier with a model trained until "
            "then (`credsup train --until`), or backtest with `credsup predict --model N`",
            soft_wrap=True,
            markup=False,
        )
    if as_json:
        _emit_json(payload)
        return
    out.print(share_table(f"tiers as of {day} ({registry.name} v{version})", "tier", counts))
    out.print(
        f"{n:,} companies, {payload['overridden']:,} moved by a veto or the no-history default; "
        f"{payload['seconds']} s → {path}"
    )


def _read_points(path: Path) -> pa.Table:
    """The points file as a table; a file that cannot be read is `BadPoints` (exit 2), naming
    the rows whose number of fields differs from the header (1 = the first row after it)."""
    from models.batch import SHOWN, BadPoints

    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise typer.BadParameter(f"{path}: points must be a .csv or .parquet file")
    ragged: list[Any] = []

    def skip(row: Any) -> str:
        ragged.append(row)
        return "skip"

    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),  # else bad rows have no number
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types={"uscc": pa.string(), "as_of": pa.string()}
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise BadPoints(f"cannot read the file: {exc}") from None
    if ragged:
        rows = [
            f"row {r.number - 1 if r.number is not None else '?'}: {r.actual_columns} fields "
            f"({r.text[:60]!r})"
            for r in ragged[:SHOWN]
        ]
        more = f" (and {len(ragged) - SHOWN} more)" if len(ragged) > SHOWN else ""
        raise BadPoints(
            f"cannot read the file: rows with another number of fields than the header's "
            f"{ragged[0].expected_columns}: " + "; ".join(rows) + more
        )
    return table


@app.command()
def predict(
    points: Annotated[Path, typer.Option("--points", help="CSV or Parquet with uscc, as_of.")],
    output: Annotated[
        Path | None, typer.Option("--out", help="Output .csv or .parquet (default: next to input).")
    ] = None,
    model: ModelOpt = "champion",
    reasons: Annotated[int, typer.Option(min=0, max=10, help="Reasons per row.")] = 3,
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score (uscc, as_of) pairs point in time (a backtest): probability, tier and reasons.
    The companies scored are logged in the audit log (a line each, with the purpose, required
    as the API requires X-Purpose) before anything is written."""
    from cli.plans import _engine, _log_lines
    from models.batch import BadPoints, predict_points

    why = _required_purpose(purpose, "predict")
    settings = _settings()
    if not points.exists():
        raise typer.BadParameter(f"{points} does not exist")
    started = time.perf_counter()
    registry, version, tier_model = _load(settings, model)
    try:
        read = _read_points(points)
        table = predict_points(_store(settings), tier_model, read, registry.name, version, reasons)
    except BadPoints as exc:
        err.print(f"{points}: {exc}")
        raise typer.Exit(2) from None
    # a line per company: 404 where no point found it (unknown), as the API's batch logs them
    known: dict[str, bool] = {}
    for code, status in zip(table.column("uscc").to_pylist(), table.column("status").to_pylist(),
                            strict=True):  # fmt: skip
        known[code] = known.get(code, False) or status != "unknown"
    lines = [(code, 200 if found else 404) for code, found in known.items()]
    _log_lines(
        _engine(), "predict", lines or [(None, 200)], f"{why}: {points.name}, model v{version}"
    )
    target = output or points.with_name(points.stem + f".predicted-v{version}.csv")
    if target.suffix.lower() == ".parquet":
        pq.write_table(table, target)
    else:
        pacsv.write_csv(table, target)
    statuses = table.column("status").to_pylist()
    payload = {
        "model": registry.name, "version": version, "points": table.num_rows,
        "duplicates": read.num_rows - table.num_rows,
        "scored": statuses.count("scored"), "unknown": statuses.count("unknown"),
        "inactive": statuses.count("inactive"), "path": str(target),
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    if as_json:
        _emit_json(payload)
        return
    out.print(
        f"{payload['scored']:,} of {payload['points']:,} points scored with {registry.name} "
        f"v{version} ({payload['unknown']:,} unknown companies, {payload['inactive']:,} "
        f"inactive) in {payload['seconds']} s → {target}"
    )
    if payload["unknown"]:
        err.print("unknown: no entity with that code registered by its as-of date (not scored)")
    if payload["inactive"]:
        err.print(
            "inactive: the company was not active (suspended, revoked or deregistered) on its "
            "as-of date, so `credsup tier` leaves it out (not scored)"
        )
    if payload["duplicates"]:
        err.print(f"{payload['duplicates']:,} repeated (uscc, as_of) rows were scored once")
