"""`credsup plan`: check items, the inspector pool, drawing, listing, verifying, results."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.markup import escape

from cli.main import (
    JsonOpt,
    PurposeOpt,
    ReadPurposeOpt,
    _as_of,
    _emit_json,
    _required_purpose,
    _settings,
    _store,
    app,
    err,
    out,
)
from records.workdays import china_today
from serving.spotcheck.items import NotInspectedReason, Outcome

if TYPE_CHECKING:
    from pydantic import ValidationError

plan_app = typer.Typer(help="Double random, one public: spot-check plans.", no_args_is_help=True)
items_app = typer.Typer(help="The check-item list.", no_args_is_help=True)
inspectors_app = typer.Typer(help="The inspector pool.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
plan_app.add_typer(items_app, name="items")
plan_app.add_typer(inspectors_app, name="inspectors")


def _engine() -> Any:
    from serving.db import make_engine, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    return make_engine(settings.serving_url)


def _log_read(
    engine: Any, command: str, usccs: Iterable[str], purpose: str | None, status: int = 200
) -> None:
    """A read of companies' credit information at the command line goes to the audit log like
    the API's: a line per company (one without a company when none was found), role
    `operator`, the operating-system user and host in the purpose, and the status the API
    would have answered (404 for an unknown plan or entry, as its lines say). Written before
    anything is shown: a read that cannot be logged fails."""
    codes: list[str | None] = list(dict.fromkeys(usccs))
    _log_lines(engine, command, [(code, status) for code in codes or [None]], purpose)


def _log_lines(
    engine: Any,
    command: str,
    lines: Sequence[tuple[str | None, int]],
    purpose: str | None,
    *,
    detail: str | None = None,
    done: bool = False,
) -> None:
    """The audit lines (company, status) of a command, as `_log_read` writes them. `done`: the
    lines of a step already taken (as the API writes a step's line once it is answered): a line
    the audit log refuses is reported on stderr and the step stands."""
    from serving.audit import AuditQuarantine, AuditWriter
    from serving.auth import Caller

    user = getpass.getuser()
    writer = AuditWriter(engine, quarantine=AuditQuarantine(_settings().audit_quarantine_dir))
    writer.log_each(
        Caller(key_id=0, role="operator", department=None, name=user),
        f"credsup {command}",
        lines,
        f"{purpose or 'command line'} (by {user} on {socket.gethostname()})",
        detail=detail,
    )
    writer.flush()
    if writer.refused and done:
        err.print(f"[yellow]warning:[/yellow] done, but the audit log refused its line: "
                  f"{escape(writer.refused[0][1])}", soft_wrap=True)  # fmt: skip
    elif writer.refused:
        _fail(f"the audit log refused the read: {writer.refused[0][1]}", 1)


def _log_write(engine: Any, command: str, uscc: str, purpose: str) -> None:
    """A write about a company at the command line goes to the audit log like the API's (role
    `operator`, the user and host in the purpose). Written after the write itself: a refusal is
    reported on stderr, the write stands."""
    from serving.audit import AuditQuarantine, AuditWriter
    from serving.auth import Caller

    user = getpass.getuser()
    writer = AuditWriter(engine, quarantine=AuditQuarantine(_settings().audit_quarantine_dir))
    writer.log(
        Caller(key_id=0, role="operator", department=None, name=user), f"credsup {command}",
        uscc, f"{purpose} (by {user} on {socket.gethostname()})"[:256], 201,
    )  # fmt: skip
    writer.flush()
    if writer.refused:
        err.print(f"[yellow]warning:[/yellow] recorded, but the audit log refused its line: "
                  f"{escape(writer.refused[0][1])}", soft_wrap=True)  # fmt: skip


def _fail(message: str, code: int = 2, as_json: bool = False) -> NoReturn:
    """A refusal in one line on stderr (with `--json`: `{"error": …}` on stdout), then exit."""
    if as_json:
        _emit_json({"error": message})
    else:
        err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _validation_message(
    exc: ValidationError, options: dict[tuple[str | int, ...], str] | None = None
) -> str:
    """A pydantic error in one line: each problem after the option (or field) it concerns, with
    the value refused where the problem is one element of a list (`--tiers: Input should be 'A',
    'B', 'C' or 'D' (got 'E')`), and no link to pydantic's pages nor the union's other branch."""
    problems = []
    for e in exc.errors(include_url=False):
        if e["type"] == "string_type" and isinstance(e.get("input"), dict):
            continue  # a triggered entry given as an object: the plain-code branch's complaint
        what = e["msg"].removeprefix("Value error, ")
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        prefix = next((loc[:k] for k in range(len(loc), 0, -1) if loc[:k] in (options or {})), None)
        if prefix is None:
            where = ".".join(str(p) for p in loc)
        else:
            where = (options or {})[prefix]
            if any(isinstance(p, int) for p in loc[len(prefix) :]) and e["type"] != "value_error":
                what = f"{what} (got {e.get('input')!r})"
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)


CREATE_OPTIONS: dict[tuple[str | int, ...], str] = {
    ("name",): "--name", ("departments",): "--departments", ("items",): "--items",
    ("ratio_preset",): "--preset", ("population", "regions"): "--regions",
    ("population", "industries"): "--industries", ("population", "tiers"): "--tiers",
    ("snapshot_date",): "--snapshot", ("start_date",): "--start", ("seed",): "--seed",
    ("triggered",): "--triggered", ("avoid_repeat_within_year",): "--avoid-repeat/--allow-repeat",
}  # fmt: skip
"""`plan create`'s options by the request field they set (what a refusal names)."""


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _triggered(text: str | None) -> list[Any]:
    """`--triggered`: plain codes (every item), or `CODE:ITEM[,ITEM]` (those items only); a
    word after `CODE:ITEM` that is no 18-character code is another item of that company."""
    entries: list[Any] = []
    for token in [t.strip() for t in (text or "").replace(";", ",").split(",") if t.strip()]:
        if ":" in token:
            code, _, item = token.partition(":")
            entries.append({"uscc": code.strip(), "items": [item.strip()] if item.strip() else []})
        elif len(token) != 18 and entries and isinstance(entries[-1], dict):
            entries[-1]["items"].append(token)
        else:
            entries.append(token)
    return entries


