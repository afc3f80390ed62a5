"""`credsup db`, `keys`, `load` and `serve`: the tier API's commands."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli.main import JsonOpt, _as_of, _emit_json, _progress, _settings, _store, app, err, out
from records.workdays import china_today

db_app = typer.Typer(help="The serving database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the tier API.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The audit quarantine: reads the database refused to log.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Create or upgrade the serving tables (Alembic migrations; SQLite or DATABASE_URL)."""
    from serving.db import schema_revision, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    url = _safe(settings.serving_url)
    if as_json:
        _emit_json({"database": url, "revision": schema_revision(settings.serving_url)})
        return
    out.print(f"serving database at the latest schema: {url}")


def _safe(url: str) -> str:
    """The URL without a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="admin, regulator, department, analyst, company or public.")
    ],
    department: Annotated[str | None, typer.Option(help="Department code (role department).")]
    = None,
    name: Annotated[str | None, typer.Option(help="Who holds the key.")] = None,
    uscc: Annotated[str | None, typer.Option(help="The company a company key speaks for.")]
    = None,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Create an API key; it is shown once and stored only as a hash."""
    from serving.auth import create_key, known_department, record_departments
    from serving.db import make_engine, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    # a department must be known: the service's own, or one that sent records
    known = record_departments(_store(settings)) if department else []
    try:
        department = known_department(department, known) if department else None  # its code
        key = create_key(make_engine(settings.serving_url), role, department, name, uscc, known)
    except ValueError as exc:  # InvalidUSCC is one
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        _emit_json({"key": key, "role": role, "department": department, "uscc": uscc,
                    "prefix": key[:10]})  # fmt: skip
    else:
        out.print(key)
        err.print(f"role {role}{f', department {department}' if department else ''}: "
                  "keep it safe, it is not shown again")  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[
        str, typer.Argument(help="The key's first 10 characters (`keys list`), or the key.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key (it stops working within 30 seconds)."""
    from serving.auth import revoke_key
    from serving.db import make_engine, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    n = revoke_key(make_engine(settings.serving_url), key)
    shown = key.strip()[:10]  # never the secret itself
    if as_json:
        _emit_json({"prefix": shown, "revoked": n})
    elif n == 0:
        err.print(f"no active key {'is' if len(key.strip()) > 12 else 'starts with'} {shown}…")
    else:
        out.print(f"revoked {n} key(s)")
    if n == 0:
        raise typer.Exit(1)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Every key without its secret: prefix (for `keys revoke`), role, department, company,
    holder, created and revoked."""
    from serving.auth import list_keys
    from serving.db import make_engine, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    keys = list_keys(make_engine(settings.serving_url))
    if as_json:
        _emit_json({"keys": [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                              for k, v in row.items()} for row in keys]})  # fmt: skip
        return
    if not keys:
        out.print("no keys: create one with `credsup keys create --role …`", markup=False)
        return
    # one line a key, whatever the terminal's width (greppable), under a line of headers
    line = "{:<10}  {:<10} {:<10} {:<18} {:<16}  {:<18}  {}"
    out.print(line.format("prefix", "role", "department", "company", "created", "state",
                          "holder"), markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    for row in keys:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        out.print(
            line.format(row["prefix"], row["role"], row["department"] or "-", row["uscc"] or "-",
                        f"{row['created_at']:%Y-%m-%d %H:%M}", state, row["name"] or "-"),
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


@audit_app.command("refused")
def audit_refused(as_json: JsonOpt = False) -> None:
    """Audit rows the serving database refused, with its reason; exit 1 while any is open (not
    acknowledged): the service is not ready until they are."""
    from serving.audit import AuditQuarantine

    quarantine = AuditQuarantine(_settings().audit_quarantine_dir)
    shown, still_open = quarantine.listing()
    if as_json:
        _emit_json({"open": still_open, "entries": shown,
                    "acknowledgements": quarantine.acknowledgements()})  # fmt: skip
    else:
        for e in shown:
            row = e["row"]
            state = "acknowledged" if e["acknowledged"] else "OPEN"
            out.print(
                f"{state}  refused {e['refused_at']}: read at {row.get('at')} by key "
                f"{row.get('key_id')} ({row.get('role')}) of {row.get('uscc')} on "
                f"{row.get('endpoint')!r}, purpose {row.get('purpose')!r}: {e['reason']}",
                markup=False,
                highlight=False,
            )
        err.print(f"{len(shown)} refused audit row(s), {still_open} open, in "
                  f"{quarantine.entries_path}")  # fmt: skip
    if still_open:
        raise typer.Exit(1)


@audit_app.command("acknowledge")
def audit_acknowledge(
    by: Annotated[str, typer.Option(help="Who looked at the refused rows.")],
    note: Annotated[str, typer.Option(help="What was found and done (kept with them).")],
) -> None:
    """Acknowledge every refused audit row so far (they stay in the quarantine): the service
    is ready again."""
    from serving.audit import AuditQuarantine

    quarantine = AuditQuarantine(_settings().audit_quarantine_dir)
    try:
        n = quarantine.acknowledge(by, note)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    out.print(f"acknowledged {n} refused audit row(s) in {quarantine.entries_path}")


@app.command()
def load(
    as_of: Annotated[str, typer.Option("--as-of", help="Results of this date, YYYY-MM-DD.")],
    model_version: Annotated[
        str | None,
        typer.Option(
            help="Tier results of this model version (default: the champion's; without a "
            "champion, the date's only tier file)."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Replace the tiers published for the date by another model's.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load the stored evaluation and tiers of a date into the serving database."""
    from models.published import ModelNotFound, PublishedModels
    from serving.db import make_engine, upgrade
    from serving.load import AmbiguousLoad, NothingToLoad, load_results

    settings = _settings()
    day = _as_of(as_of, china_today())
    started = time.perf_counter()
    if model_version is None:
        try:
            model_version = PublishedModels(settings.data_dir).version("champion")
        except ModelNotFound:
            model_version = None  # no champion: the date's only tier file, if any
    version = f"credit-tier-v{model_version}" if model_version else None
    with _progress(f"loading results as of {day}"):
        upgrade(settings.serving_url)
        try:
            loaded = load_results(
                make_engine(settings.serving_url), _store(settings), settings.data_dir, day,
                version, replace=replace,
            )  # fmt: skip
        except (NothingToLoad, AmbiguousLoad) as exc:
            err.print(str(exc))
            raise typer.Exit(1) from None
    payload = {**loaded.__dict__, "as_of": day.isoformat(),
               "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
    if as_json:
        _emit_json(payload)
        return
    out.print(
        f"loaded {loaded.companies:,} companies as of {day} ({loaded.kept_newer:,} already hold a "
        f"later result) in {payload['seconds']} s into {_safe(settings.serving_url)}"
    )


RELOAD_WITH_WORKERS = 30.0
"""Seconds between looks at the champion alias when several workers serve (unless
CREDSUP_MODEL_RELOAD_SECONDS says otherwise)."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the tier API with uvicorn (OpenAPI docs at /docs)."""
    import os
    import shutil

    import uvicorn

    from models.published import PublishedModels
    from serving.db import upgrade
    from serving.limits import create_table

    settings = _settings()
    host, port = host or settings.api_host, port or settings.api_port
    refused = _cannot_listen(host, port)
    if refused:  # first: nothing is migrated or opened for a server that cannot start
        err.print(f"[red]error:[/red] cannot serve on {host}:{port}: {escape(refused)}. Another "
                  "server may be running there: stop it, or choose another port (--port P or "
                  "CREDSUP_API_PORT=P)", soft_wrap=True)  # fmt: skip
        raise typer.Exit(2)
    try:
        upgrade(settings.serving_url)  # once, before the workers start (they find it migrated)
    except Exception as exc:  # the database cannot be reached or migrated: nothing to serve
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        err.print(f"[red]error:[/red] the serving database {_safe(settings.serving_url)} cannot "
                  f"be migrated: {escape(first)}", soft_wrap=True)  # fmt: skip
        raise typer.Exit(3) from None
    try:  # the model registry too: on a new data directory the workers would race to create it
        PublishedModels(settings.data_dir).open_store()
    except Exception as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        err.print(f"[red]error:[/red] the model registry cannot be opened: {escape(first)}",
                  soft_wrap=True)  # fmt: skip
        raise typer.Exit(3) from None
    if settings.rate_table is not None and not settings.rate_table.exists():
        create_table(settings.rate_table)  # named (environment or .env) but not made yet
    if workers > 1 and settings.model_reload_seconds is None:
        # `POST /v1/admin/reload` reaches one worker: the others look at the champion alias on
        # this period (re-scores always look first)
        os.environ["CREDSUP_MODEL_RELOAD_SECONDS"] = str(RELOAD_WITH_WORKERS)
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning",
                               "access_log": False}  # fmt: skip
    where = (
        f"serving on http://{options['host']}:{options['port']} with {workers} worker(s), "
        f"database {_safe(settings.serving_url)}, data {settings.data_dir}"
    )
    if workers == 1:  # uvicorn exits 3 itself when the application fails to start
        err.print(where)
        uvicorn.run("serving.asgi:app", **options)
        return
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    # uvicorn.run's own supervisor, kept at hand: when a worker fails to start, the parent
    # stops, and says so by its exit code (uvicorn.run returns 0 then)
    config = uvicorn.Config("serving.asgi:app", workers=workers, **options)
    socket = config.bind_socket()  # first: a port in use leaves a running server's metrics be
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics adds up the workers' counts (prometheus_client's multiprocess mode): a
        # folder of this server's own, emptied at each start
        folder = settings.data_dir / "metrics" / str(options["port"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())
    if settings.rate_table is None:
        # the public keys' rate holds for the service, not for each worker: one table of
        # buckets, mapped by every worker (serving.limits)
        table = create_table(settings.data_dir / "run" / f"rates-{options['port']}")
        os.environ["CREDSUP_RATE_TABLE"] = str(table.resolve())
    err.print(where)
    supervisor = Multiprocess(config, sockets=[socket])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        err.print("[red]error:[/red] a worker failed to start (its error is above): the "
                  "service stopped", soft_wrap=True)  # fmt: skip
        raise typer.Exit(3)


def _cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not listen on (host, port), as uvicorn binds it (address reuse on);
    None when it could."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as exc:
        return f"the address cannot be resolved ({exc.strerror or exc})"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


@keys_app.command("demo")
def keys_demo(as_json: JsonOpt = False) -> None:
    """Create a regulator key and a public key and print example requests for a loaded company."""
    import sqlalchemy as sa

    from serving.auth import create_key
    from serving.db import companies, make_engine, upgrade

    settings = _settings()
    upgrade(settings.serving_url)
    engine = make_engine(settings.serving_url)
    key = create_key(engine, "regulator", None, "make run demo")
    public = create_key(engine, "public", None, "make run demo")
    with engine.connect() as con:
        found = con.execute(
            sa.select(companies.c.uscc).where(companies.c.tier == "D").limit(1)
        ).scalar()
    code = found or "91410100MA44XXXXXX"  # an example, until companies are loaded
    base = f"http://{settings.api_host}:{settings.api_port}"
    requests = [
        f"curl -s -H 'X-API-Key: {key}' -H 'X-Purpose: demo' {base}/v1/companies/{code}",
        f"curl -s -H 'X-API-Key: {public}' {base}/v1/companies/{code}",
        f"curl -s -H 'X-API-Key: {key}' -H 'X-Purpose: demo' {base}/v1/companies/{code}/history",
        f"curl -s -H 'X-API-Key: {key}' '{base}/v1/tiers/summary?by=region'",
        f"curl -s {base}/readyz",
    ]
    if as_json:
        _emit_json({"regulator": key, "public": public, "uscc": found, "base_url": base,
                    "docs": f"{base}/docs", "requests": requests})  # fmt: skip
        return
    out.print(f"demo keys: regulator {key}\n           public    {public}")
    requests[-1] += f"      # docs: {base}/docs"
    for line in requests:
        out.print(f"  {line}", markup=False, highlight=False)
