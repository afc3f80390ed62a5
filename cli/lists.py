"""`credsup lists`: derive list entries from the records, show, list, confirm and remove them.

The commands work on the serving database and the store directly (like `credsup plan`); a
listing or removal re-scores the company with the champion model, as the service does.
What shows an entry (`show`, `list`, `confirm`, `remove`) is logged in the audit log as the API
logs it, with the purpose every such command requires (`--purpose`, as the API requires
X-Purpose), the options that chose the entries and the status the API would answer: a read
before it is shown, an unknown entry 404, a step with its outcome (409 for one its state
refuses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from cli.main import (
    JsonOpt,
    ReadPurposeOpt,
    _as_of,
    _emit_json,
    _required_purpose,
    _settings,
    _store,
    app,
    out,
)
from cli.plans import _engine, _fail, _log_lines, _log_read
from records.settings import Settings
from records.workdays import china_today

lists_app = typer.Typer(
    help="Credit lists: abnormal operation, serious dishonest, focus attention, red.",
    no_args_is_help=True,
)
app.add_typer(lists_app, name="lists")

RescoreOpt = Annotated[
    bool, typer.Option("--rescore/--no-rescore", help="Re-score the company now (champion).")
]


def _entry_of(engine: Any, command: str, entry_id: int, purpose: str) -> dict[str, Any]:
    """The entry; for none, the API's line (404, without a company), then exit 2."""
    from serving.lists import ListError, get

    try:
        return get(engine, entry_id)
    except ListError as exc:
        _log_read(engine, command, [], purpose, exc.status)
        _fail(exc.message, _exit_code(exc))


def _entry_logged(engine: Any, command: str, entry_id: int, purpose: str) -> dict[str, Any]:
    """The entry (exit 2 for none), its company logged as read before anything is shown."""
    entry = _entry_of(engine, command, entry_id, purpose)
    _log_read(engine, command, [entry["uscc"]], purpose)
    return entry


