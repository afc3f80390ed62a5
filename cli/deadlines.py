"""`credsup deadlines`: deadlines counted on an estimated holiday calendar, counted again."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.main import JsonOpt, _emit_json, _settings, app, out

deadlines_app = typer.Typer(help="Working-day deadlines.", no_args_is_help=True)
app.add_typer(deadlines_app, name="deadlines")


@deadlines_app.command("redate")
def deadlines_redate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the moves; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Count every running deadline (spot-check plans, open objections, pending repairs, list
    entries in their objection window) again on the holiday calendar in force, and move those
    that now end elsewhere, each move a `deadline_redated` step in the lifecycle log. Run it once
    a year's schedule is published: a release of the `holidays` package, or
    CREDSUP_HOLIDAY_SCHEDULE. Running it again moves nothing."""
    from cli.plans import _engine
    from serving.deadlines import redate

    _settings(as_json)  # a schedule file that cannot be read stops here, named
    done = redate(_engine(), dry_run=dry_run)
    if as_json:
        _emit_json(done.as_dict())
        return
    summary = done.as_dict()
    verb = "would move" if dry_run else "moved"
    out.print(
        ", ".join(f"{t}: {summary['moved'][t]} of {n} {verb}" for t, n in done.checked.items())
    )
    for m in done.moves:
        what = f"{m.case_type} {m.case_id}" + (
            f" ({m.tasks} tasks)" if m.case_type == "plan" else ""
        )
        out.print(f"  {what}: {m.old} → {m.new} ({m.working_days} working days from "
                  f"{m.counted_from}{', still estimated' if m.estimated else ''})")  # fmt: skip
    if done.skipped:
        out.print(
            f"  left as they are (drawn before the count was kept): {', '.join(done.skipped)}"
        )
    if done.still_estimated:
        out.print(f"  {done.still_estimated} deadline(s) still run into a year whose schedule is "
                  "not published: run it again once it is")  # fmt: skip
