"""`credsup db`, `keys`, `load` and `serve`: the tier API's commands."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from cli.main import JsonOpt, _as_of, _emit_json, _progress, _store, app, err, out
from records.settings import Settings
from records.workdays import china_today

db_app = typer.Typer(help="The serving database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the tier API.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the serving tables (Alembic migrations; SQLite or DATABASE_URL)."""
    from serving.db import upgrade

    settings = Settings()
    upgrade(settings.serving_url)
    out.print(f"serving database at the latest schema: {_safe(settings.serving_url)}")


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
    from serving.auth import create_key
    from serving.db import make_engine, upgrade

    settings = Settings()
    upgrade(settings.serving_url)
    try:
        key = create_key(make_engine(settings.serving_url), role, department, name, uscc)
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
    prefix: Annotated[str, typer.Argument(help="The key's first 10 characters.")],
) -> None:
    """Revoke a key (it stops working within 30 seconds)."""
    from serving.auth import revoke_key
    from serving.db import make_engine

    n = revoke_key(make_engine(Settings().serving_url), prefix)
    if n == 0:
        err.print(f"no active key starts with {prefix}")
        raise typer.Exit(1)
    out.print(f"revoked {n} key(s)")


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

    settings = Settings()
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the tier API with uvicorn (OpenAPI docs at /docs)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(
        "serving.asgi:app", host=host or settings.api_host, port=port or settings.api_port,
        workers=workers, log_level="warning", access_log=False,
    )  # fmt: skip


@keys_app.command("demo")
def keys_demo() -> None:
    """Create a regulator key and print example requests for a loaded company."""
    import sqlalchemy as sa

    from serving.auth import create_key
    from serving.db import companies, make_engine, upgrade

    settings = Settings()
    upgrade(settings.serving_url)
    engine = make_engine(settings.serving_url)
    key = create_key(engine, "regulator", None, "make run demo")
    public = create_key(engine, "public", None, "make run demo")
    with engine.connect() as con:
        code = con.execute(
            sa.select(companies.c.uscc).where(companies.c.tier == "D").limit(1)
        ).scalar()
    code = code or "91410100MA44XXXXXX"
    base = f"http://{settings.api_host}:{settings.api_port}"
    out.print(f"demo keys: regulator {key}\n           public    {public}")
    for line in (
        f"curl -s -H 'X-API-Key: {key}' -H 'X-Purpose: demo' {base}/v1/companies/{code}",
        f"curl -s -H 'X-API-Key: {public}' {base}/v1/companies/{code}",
        f"curl -s -H 'X-API-Key: {key}' -H 'X-Purpose: demo' {base}/v1/companies/{code}/history",
        f"curl -s -H 'X-API-Key: {key}' '{base}/v1/tiers/summary?by=region'",
        f"curl -s {base}/readyz      # docs: {base}/docs",
    ):
        out.print(f"  {line}", markup=False, highlight=False)
