"""`credsup events`: a department's withdrawals and corrections of its own records, from a file.

The command reads the file (`records.events.read_event_file`) and stores its events and its
refused rows in one atomic batch (`records.events.append_department_events`), with the exit
codes and point-in-time rules of `credsup ingest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli.main import (
    EXIT_OK,
    EXIT_QUARANTINED,
    JsonOpt,
    _emit_json,
    _ingestion_day,
    _progress,
    _settings,
    _store,
    app,
    file_refused,
    out,
)
from records.catalogue import load_catalogue
from records.events import EVENT_REASONS, append_department_events, read_event_file
from records.ingest import IngestError
from records.workdays import china_today

HELP = (
    "Store a department's withdrawals and corrections of its own records.\n\n"
    "Exit 0: every row stored (or already stored); 1: some rows quarantined (the summary lists "
    "them by reason); 2: the file as a whole cannot be taken (unreadable, a required column "
    "missing, a bad option): nothing is written.\n\n"
    "A CSV/TSV, Excel (.xlsx) or Parquet file, or JSON lines (.jsonl), one event a row:\n"
    "  record_id       a record the --source department reported (required)\n"
    "  event_type      withdrawal or correction (required)\n"
    "  effective_date  the day it takes effect, e.g. 2026-12-01 (required)\n"
    "  event_id        the department's id of the event: strongly recommended;\n"
    "                  an id already stored is not stored again, so a re-sent\n"
    "                  file changes nothing (without ids every sending stores\n"
    "                  its events anew); stored as DEPT:event_id\n"
    "  recorded_date   when the platform learned it; default today, a past day\n"
    "                  only with --history (a back-fill)\n"
    "  severity        a correction's restated severity\n"
    "  amount          a correction's restated amount (1234.5, 1,234.5)\n"
    "  attributes      a correction's restated attributes, a JSON object merged\n"
    '                  into the record\'s, e.g. {"penalty_types": ["fine"]}\n'
    "                  (a key set to null is removed)\n\n"
    "An empty cell is not restated: a correction changes only what it gives, the rest stays "
    "as it is (as corrected before, if it was). A withdrawal gives none of severity, amount and "
    "attributes. Dates as ingestion reads them (2026-12-01, 2026/12/1, 20261201, 2026年12月1日). "
    "A JSON line has the same keys, a null for an empty cell, or gives the restated values as "
    'one "correction" object (where a null restates a value as none), e.g. {"record_id": '
    '"samr-2024-001", "event_type": "correction", "effective_date": "2026-12-01", "event_id": '
    '"samr-fix-7", "correction": {"amount": 3000}}. Other columns are ignored (and named in the '
    "summary).\n\n"
    "Rows refused go to the store's quarantine with their reason, row and values, once per "
    "file name and department (credsup records --quarantine N lists them): another "
    "department's record (other_department), an unknown record_id, an event type other than "
    "withdrawal or correction, a correction the record's category does not allow, a past "
    "recorded_date without --history, an event_id already used for another event …"
)


@app.command("events", help=HELP)
def events_command(
    file: Annotated[Path, typer.Argument(help="CSV, TSV, Excel (.xlsx), Parquet or .jsonl file.")],
    source: Annotated[
        str, typer.Option(help="Department the file comes from: it may change only its records.")
    ] = ...,  # type: ignore[assignment]
    today: Annotated[
        str | None,
        typer.Option(
            help="Day of sending (YYYY-MM-DD), default today; dates after it are refused."
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="The file back-fills history: keep recorded dates before today (and allow a "
            "past --today). Without it such a row is quarantined (past_recorded_date).",
        ),
    ] = False,
    encoding: Annotated[
        str, typer.Option(help="Encoding of a CSV or JSON lines file, e.g. gbk or gb18030.")
    ] = "utf-8",
    as_json: JsonOpt = False,
) -> None:
    if not source.strip():
        raise typer.BadParameter("--source must name the department the file comes from")
    settings = _settings(as_json)
    day = _ingestion_day(today, history) or china_today()
    store = _store(settings)
    catalogue = load_catalogue(settings.catalogue_path)
    try:
        with _progress(f"reading {file.name}") as step:
            parsed = read_event_file(file, encoding)
            step("storing")
            result = append_department_events(
                store, parsed, source.strip(), today=day, history=history, catalogue=catalogue
            )
    except IngestError as exc:
        file_refused(exc, file, as_json)
    res = result.to_dict()
    if as_json:
        _emit_json(res)
    else:
        _print_events(res)
    raise typer.Exit(EXIT_QUARANTINED if result.quarantined else EXIT_OK)


def _print_events(res: dict[str, Any]) -> None:
    quarantined = res["quarantined"]
    again = (
        f", {res['already_quarantined']:,} already in the quarantine"
        if res["already_quarantined"]
        else ""
    )
    out.print(
        f"[bold]events[/bold] from {escape(res['source_file'])} ({escape(res['source_dept'])}): "
        f"{res['rows_read']:,} rows read, {res['stored']:,} stored, "
        f"{res['already_stored']:,} already stored, "
        f"[{'red' if quarantined else 'green'}]{quarantined:,} quarantined[/]{again} "
        f"(batch {res['batch_id']}{', history' if res['history'] else ''})"
    )
    for reason, n in res["by_reason"].items():
        out.print(f"  {reason:<24} {n:>8,}  {EVENT_REASONS.get(reason, '')}")
    if res["ignored_columns"]:
        out.print(f"  [yellow]columns ignored:[/] {escape(', '.join(res['ignored_columns']))}")
