"""`credsup`: the one command line of the service. Each stage adds its subcommands here.

Commands that report figures accept `--json` and then print exactly one JSON object on stdout;
progress goes to stderr, so scripts and schedulers can read stdout as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from records.catalogue import load_catalogue
from records.events import EVENT_REASONS
from records.ingest import REASONS, IngestError, ingest_file
from records.mapping import packaged_mappings
from records.settings import Settings
from records.store import MAX_RUNS, RETIRED_KEPT, SORT_KEYS, Store
from records.summary import store_summary
from records.workdays import china_today

app = typer.Typer(
    name="credsup",
    help="Credit-based supervision: records, scores, tiers and spot checks.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console(soft_wrap=True)

EXIT_OK, EXIT_QUARANTINED, EXIT_FILE_ERROR = 0, 1, 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")]
PurposeOpt = Annotated[
    str | None,
    typer.Option(help="Why this credit information is read (kept in the audit log)."),
]
ReadPurposeOpt = Annotated[
    str | None,
    typer.Option(help="Why this credit information is read (required; kept in the audit log)."),
]
"""The purpose of a read, required (`_required_purpose`: exit 2 without one)."""


RestateOpt = Annotated[
    str | None,
    typer.Option(
        help="Why a past day's stored results are replaced by ones that differ (kept in "
        "restatements.jsonl; the old file is set aside)."
    ),
]


def _refuse_restatement(exc: Exception, as_json: bool) -> None:
    if as_json:
        _emit_json({"error": str(exc)})
    else:
        err.print(f"[red]refused:[/red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(1)


def _settings(as_json: bool = False) -> Settings:
    """The process settings; a bad CREDSUP_* value is a usage error named in one line, as is a
    catalogue file (`CREDSUP_CATALOGUE_PATH`) that cannot be read or is not a valid catalogue:
    every stage reads it (`records.catalogue.default_catalogue`)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        _bad_setting(
            "; ".join(
                f"CREDSUP_{'_'.join(str(p) for p in e['loc']).upper()}={e['input']!r}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            ),
            as_json,
        )
    for name, where, meant in _misspelt_settings():  # else the default is in force unsaid
        if (name, where) in _WARNED:  # a command may take the settings more than once
            continue
        _WARNED.add((name, where))
        err.print(f"[yellow]warning:[/yellow] {escape(name)} ({where}) is no setting and is "
                  f"ignored: did you mean {escape(meant)}?", soft_wrap=True)  # fmt: skip
    if settings.catalogue_path is not None:
        try:
            load_catalogue(settings.catalogue_path)
        except ValidationError as exc:
            problems = "; ".join(
                ".".join(str(p) for p in e["loc"]) + ": " + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()[:3]
            )  # fmt: skip
            named = f"CREDSUP_CATALOGUE_PATH={str(settings.catalogue_path)!r}"
            _bad_setting(f"{named}: not a valid catalogue ({exc.error_count()} problems): "
                         f"{problems}", as_json)  # fmt: skip
        except (OSError, ValueError, yaml.YAMLError) as exc:
            _bad_setting(f"CREDSUP_CATALOGUE_PATH={str(settings.catalogue_path)!r}: {exc}", as_json)
    if settings.holiday_schedule is not None:
        from records.workdays import ScheduleError, load_schedule

        try:
            load_schedule(settings.holiday_schedule)
        except ScheduleError as exc:
            _bad_setting(f"CREDSUP_HOLIDAY_SCHEDULE: {exc}", as_json)
    return settings


_WARNED: set[tuple[str, str]] = set()
"""The misspelt settings this process has warned of."""


def _misspelt_settings() -> list[tuple[str, str, str]]:
    """`CREDSUP_*` names in the environment or `.env` that are no setting but close to one:
    (name, where, the setting). Other names (of scripts, tests) are left alone."""
    import difflib

    known = sorted(f"CREDSUP_{name.upper()}" for name in Settings.model_fields)
    names = {n: "environment" for n in os.environ if n.upper().startswith("CREDSUP_")}
    if Path(".env").is_file():
        from dotenv import dotenv_values

        names.update((n, ".env") for n in dotenv_values(".env") if n.upper().startswith("CREDSUP_"))
    found = []
    for name, where in sorted(names.items()):
        if name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.85)
            if close:
                found.append((name, where, close[0]))
    return found