@items_app.command("import")
def items_import(
    preset: Annotated[str | None, typer.Option(help="national-default or henan-2021.")] = None,
    file: Annotated[Path | None, typer.Option(help="A preset YAML file of your own.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load check items from a packaged preset or a YAML file (replacing items of the same id)."""
    from serving.spotcheck.items import load_preset_file
    from serving.spotcheck.items import preset as packaged
    from serving.spotcheck.plans import save_item_list

    if (preset is None) == (file is None):
        _fail("give exactly one of --preset and --file", as_json=as_json)
    try:
        chosen = packaged(preset) if preset else load_preset_file(file)  # type: ignore[arg-type]
    except (KeyError, ValueError, OSError) as exc:
        _fail(str(exc), as_json=as_json)
    n = save_item_list(_engine(), chosen)
    settings = {k: v for k, v in chosen.list_settings().items() if k != "name"}
    if as_json:
        _emit_json({"preset": chosen.name, "items": n, **settings})
    else:
        kept = ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None)
        with_list = f" (kept with the list: {kept})" if kept else ""
        out.print(f"{n} check items from {chosen.name}{with_list}")


@items_app.command("list")
def items_list(as_json: JsonOpt = False) -> None:
    """The check items in the database with their ratios, cap, floor and yearly cap, and the
    list's own general-item cap, department yearly cap and repeat rule."""
    from serving.spotcheck.plans import list_settings, load_items

    engine = _engine()
    items = load_items(engine)
    with engine.connect() as con:
        settings = list_settings(con)
    if as_json:
        _emit_json({"items": [i.model_dump(mode="json") for i in items], "settings": settings})
        return
    yearly = settings["department_yearly_cap"]
    cap = settings["general_item_cap"]
    out.print(
        f"list {settings['name'] or '(none)'}: general-item cap "
        f"{'none' if cap is None else f'{cap:.0%}'}, a department's inspections of a company a "
        f"year {yearly if yearly is not None else '2 (default)'}"
    )
    repeat = settings["avoid_repeat_within_year"]
    out.print(
        "a company inspected at random this year is "
        f"{'not drawn again unless tier D' if repeat is not False else 'drawn like any other'}"
        f"{' (default)' if repeat is None else ''}"
    )
    for i in items:
        r = i.ratios
        limits = [f"cap {i.max_ratio:.1%}" if i.max_ratio is not None else "no cap"]
        if i.floor:
            limits.append(f"floor {i.floor:.1%}")
        limits.append(f"yearly {i.yearly_cap}")
        out.print(f"{i.id:10} {i.department:10} {i.kind:7} A {r.A:.0%} B {r.B:.0%} C {r.C:.0%} "
                  f"D {r.D:.0%}  {', '.join(limits)}{'' if i.active else ' (inactive)'}  "
                  f"{i.name_zh}", soft_wrap=True)  # fmt: skip


@inspectors_app.command("import")
def inspectors_import(
    file: Annotated[Path, typer.Argument(help="CSV or Excel, English or Chinese headers.")],
    replace: Annotated[bool, typer.Option(
        "--replace",
        help="The file is each of its departments' roster: their inspectors absent from it "
        "become inactive (never deleted).",
    )] = False,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Import inspectors (id, name, department, area, items, active, conflicts); with --replace,
    the inspectors of the file's departments absent from it become inactive."""
    from pydantic import ValidationError

    from serving.spotcheck.export import read_inspectors
    from serving.spotcheck.plans import InspectorIn, save_inspectors

    try:
        frame = read_inspectors(file)
        pool = [
            InspectorIn(
                inspector_id=r["inspector_id"], name=r.get("name") or None,
                department=r["department"], area=r.get("area") or "", items=list(r["items"]),
                active=bool(r["active"]), conflicts=list(r["conflicts"]),
            )
            for r in frame.to_dict("records")
        ]  # fmt: skip
        counts = save_inspectors(_engine(), pool, [f"row {r}" for r in frame.index], replace)
    except ValidationError as exc:
        _fail(f"{file}: {_validation_message(exc)}", as_json=as_json)
    except (ValueError, OSError) as exc:  # InspectorFileError, InspectorsRefused among them
        _fail(f"{file}: {exc}", as_json=as_json)
    if as_json:
        _emit_json(counts)
        return
    for warning in counts["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    out.print(f"{counts['inspectors']} inspectors, {counts['conflicts']} declared conflicts")
    if counts["deactivated"]:
        out.print(f"made inactive (not in the file): {', '.join(counts['deactivated'])}")


@inspectors_app.command("list")
def inspectors_list(
    department: Annotated[
        str | None, typer.Option(help="One department (code or Chinese name).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The inspector pool: id, name, department, area, items, active, declared conflicts (with
    --json: what `GET /v1/inspectors` answers)."""
    from serving.spotcheck.plans import inspector_pool

    engine = _engine()
    with engine.connect() as con:
        code = _department(con, department, as_json)
        pool = inspector_pool(con, code)
    if as_json:
        _emit_json({"inspectors": pool})
        return
    out.print(f"{len(pool)} inspector(s)")
    for r in pool:
        state = "active" if r["active"] else "inactive"
        out.print(f"  {r['inspector_id']:12} {r['name'] or '':8} {r['department']:10} "
                  f"{r['area'] or '(all)':6} {state:8} conflicts {r['conflicts']:<3} "
                  f"{';'.join(r['items'])}", soft_wrap=True)  # fmt: skip


@inspectors_app.command("demo")
def inspectors_demo(
    per_city: Annotated[int, typer.Option(help="Inspectors per department and city.")] = 8,
    seed: int = 7,
    as_json: JsonOpt = False,
) -> None:
    """A simulated inspector pool for the loaded companies (demo and tests)."""
    from serving.spotcheck.demo import load_demo_inspectors

    counts = load_demo_inspectors(_engine(), per_city, seed)
    if as_json:
        _emit_json(counts)
    else:
        out.print(f"{counts['inspectors']} inspectors, {counts['conflicts']} declared conflicts")


def _department(con: Any, given: str | None, as_json: bool = False) -> str | None:
    """A `--department` option as its code (a code in any case or a Chinese name, the mapping
    of the inspector file); one that names no department is refused (exit 2)."""
    from serving.spotcheck.plans import department_filter

    if given is None:
        return None
    try:
        return department_filter(con, given)
    except LookupError as exc:
        _fail(str(exc.args[0]), as_json=as_json)


@plan_app.command("list")
def plan_list_command(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="The latest N plans.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The plans, latest first: id, name, start, due, tasks and how many are done, overdue and
    cancelled today (with --json: what `GET /v1/spot-check-plans` answers)."""
    from serving.routes.spotchecks import PlanBrief, PlanPage
    from serving.spotcheck.plans import plan_briefs

    with _engine().connect() as con:
        rows = plan_briefs(con, china_today(), limit)
    if as_json:
        page = PlanPage(plans=[PlanBrief.model_validate(r) for r in rows])
        sys.stdout.write(page.model_dump_json() + "\n")
        return
    out.print(f"{len(rows)} plan(s)")
    for r in rows:
        out.print(f"  {r['plan_id']} {r['start_date']} → {r['due_date']}  {r['tasks']} tasks: "
                  f"{r['done']} done, {r['overdue']} overdue, {r['cancelled']} cancelled  "
                  f"{escape(r['name'])}", soft_wrap=True)  # fmt: skip


@plan_app.command("create")
def plan_create(
    name: Annotated[str, typer.Option(help="The plan's title.")],
    departments: Annotated[str, typer.Option(help="Department codes, comma-separated.")],
    items: Annotated[str | None, typer.Option(help="Item ids (default: all of them).")] = None,
    preset: Annotated[str | None, typer.Option(help="Ratio preset for every item.")] = None,
    regions: Annotated[str | None, typer.Option(help="Division-code prefixes.")] = None,
    industries: Annotated[str | None, typer.Option(help="GB/T 4754 code prefixes.")] = None,
    tiers: Annotated[str | None, typer.Option(help="Only these tiers, e.g. C,D.")] = None,
    snapshot: Annotated[str | None, typer.Option(help="Tier snapshot date.")] = None,
    start: Annotated[str | None, typer.Option(
        help="First day of checks: today (the default) or later, unless --record-past."
    )] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed (default: drawn by the service, stored); only where CREDSUP_CALLER_SEEDS=allow."
    )] = None,
    triggered: Annotated[str | None, typer.Option(
        help="Codes checked on a trigger (every item), or CODE:ITEM[,ITEM] for some items "
        "only; entries separated by ',' or ';'.",
    )] = None,
    record_past: Annotated[bool, typer.Option(
        "--record-past",
        help="Enter a plan whose checks already began: a --start before today is accepted "
        "(its tasks are overdue where their deadline has passed without a result).",
    )] = False,
    request_file: Annotated[
        Path | None, typer.Option("--request", help="A JSON plan request (overrides the rest).")
    ] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate",
        help="Draw although a plan of the same name, start and departments exists.",
    )] = False,
    avoid_repeat: Annotated[bool | None, typer.Option(
        "--avoid-repeat/--allow-repeat",
        help="Leave out of the random draw companies inspected at random earlier this year by "
        "any department, tier D excepted (default: the check-item list's setting, else on).",
    )] = None,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Draw a plan: companies by tier at random, inspectors at random, joint visits. The checks
    start today or later (China time) unless --record-past."""
    from pydantic import ValidationError

    from serving.spotcheck.draw import PlanError
    from serving.spotcheck.plans import PlanRequest, create_plan, refuse_caller_seed

    try:
        if request_file is not None:
            request = PlanRequest.model_validate_json(request_file.read_text(encoding="utf-8"))
            if record_past:
                request = request.model_copy(update={"record_past": True})
            if allow_duplicate:
                request = request.model_copy(update={"allow_duplicate": True})
            if avoid_repeat is not None:
                request = request.model_copy(update={"avoid_repeat_within_year": avoid_repeat})
        else:
            request = PlanRequest(
                name=name, departments=_split(departments),
                items=_split(items) or None, ratio_preset=preset,
                population={"regions": _split(regions), "industries": _split(industries),
                            "tiers": _split(tiers)},
                snapshot_date=_as_of(snapshot, china_today()) if snapshot else None,
                start_date=_as_of(start) if start else None, record_past=record_past,
                seed=seed, triggered=_triggered(triggered), allow_duplicate=allow_duplicate,
                avoid_repeat_within_year=avoid_repeat,
            )  # fmt: skip
        refuse_caller_seed(request, _settings().caller_seeds)
        created = create_plan(_engine(), request, store=_store(_settings()))
    except ValidationError as exc:
        options = CREATE_OPTIONS if request_file is None else None
        _fail(_validation_message(exc, options), as_json=as_json)
    except (PlanError, OSError) as exc:
        _fail(str(exc), as_json=as_json)
    if as_json:
        _emit_json(created.model_dump(mode="json"))
        return
    out.print(
        f"plan {created.plan_id}: {created.visits} visits, {created.tasks} tasks, due "
        f"{created.due_date}{' (estimated calendar)' if created.due_estimated else ''}"
    )
    out.print(f"  seed {created.seed}, list sha256 {created.list_sha256}")
    for s in created.summary["items"]:
        drawn = ", ".join(f"{t} {s['drawn'][t]}/{s['eligible'][t]}" for t in "ABCD")
        out.print(f"  {s['item_id']:10} {drawn}  triggered {s['triggered']}, over a yearly "
                  f"cap {s['excluded_over_cap']}, inspected this year {s['excluded_repeat']}"
                  )  # fmt: skip
    rule = created.summary["repeat_rule"]
    out.print(
        f"  {rule['companies_kept_out']} companies inspected at random earlier this year kept out "
        "(tier D excepted)"
        if rule["avoid_repeat_within_year"]
        else "  repeat checks within the year allowed (--allow-repeat)"
    )


@plan_app.command("show")
def plan_show(
    plan_id: Annotated[str, typer.Argument()],
    format: Annotated[
        Literal["csv", "xlsx", "json"], typer.Option(help="csv, xlsx (needs --out) or json.")
    ] = "csv",
    output: Annotated[Path | None, typer.Option("--out", help="File (default: stdout).")] = None,
    department: Annotated[
        str | None, typer.Option(help="One department (code or Chinese name).")
    ] = None,
    inspector: Annotated[str | None, typer.Option(help="One inspector's tasks.")] = None,
    purpose: ReadPurposeOpt = None,
) -> None:
    """A plan's list, byte for byte as `GET /v1/spot-check-plans/{id}` gives it: JSON (the plan
    and its tasks), CSV (UTF-8 with a byte-order mark, Chinese headers) or Excel; optionally for
    one department or inspector. The companies listed are logged in the audit log (with the
    purpose, required as the API requires X-Purpose) before anything is written."""
    from serving.audit import asking
    from serving.spotcheck.export import plan_list_bytes
    from serving.spotcheck.plans import plan_list

    why = _required_purpose(purpose, "plan show")
    if format == "xlsx" and output is None:
        _fail("give --out for Excel (an .xlsx file is no text for the terminal)")
    from serving.spotcheck.plans import inspector_filter

    engine = _engine()
    missing: str | None = None
    with engine.connect() as con:
        department = _department(con, department)
        try:
            inspector = inspector_filter(con, inspector) if inspector is not None else None
        except LookupError as exc:  # the API's 422 unknown_inspector: nothing read
            _fail(str(exc.args[0]))
        try:
            plan, frame = plan_list(con, plan_id, department, inspector, store=_store(_settings()))
        except LookupError as exc:
            missing = str(exc.args[0])
    chosen = {"department": department, "inspector": inspector}
    with asking([(k, v) for k, v in chosen.items() if v is not None]):  # the line's detail
        if missing is not None:  # an unknown plan: the API's 404, a line without a company
            _log_read(engine, "plan show", [], f"{plan_id}: {why}", 404)
            _fail(missing)
        _log_read(engine, "plan show", frame["uscc"], f"{plan_id}: {why}")
    data = plan_list_bytes(plan, frame, format)
    if output is None:
        typer.echo(data, nl=False)  # the bytes as they are: the CSV keeps its byte-order mark
    else:
        output.write_bytes(data)
        err.print(f"{len(frame)} tasks → {escape(str(output))}", soft_wrap=True)


@plan_app.command("cancel")
def plan_cancel(
    plan_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why the checks are called off (kept).")],
    task: Annotated[int | None, typer.Option(help="One task only (default: all open).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a plan's (or one task's) checks without a result: not overdue, not counted against
    yearly limits, shown as cancelled (已取消); the draw is unchanged and still verifies. Who,
    when and why are kept (lifecycle log)."""
    from serving.spotcheck.draw import PlanError
    from serving.spotcheck.plans import ResultConflict, TaskNotFound, cancel_tasks

    try:
        by = f"{getpass.getuser()} on {socket.gethostname()}"
        done = cancel_tasks(_engine(), plan_id, reason, task, by=by)
    except (LookupError, TaskNotFound, ResultConflict, PlanError) as exc:
        _fail(str(exc), as_json=as_json)
    if as_json:
        _emit_json(done)
    else:
        out.print(f"{plan_id}: {done['cancelled']} task(s) cancelled ({done['left_done']} done "
                  f"kept): {done['reason']}")  # fmt: skip


@plan_app.command("verify")
def plan_verify(plan_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Replay a stored plan: exit 0 only for the identical list, snapshot hashes and assignments."""
    from serving.spotcheck.draw import PlanError
    from serving.spotcheck.plans import verify_plan

    try:
        result = verify_plan(_engine(), plan_id)
    except (LookupError, PlanError) as exc:
        _fail(str(exc), as_json=as_json)
    if as_json:
        _emit_json(result.model_dump(mode="json"))
    else:
        verdict = "identical" if result.identical else "DIFFERENT"
        out.print(f"{plan_id}: replayed list {verdict} ({result.tasks} tasks, sha256 "
                  f"{result.replayed_sha256}); pool hash {'ok' if result.pool_hash_ok else 'BAD'}, "
                  f"inspector hash {'ok' if result.inspector_hash_ok else 'BAD'}, "
                  f"task rows {'ok' if result.tasks_match else 'BAD'}, "
                  f"assignments {'ok' if result.assignments_match else 'BAD'}")  # fmt: skip
        if result.drawn_with and result.drawn_with != result.replayed_with:
            out.print(
                f"  drawn with {result.drawn_with}, replayed with {result.replayed_with}: a "
                "replay that differs is to be run with the versions it was drawn with"
            )
    if not result.identical:
        raise typer.Exit(1)


@plan_app.command("audit-package")
def plan_audit_package(
    plan_id: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("--out", help="The zip to write.")],
    purpose: ReadPurposeOpt = None,
) -> None:
    """Export a draw's audit package, as `GET /v1/spot-check-plans/{id}/audit-package` gives
    it: seed, pool and inspector snapshot, parameters, list, and the code and `verify.py` to
    replay it offline (DOMAIN §7). The snapshot holds every pooled company's tier: each of them
    is logged in the audit log (with the purpose, required) before the file is written."""
    from serving.spotcheck.draw import PlanError
    from serving.spotcheck.package import audit_package

    why = _required_purpose(purpose, "plan audit-package")
    engine = _engine()
    try:
        made = audit_package(engine, plan_id, exported_by=f"operator {getpass.getuser()}")
    except LookupError as exc:  # the API's 404: a line without a company
        _log_read(engine, "plan audit-package", [], f"{plan_id}: {why}", 404)
        _fail(str(exc.args[0]))
    except PlanError as exc:
        _fail(str(exc))
    _log_read(engine, "plan audit-package", made.companies, f"{plan_id}: {why}")
    output.write_bytes(made.data)
    err.print(f"{plan_id}: {made.manifest['tasks']} tasks, {len(made.companies)} companies in "
              f"the pool → {escape(str(output))} ({len(made.data):,} bytes); check it with "
              f"`credsup plan verify-package {escape(str(output))}`", soft_wrap=True)  # fmt: skip


@plan_app.command("verify-package")
def plan_verify_package(
    package: Annotated[Path, typer.Argument(help="An audit package (zip) or its unpacked folder.")],
    notice: Annotated[
        Path | None, typer.Option(help="The plan's public notice (JSON) to compare hashes with.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a draw from its audit package alone, as an outside auditor would: the package's
    own `verify.py` and copy of the sampling design run in a process of their own (nothing is
    read from the service). Exit 0 identical, 1 a check failed, 2 the package cannot be read."""
    import subprocess
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="credsup-audit-") as tmp:
        root = package
        if package.is_file():
            try:
                with zipfile.ZipFile(package) as archive:
                    if any(Path(n).is_absolute() or ".." in Path(n).parts
                           for n in archive.namelist()):  # fmt: skip
                        _fail(f"{package}: a path in the zip leaves its folder", as_json=as_json)
                    archive.extractall(tmp)
            except zipfile.BadZipFile as exc:
                _fail(f"{package}: {exc}", as_json=as_json)
            tops = [p for p in Path(tmp).iterdir() if (p / "verify.py").is_file()]
            root = tops[0] if len(tops) == 1 else Path(tmp)
        if not (root / "verify.py").is_file():
            _fail(f"{package}: no verify.py (not an audit package)", as_json=as_json)
        command = [sys.executable, "-I", str(root / "verify.py"), str(root)]
        command += ["--notice", str(notice.resolve())] if notice is not None else []
        command += ["--json"] if as_json else []
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    raise typer.Exit(done.returncode)


FINDINGS_NEEDED: dict[str, str] = {
    "pass": "--result pass takes no findings: leave out --minor, --major and --serious",
    "problem": "--result problem needs --minor N or --major N (findings), and no --serious",
    "serious": "--result serious needs --serious N (at least one serious finding)",
    "not_inspected": "--result not_inspected needs --reason unreachable|deregistered|"
    "ceased_trading|other (other with --note saying why), and no findings",
}
"""What each result asks of the finding counts, in the options' words (the rule itself is
`serving.spotcheck.plans.TaskResult`'s)."""

RESULT_OPTIONS: dict[tuple[str | int, ...], str] = {
    ("result",): "--result", ("check_date",): "--date", ("findings", "minor"): "--minor",
    ("findings", "major"): "--major", ("findings", "serious"): "--serious",
    ("findings", "description"): "--description", ("reason",): "--reason", ("note",): "--note",
}  # fmt: skip


@plan_app.command("result")
def plan_result(
    task_id: Annotated[int, typer.Argument()],
    result: Annotated[Outcome, typer.Option(
        help="pass, problem, serious, or not_inspected (the check could not be made)."
    )],
    check_date: Annotated[str, typer.Option("--date", help="Day of the check, YYYY-MM-DD.")],
    minor: Annotated[int, typer.Option(help="Minor findings (problem).")] = 0,
    major: Annotated[int, typer.Option(help="Major findings (problem).")] = 0,
    serious: Annotated[int, typer.Option(help="Serious findings (serious).")] = 0,
    description: str = "",
    reason: Annotated[NotInspectedReason | None, typer.Option(
        help="Why a check could not be made (not_inspected): unreachable (not at the "
        "registered address), deregistered, ceased_trading or other.",
    )] = None,
    note: Annotated[str, typer.Option(help="Why, for --reason other (not public).")] = "",
    purpose: PurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Record a task's result (it becomes a spot_check record and is published): pass without
    findings, problem with minor or major ones, serious with at least one serious one;
    not_inspected with its --reason when the check could not be made (the task is closed)."""
    from pydantic import ValidationError

    from serving.spotcheck.draw import PlanError
    from serving.spotcheck.plans import ResultConflict, TaskResult, post_result

    day = _as_of(check_date)
    try:
        body = TaskResult.model_validate(
            {"result": result, "check_date": day,
             "findings": {"minor": minor, "major": major, "serious": serious,
                          "description": description},
             "reason": reason, "note": note}
        )  # fmt: skip
    except ValidationError as exc:
        # the counts do not fit the result (the model's own check, at no field): say which
        whole = any(not e["loc"] for e in exc.errors())
        needed = FINDINGS_NEEDED[result]
        if result != "not_inspected" and (reason or note):
            needed = "--reason and --note are for --result not_inspected only"
        _fail(needed if whole else _validation_message(exc, RESULT_OPTIONS), as_json=as_json)
    engine = _engine()
    try:
        done = post_result(engine, _store(_settings()), task_id, body)
    except (PlanError, LookupError, ResultConflict) as exc:
        _fail(str(exc), as_json=as_json)
    # a line in the audit log for the company, as the API writes (the result stands either way)
    _log_write(engine, "plan result", done["uscc"],
               f"{done['plan_id']} task {task_id}: {purpose or 'spot-check result'}")  # fmt: skip
    if as_json:
        _emit_json(done)
    else:
        why = f" ({reason})" if reason else ""
        out.print(f"task {task_id}: {result}{why} on {day}, record {done['record_id']}")


@plan_app.command("overdue")
def plan_overdue(
    department: Annotated[
        str | None, typer.Option(help="One department (code or Chinese name).")
    ] = None,
    plan_id: Annotated[str | None, typer.Option("--plan-id", help="One plan's tasks.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    purpose: ReadPurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tasks past their 20 working days without a result (with --json: what
    `GET /v1/spot-check-tasks/overdue` answers). The companies listed are logged in the audit
    log (with the purpose, required as the API requires X-Purpose) before they are shown."""
    from serving.audit import asking
    from serving.routes.spotchecks import TaskOut, TaskPage
    from serving.spotcheck.plans import get_plan, overdue_tasks

    why = _required_purpose(purpose, "plan overdue")
    day = _as_of(as_of) if as_of else china_today()
    engine = _engine()
    with engine.connect() as con:
        department = _department(con, department, as_json)
        chosen = {"department": department, "plan_id": plan_id, "as_of": as_of}
        if plan_id is not None:
            try:
                get_plan(con, plan_id)
            except LookupError as exc:  # the API's 404, a line without a company
                with asking([(k, v) for k, v in chosen.items() if v is not None]):
                    _log_read(engine, "plan overdue", [], why, 404)
                _fail(str(exc.args[0]), as_json=as_json)
        frame = overdue_tasks(con, day, department, plan_id, limit=100_000)
    with asking([(k, v) for k, v in chosen.items() if v is not None]):  # the line's detail
        _log_read(engine, "plan overdue", frame["uscc"], why)
    if as_json:
        page = TaskPage(as_of=day, tasks=[TaskOut.model_validate({**r, "task_id": r["id"]})
                                          for r in frame.to_dict("records")])  # fmt: skip
        sys.stdout.write(page.model_dump_json() + "\n")
        return
    out.print(f"{len(frame)} overdue task(s) as of {day}")
    for r in frame.head(50).to_dict("records"):
        out.print(f"  {r['id']:>8} {r['plan_id']} {r['uscc']} {r['item_id']} due {r['due_date']}")