def _step(
    engine: Any, command: str, entry_id: int, purpose: str, take: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """A step on an entry, logged as the API logs it: one line under its company with the
    status answered, the refusal's (409 for a step its state refuses, exit 1) or 200 once
    taken (a line the log then refuses is reported, the step stands)."""
    from serving.lists import ListError

    entry = _entry_of(engine, command, entry_id, purpose)
    try:
        done = take()
    except ListError as exc:
        _log_read(engine, command, [entry["uscc"]], purpose, exc.status)
        _fail(exc.message, _exit_code(exc))
    _log_lines(engine, command, [(entry["uscc"], 200)], purpose, done=True)
    return done


def _rescore(settings: Settings, engine: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """Re-score the company with the champion model, checked as the service checks it on
    loading; without a usable one nothing is re-scored (a score without a tier would replace
    the served tier) and the next batch catches up. The list change stands either way."""
    from models.published import PublishedModels
    from serving.rescore import rescore_today

    models = PublishedModels(settings.data_dir)
    try:
        champion = models.champion()
        if champion is None:
            return {"error": f"no champion of {models.name}"}
        version, model = champion
        model.check_spec()
    except Exception as exc:  # whatever stops the service from loading it stops us too
        return {"error": f"the champion cannot be used: {type(exc).__name__}: {exc}"}
    return rescore_today(engine, _store(settings), settings.data_dir, model, version,
                         entry["uscc"], model_name=models.name)  # fmt: skip


def _exit_code(exc: Exception) -> int:
    """2 for an entry that does not exist (the API's 404: a wrong id, fix the command), 1 for a
    step the entry's state refuses (e.g. before its objection window ends: wait)."""
    from serving.lists import ListNotFound

    return 2 if isinstance(exc, ListNotFound) else 1


def _print_entry(entry: dict[str, Any], steps: bool = True) -> None:
    dates = ", ".join(
        f"{k} {entry[k]}" for k in ("proposed_on", "objection_due", "listed_on", "term_end",
                                    "earliest_removal", "removed_on") if entry.get(k)
    )  # fmt: skip
    out.print(f"[bold]{entry['id']}[/bold] {entry['uscc']} {entry['list']} "
              f"[bold]{entry['status']}[/bold]  {dates}")  # fmt: skip
    if steps:
        out.print(f"  {entry['legal_basis']}: {entry['reason']}")
        if entry.get("record_id"):
            out.print(f"  record {entry['record_id']}"
                      + (f", removal {entry['removal_record_id']}"
                         if entry.get("removal_record_id") else ""))  # fmt: skip
        for s in entry["steps"]:
            out.print(f"  {s['at'][:19]} {s['action']}")
    rescored = entry.get("rescored")
    if rescored:
        after = rescored.get("after")
        out.print(f"  re-scored: {after}" if after else f"  not re-scored: {rescored.get('error')}")


@lists_app.command("derive")
def lists_derive(
    as_of: Annotated[str, typer.Option("--as-of", help="Read the records as of this date.")],
    today: Annotated[
        str | None,
        typer.Option(
            help="Day of the entries: today only (the default). Back-fills read the "
            "records of a past day with --as-of and still list and notify today."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose the entries the records call for: missing annual reports (listed at once), heavy
    penalties (notified: 5 working days to object), A-grade taxpayers (red list)."""
    from serving.lists import ListError, derive

    settings = _settings()
    now = china_today()
    day, entries_on = _as_of(as_of, now), _as_of(today, now) if today else None
    if entries_on is not None and entries_on < now:
        # a listing record of a past day would change what was published for that day, and a
        # notice dated in the past would leave the company less than its 5 working days
        raise typer.BadParameter(
            f"--today {entries_on} is before today ({now}): entries are listed and notified on "
            "the day they really are; read the records of a past day with --as-of"
        )
    try:
        counts = derive(_engine(), _store(settings), day, entries_on)
    except ListError as exc:
        _fail(exc.message)
    if as_json:
        _emit_json(counts)
        return
    out.print(f"as of {counts['as_of']} (annual reports of {counts['report_year']}): "
              f"{counts['listed']} listed, {counts['notified']} notified")  # fmt: skip
    for name, n in counts["proposed"].items():
        out.print(f"  {name:<26} {n:>8,}")


@lists_app.command("show")
def lists_show(entry_id: int, purpose: ReadPurposeOpt = None, as_json: JsonOpt = False) -> None:
    """An entry with its steps."""
    why = _required_purpose(purpose, "lists show")
    entry = _entry_logged(_engine(), "lists show", entry_id, why)
    if as_json:
        _emit_json(entry)
    else:
        _print_entry(entry)


@lists_app.command("list")
def lists_list(
    uscc: Annotated[str | None, typer.Option(help="One company.")] = None,
    list_: Annotated[str | None, typer.Option("--list", help="One list, e.g. red_list.")] = None,
    status: Annotated[str | None, typer.Option(help="notified, listed, expired, …")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Entries, newest first."""
    from records.uscc import InvalidUSCC, validate
    from serving.audit import asking, probe_detail
    from serving.lists import LISTS, STATUSES, find

    why = _required_purpose(purpose, "lists list", uscc)
    if list_ is not None and list_ not in LISTS:
        raise typer.BadParameter(f"--list must be one of {', '.join(LISTS)}")
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)}")
    engine = _engine()
    if uscc is not None:
        try:
            uscc = validate(uscc)
        except InvalidUSCC as exc:  # a probe, as the API logs it: no company, the code as given
            rest = {"list": list_, "status": status, "limit": str(limit)}
            with asking([(k, v) for k, v in rest.items() if v is not None]):
                _log_lines(engine, "lists list", [(None, 422)], why, detail=probe_detail(uscc))
            raise typer.BadParameter(exc.message, param_hint="--uscc") from None
    found = find(engine, uscc, list_, status, limit)
    chosen = {"uscc": uscc, "list": list_, "status": status, "limit": str(limit)}
    with asking([(k, v) for k, v in chosen.items() if v is not None]):  # the line's detail
        _log_read(engine, "lists list", [e["uscc"] for e in found], why)
    if as_json:
        _emit_json({"entries": found})
        return
    out.print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}")
    for entry in found:
        _print_entry(entry, steps=False)


@lists_app.command("confirm")
def lists_confirm(
    entry_id: int,
    rescore: RescoreOpt = True,
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a notified entry (after its objection period, or a dismissed objection)."""
    from serving.lists import confirm

    why = _required_purpose(purpose, "lists confirm")
    settings = _settings()
    engine = _engine()
    entry = _step(engine, "lists confirm", entry_id, why,
                  lambda: confirm(engine, _store(settings), entry_id, None))  # fmt: skip
    if rescore:
        entry["rescored"] = _rescore(settings, engine, entry)
    if as_json:
        _emit_json(entry)
    else:
        _print_entry(entry)


@lists_app.command("remove")
def lists_remove(
    entry_id: int,
    reason: Annotated[str, typer.Option(help="Why it comes off the list.")],
    rescore: RescoreOpt = True,
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a listed entry off its list from today."""
    from serving.lists import remove

    why = _required_purpose(purpose, "lists remove")
    settings = _settings()
    engine = _engine()
    entry = _step(engine, "lists remove", entry_id, why,
                  lambda: remove(engine, _store(settings), entry_id, reason, None))  # fmt: skip
    if rescore:
        entry["rescored"] = _rescore(settings, engine, entry)
    if as_json:
        _emit_json(entry)
    else:
        _print_entry(entry)