def _bad_setting(problems: str, as_json: bool) -> NoReturn:
    if as_json:
        _emit_json({"error": f"bad setting {problems}"})
    else:
        err.print(f"[red]error:[/red] bad setting {escape(problems)}", soft_wrap=True)
    raise typer.Exit(EXIT_FILE_ERROR)


def _store(settings: Settings) -> Store:
    return Store(settings.store_dir, settings.duckdb_memory_limit, settings.duckdb_threads)


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        yield lambda msg: progress.update(task, description=f"{label}: {msg}")


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the simulated files.")] = Path(
        "var/simulated"
    ),
    companies: Annotated[int, typer.Option(min=1)] = 10_000,
    years: Annotated[int, typer.Option(min=1, max=30)] = 3,
    seed: int = 0,
    end: Annotated[str, typer.Option(help="Last simulated day, YYYY-MM-DD.")] = "2026-06-30",
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    ingest: Annotated[bool, typer.Option(help="Also ingest the result into the store.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a synthetic province in the canonical formats (hidden truth kept apart)."""
    from records.simulate import SimulationConfig, write_simulation
    from records.simulate import simulate as run

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("--format must be parquet or csv")
    config = SimulationConfig(
        companies=companies, years=years, seed=seed, end=date.fromisoformat(end)
    )
    with _progress("simulating") as step:
        sim = run(config, progress=step)
        paths = write_simulation(sim, out_dir, fmt)  # type: ignore[arg-type]
    payload: dict[str, Any] = {
        "companies": sim.truth.num_rows,
        "entity_versions": sim.entities.num_rows,
        "records": sim.records.num_rows,
        "files": {k: str(v) for k, v in paths.items()},
    }
    if ingest:
        settings = _settings()
        store = _store(settings)
        results = {}
        for kind in ("entities", "records"):
            with _progress(f"ingesting {kind}") as step:
                res = ingest_file(
                    store,
                    paths[kind],
                    kind,
                    "simulator",
                    today=config.end,
                    progress=step,
                    history=True,
                )
            results[kind] = res.to_dict()
        payload["ingest"] = results
    if as_json:
        _emit_json(payload)
        return
    out.print(
        f"simulated {payload['companies']:,} companies and {payload['records']:,} records "
        f"into {out_dir}"
    )
    for kind, res in payload.get("ingest", {}).items():
        _print_ingest(res, kind)


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="CSV, Excel (.xlsx) or Parquet file.")],
    kind: Annotated[str, typer.Option(help="records or entities")] = "records",
    source: Annotated[str, typer.Option(help="Department the file comes from.")] = ...,  # type: ignore[assignment]
    mapping: Annotated[
        str | None,
        typer.Option(help="Mapping YAML file, or the name of a packaged mapping."),
    ] = None,
    today: Annotated[
        str | None, typer.Option(help="Ingestion day (YYYY-MM-DD); dates after it are rejected.")
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Encoding of a CSV file, e.g. gbk or gb18030 (default: the mapping's, else utf-8)."
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="The file back-fills history (a department's past records, loaded once): keep "
            "its recorded dates. Without it a row recorded before the ingestion day (less "
            "CREDSUP_LATE_GRACE_DAYS) counts as known from the ingestion day.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a department's export. Exit 0: all rows stored; 1: some quarantined; 2: file error."""
    settings = _settings(as_json)
    store = _store(settings)
    catalogue = load_catalogue(settings.catalogue_path)
    try:
        with _progress(f"ingesting {file.name}") as step:
            result = ingest_file(
                store,
                file,
                kind,
                source,
                mapping=mapping,
                today=_ingestion_day(today, history),
                catalogue=catalogue,
                progress=step,
                encoding=encoding,
                history=history,
                grace_days=settings.late_grace_days,
            )
    except (IngestError, FileNotFoundError, ValueError) as exc:
        file_refused(exc, file, as_json)
    res = result.to_dict()
    if as_json:
        _emit_json(res)
    else:
        _print_ingest(res, kind)
    raise typer.Exit(EXIT_QUARANTINED if result.quarantined else EXIT_OK)


def file_refused(exc: Exception, file: Path, as_json: bool) -> NoReturn:
    """A file taken as a whole or not at all (`ingest`, `events`) that was not: exit 2, one
    line (or one JSON object naming the file)."""
    if as_json:
        _emit_json({"error": str(exc), "file": str(file)})
    else:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(EXIT_FILE_ERROR) from None


def _ingestion_day(text: str | None, history: bool) -> date | None:
    """`--today`: not after today; before it only for a back-fill (--history), as rows would
    otherwise count as known on a day they were not."""
    if text is None:
        return None
    now = china_today()
    day = _as_of(text)
    if day > now:
        raise typer.BadParameter(
            f"--today {day} is after today ({now}): rows cannot count as known on a day that "
            "has not come"
        )
    if day < now and not history:
        raise typer.BadParameter(
            f"--today {day} is before today ({now}): rows would count as known on a day they "
            "were not; only a back-fill of history (--history) may name a past day"
        )
    return day


def _print_ingest(res: dict[str, Any], kind: str) -> None:
    out.print(
        f"[bold]{kind}[/bold] from {res['source_file']}: {res['rows_read']:,} rows read, "
        f"{res['stored']:,} stored, {res['already_stored']:,} already stored, "
        f"{res['duplicates_in_file']:,} duplicates in file, "
        f"[{'red' if res['quarantined'] else 'green'}]{res['quarantined']:,} quarantined[/]"
        + (
            f" ({res['already_quarantined']:,} of them already, by an earlier ingestion)"
            if res.get("already_quarantined")
            else ""
        )
        + f" ({res['seconds']} s, {res['rows_per_second']:,} rows/s, batch {res['batch_id']})"
    )
    for reason, n in res["by_reason"].items():
        out.print(f"  {reason:<24} {n:>8,}  {REASONS.get(reason, '')}")
    if res.get("restamped"):
        out.print(
            f"  [yellow]{res['restamped']:,} rows arrived late[/] (recorded by the department "
            f"from {res['earliest_source_recorded']} on): they count as known from the ingestion "
            "day; a back-fill of history takes --history"
        )


@app.command()
def records(
    quarantine: Annotated[
        int, typer.Option(help="Also list up to N quarantined rows with their reasons.")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Counts per category and a summary of the quarantine."""
    settings = _settings()
    store = _store(settings)
    summary = store_summary(store)
    rows: list[dict[str, Any]] = []
    if quarantine:
        with store.connect() as con:
            rows = (
                con.sql(
                    "SELECT source_file, row, reason, message FROM quarantine "
                    f"ORDER BY batch_id, row LIMIT {int(quarantine)}"
                )
                .to_arrow_table()
                .to_pylist()
            )
        summary["quarantine_rows"] = rows
    if as_json:
        _emit_json(summary)
        return
    table = Table(title=f"records in {summary['store']}")
    table.add_column("category")
    table.add_column("records", justify="right")
    for category, n in summary["records_by_category"].items():
        table.add_row(category, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{summary['records']:,}")
    out.print(table)
    out.print(
        f"entities: {summary['entities']:,} ({summary['individual_businesses']:,} individual "
        f"businesses); events: {summary['events']:,}; batches: {summary['batches']:,}; "
        f"event dates {summary['first_event_date']} … {summary['last_event_date']}"
    )
    if summary["late_by_department"]:
        late = Table(title="records that arrived late (known from their ingestion day)")
        for name in ("department", "records", "late", "median days late", "most days late"):
            late.add_column(name, justify="left" if name == "department" else "right")
        for dept, f in summary["late_by_department"].items():
            late.add_row(dept, f"{f['records']:,}", f"{f['late']:,}",
                         str(f["median_days_late"]), str(f["max_days_late"]))  # fmt: skip
        out.print(late)
    out.print("files: " + "; ".join(
        f"{t} {f['files']:,} ({f['sorted_runs']} sorted runs, {f['unsorted_files']:,} not sorted)"
        for t, f in summary["files"].items()
    ))  # fmt: skip
    if any(f["unsorted_files"] for f in summary["files"].values()):
        out.print("  a company's records are read faster once sorted: credsup compact")
    out.print(f"quarantine: {summary['quarantined']:,} rows")
    for reason, n in summary["quarantine_by_reason"].items():  # rows of records and of events
        meaning = REASONS.get(reason) or EVENT_REASONS.get(reason, "")
        out.print(f"  {reason:<24} {n:>8,}  {meaning}")
    for r in rows:
        out.print(f"  {r['source_file']}:{r['row']}  {r['reason']}: {r['message']}")


COMPACT_HELP = (
    "Sort what was stored since the last compaction by company, so that one company's records, "
    "registrations and events are read without scanning every file (run it after the day's "
    f"ingestion). More than {MAX_RUNS} sorted runs are merged into one. Rows are copied "
    "unchanged and checked before the commit; the replaced files are deleted by a later writer "
    f"{RETIRED_KEPT.total_seconds() / 3600:.0f} hours on, when no reader can still be reading them."
)


@app.command(help=COMPACT_HELP)
def compact(
    table: Annotated[
        list[str] | None,
        typer.Option(help=f"A table to compact (repeatable; default: {', '.join(SORT_KEYS)})."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Merge every file of the table into one sorted run.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    settings = _settings(as_json)
    store = _store(settings)
    try:
        result = store.compact(table or tuple(SORT_KEYS), full=full)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--table") from None
    if as_json:
        _emit_json(result)
        return
    for name, done in result["tables"].items():
        if done["rewritten"]:
            out.print(
                f"{name}: {done['rows']:,} rows from {done['files_read']:,} files into "
                f"{done['files_written']:,} sorted ({'all' if done['merged'] == 'all' else 'new'} "
                f"files merged, {done['runs']} sorted runs now, {done['seconds']:.3f} s)"
            )
        else:
            out.print(
                f"{name}: nothing new to sort ({done['runs']} sorted runs, {done['files']:,} files)"
            )
    out.print(f"batch {result['batch']}" if result["batch"] else "nothing committed")


def share_table(title: str, label: str, counts: dict[str, int]) -> Table:
    """Companies per class (grade, tier) and their share, in the order of `counts`."""
    n = sum(counts.values())
    table = Table(title=title)
    table.add_column(label)
    table.add_column("companies", justify="right")
    table.add_column("share", justify="right")
    for key, count in counts.items():
        table.add_row(key, f"{count:,}", f"{count / n:.2%}" if n else "-")
    return table


def _as_of(text: str, known_by: date | None = None) -> date:
    """The date in `text`; with `known_by`, a date after it is refused: results as of a day
    whose records are not known yet would be stored as if they described it."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if known_by is not None and day > known_by:
        raise typer.BadParameter(
            f"{day} is after today ({known_by}): the records of the days to come are not known "
            "yet, so results as of that date cannot be built"
        )
    return day


def _build_features(settings: Settings, day: date) -> pa.Table:
    """Features of every company as of `day`, with the spec version."""
    from features.builder import build_features
    from features.specs import spec_version

    version = spec_version()
    table = build_features(_store(settings), day)
    return table.append_column("spec_version", pa.array([version] * table.num_rows))


@app.command()
def features(
    as_of: Annotated[str, typer.Option("--as-of", help="Date the features describe, YYYY-MM-DD.")],
    restate: RestateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build point-in-time features of every company as of a date and store them. A past
    day's stored features are the flags served with its scores and tiers: not rewritten with
    other flags unless restated."""
    import time

    from features.results import Restatement, Results
    from features.specs import spec_version

    settings = _settings()
    today = china_today()  # once: a run across midnight keeps its day
    day = _as_of(as_of, today)
    started = time.perf_counter()
    with _progress(f"features as of {day}"):
        table = _build_features(settings, day)
    try:
        path = Results(settings.data_dir).write_published(
            "features", table, day, spec_version(), today=today, restate=restate
        )
    except Restatement as exc:
        _refuse_restatement(exc, as_json)
    version = spec_version()
    payload = {
        "as_of": day.isoformat(), "spec_version": version, "companies": table.num_rows,
        "features": table.num_columns - 3, "path": str(path),
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    if as_json:
        _emit_json(payload)
    else:
        out.print(
            f"{payload['features']} features of {payload['companies']:,} companies as of {day} "
            f"(spec {version}) in {payload['seconds']} s → {path}"
        )


@app.command()
def score(
    as_of: Annotated[str, typer.Option("--as-of", help="Date of the evaluation, YYYY-MM-DD.")],
    scale: Annotated[
        str | None, typer.Option(help="Grade scale preset: A-D, hunan, hebei-9.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="A scorecard YAML file.")] = None,
    restate: RestateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Public credit comprehensive evaluation as of a date: score, grade, dimension points.
    A past day's stored evaluation is not rewritten with other grades unless restated."""
    import time

    from features.evidence import with_evidence
    from features.results import Restatement, Results
    from features.scorecard import Scorecard, load_config
    from features.specs import spec_version

    settings = _settings()
    today = china_today()  # once: a run across midnight keeps its day
    day = _as_of(as_of, today)
    started = time.perf_counter()
    try:
        card = Scorecard(load_config(config, scale))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    results = Results(settings.data_dir)
    store = _store(settings)
    version = spec_version()
    with _progress(f"scoring as of {day}") as step:
        # always rebuilt: records recorded on the as-of day may have arrived since the last build
        step("building features")
        feats = _build_features(settings, day)
        step("scoring")
        scored = with_evidence(store, card.score(feats))
    n = scored.num_rows
    scored = scored.append_column("spec_version", pa.array([version] * n))
    scored = scored.append_column("method_version", pa.array([card.method_version] * n))
    results.write_method(card.method_version, card.config.model_dump(mode="json"))
    try:  # both checked before either is written: the flags go with the scores
        results.check_published(
            "scores", scored, day, card.method_version, today=today, restate=restate
        )
        results.check_published("features", feats, day, version, today=today, restate=restate)
        path = results.write_published(
            "scores", scored, day, card.method_version, today=today, restate=restate
        )
    except Restatement as exc:
        _refuse_restatement(exc, as_json)
    # the flags `credsup load` serves with them
    results.write_published("features", feats, day, version, today=today, restate=restate)
    grades = [g.grade for g in card.config.grades()]
    counts = {g: 0 for g in grades}
    for g in scored.column("grade").to_pylist():
        counts[g] += 1
    payload = {
        "as_of": day.isoformat(), "spec_version": version, "method_version": card.method_version,
        "companies": n, "grades": counts,
        "grade_shares": {g: round(c / n, 4) if n else 0.0 for g, c in counts.items()},
        "mean_score": round(float(pc.mean(scored.column("score")).as_py() or 0), 1),
        "vetoed": sum(1 for v in scored.column("vetoes").to_pylist() if v),
        "path": str(path), "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    if as_json:
        _emit_json(payload)
        return
    out.print(share_table(f"grades as of {day} (method {card.method_version})", "grade", counts))
    out.print(
        f"{n:,} companies, mean score {payload['mean_score']}, {payload['vetoed']:,} with a veto; "
        f"{payload['seconds']} s → {path}"
    )


@app.command()
def scorecard(
    scale: Annotated[str | None, typer.Option(help="Grade scale preset.")] = None,
    config: Annotated[Path | None, typer.Option(help="A scorecard YAML file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the published points rules of the public credit evaluation (with --json: the
    method version, its configuration and the grades of its scale, for machines)."""
    from features.scorecard import Scorecard, load_config

    try:
        card = Scorecard(load_config(config, scale))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        _emit_json({
            "method_version": card.method_version,
            "config": card.config.model_dump(mode="json"),
            "grades": [g.model_dump(mode="json") for g in card.config.grades()],
        })  # fmt: skip
        return
    out.print(card.table(), markup=False)


def _required_purpose(purpose: str | None, command: str, uscc: str | None = None) -> str:
    """The purpose of a read at the command line, required as the API requires `X-Purpose` of
    the authorities (DOMAIN §10: every query is logged with why): someone at the command line
    reads any company, never only their own. Exit 2 without one, before anything is read; the
    refusal is logged as the API logs its 400 `purpose_required` (under the company `uscc`
    names when it is a valid code, else without one)."""
    if purpose is None or not purpose.strip():
        from cli.plans import _engine, _log_lines
        from records.uscc import InvalidUSCC, validate

        code = None
        if uscc is not None:
            with contextlib.suppress(InvalidUSCC):
                code = validate(uscc)
        _log_lines(_engine(), command, [(code, 400)], None)
        raise typer.BadParameter(
            "say why this credit information is read: the read is logged with its purpose, "
            "as the API logs X-Purpose",
            param_hint="'--purpose'",
        )
    return purpose


@app.command()
def grade(
    uscc: Annotated[str, typer.Argument(help="Unified social credit code.")],
    on: Annotated[str, typer.Option(help="The day the grade is asked for, YYYY-MM-DD.")],
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What was this company's score and grade on a given day (latest evaluation by then).
    The read is logged in the audit log (with its purpose, day and the status the API would
    answer: 404 without an evaluation, 422 for a malformed code) before anything is shown."""
    from cli.plans import _engine, _log_lines, _log_read
    from features.results import Results
    from records.uscc import InvalidUSCC, validate
    from serving.audit import asking, probe_detail

    why = _required_purpose(purpose, "grade", uscc)
    try:
        code = validate(uscc)
    except InvalidUSCC as exc:  # a probe, as the API logs it: no company, the code as given
        with asking([("on", on)]):
            _log_lines(_engine(), "grade", [(None, 422)], why, detail=probe_detail(uscc))
        raise typer.BadParameter(exc.message) from None
    day = _as_of(on)
    today = china_today()
    if day > today:  # as the API's `future_day`: a grade of a day to come is not known
        raise typer.BadParameter(f"{day} is after today ({today}): no grade is known for it")
    settings = _settings()
    row = Results(settings.data_dir).score_on(code, day)
    with asking([("on", day.isoformat())]):  # the line's detail: the day, as the API's `on=`
        _log_read(_engine(), "grade", [code], why, 200 if row is not None else 404)
    if row is None:
        if as_json:
            _emit_json({"uscc": code, "on": on, "error": "no evaluation on or before that day"})
        else:
            err.print(f"no evaluation of {code} on or before {on}")
        raise typer.Exit(1)
    if as_json:
        _emit_json(row)
        return
    out.print(
        f"{code} on {on}: score {row['score']:g}, grade {row['grade']} "
        f"(evaluation as of {row['as_of']}, method {row['method_version']})"
    )
    dims = ", ".join(f"{k[7:]} {v:g}" for k, v in row.items() if k.startswith("points_"))
    out.print(f"  points: {dims}")
    if row["vetoes"]:
        out.print(f"  vetoes: {', '.join(row['vetoes'])}")
    for d in row["top_deductions"] or []:
        out.print(f"  {d['points']:+g} {d['feature']}: records {', '.join(d['records'])}")


@app.command()
def mappings() -> None:
    """List the packaged mappings (usable by name with `ingest --mapping`)."""
    for name in packaged_mappings():
        out.print(name)


from cli import deadlines, events, lists, modelling, plans, service  # noqa: E402, F401  (register their commands on `app`)

EXIT_OUT_OF_MEMORY = 3


def main(argv: list[str] | None = None) -> None:
    """The `credsup` entry point: `app`, with DuckDB running out of its memory limit said in
    one line naming the setting (exit 3), not as a traceback."""
    import duckdb

    try:
        app(argv)
    except duckdb.OutOfMemoryException as exc:
        first = str(exc).strip().splitlines()[0]
        limit = os.environ.get("CREDSUP_DUCKDB_MEMORY_LIMIT", Settings().duckdb_memory_limit)
        err.print(
            f"[red]error:[/red] DuckDB ran out of the memory it may use "
            f"(CREDSUP_DUCKDB_MEMORY_LIMIT={limit}): {escape(first)}. Raise the limit if the "
            "machine has the memory, or lower CREDSUP_DUCKDB_THREADS, and run the command again.",
            soft_wrap=True,
        )
        raise SystemExit(EXIT_OUT_OF_MEMORY) from None
    except Exception as exc:
        raise SystemExit(_unforeseen(exc)) from None


EXIT_UNAVAILABLE = 3
"""What the command needs is not there: the serving database cannot be reached (as for `credsup
serve`), or DuckDB's memory is spent (`EXIT_OUT_OF_MEMORY`)."""
EXIT_UNFORESEEN = 70
"""An error no command foresaw (sysexits' EX_SOFTWARE): not 1, which means "rows quarantined"
(ingest), "not better" (promote) or "refused" (a restatement) to the scripts that run them."""


def _unforeseen(exc: Exception) -> int:
    """Say an error no command handles, and its exit code: a database that cannot be reached in
    one line naming it (3, as `credsup serve` says it); anything else with its traceback (for
    the report), then one line (70)."""
    import traceback

    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DBAPIError):
        from cli.service import _safe
        from serving.errors import _unreachable

        if _unreachable(exc):
            first = str(exc.orig or exc).strip().splitlines()[0]
            err.print(f"[red]error:[/red] the serving database {_safe(Settings().serving_url)} "
                      f"cannot be reached: {escape(first)}. Start it, or check DATABASE_URL, "
                      "and run the command again.", soft_wrap=True)  # fmt: skip
            return EXIT_UNAVAILABLE
    traceback.print_exception(exc, file=sys.stderr)
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    err.print(f"[red]error:[/red] an unforeseen error stopped the command: "
              f"{escape(type(exc).__name__)}: {escape(said)} (the traceback is above; what the "
              f"command had not committed was not kept). Exit {EXIT_UNFORESEEN}.",
              soft_wrap=True)  # fmt: skip
    return EXIT_UNFORESEEN


if __name__ == "__main__":  # pragma: no cover
    main()
