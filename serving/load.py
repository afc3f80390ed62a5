"""Load batch results (`credsup score`, `credsup tier`) into the serving tables.

For an as-of date: the stored evaluation (latest method file) and tiers (the given model
version; without one, the date's only tier file: several are refused, since the newest file
need not be the champion's), the entity facts in force and the list and objection flags from the
stored features (the look-ups replace the objection flag by the open objections at the time of
each request: `serving.lookup.objection_flags`). Each company gets two ready-to-serve JSON
documents (full and public). A company's row is replaced only by a result at least as recent as
the one it has (companies that left the register keep their last result); every load also adds
to `company_history`.
What was published for a date stays: loading the tiers of another model version for a date
already loaded is refused unless `replace` is asked for (the same version loads again freely).
One transaction: a failed load leaves the tables as they were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from features.results import written_last
from records.catalogue import DIMENSIONS, default_catalogue
from records.schema import VERSION_ORDER
from records.store import Store, _quote
from serving.db import companies, company_history

LIST_FLAGS = {
    "on_serious_dishonest_list": "serious_dishonest",
    "on_abnormal_list": "abnormal_operation",
    "on_dishonest_debtor_list": "dishonest_judgment_debtor",
    "on_focus_list": "focus_attention",
    "on_red_list": "red_list",
}
"""The list features served in `flags.lists`, under the names the documents have always used
(kept for their consumers); `LIST_CODES` gives each one's catalogue code."""

LIST_CODES = {
    "serious_dishonest": "serious_dishonest_list",
    "abnormal_operation": "abnormal_operation_list",
    "dishonest_judgment_debtor": "dishonest_judgment_debtor",
    "focus_attention": "focus_attention_list",
    "red_list": "red_list",
}
"""`flags.lists` name → the catalogue's record category (what `/v1/public/lists` and the public
page call the list; the courts' dishonest judgment debtors are a category, not a list kept
here)."""


class NothingToLoad(LookupError):
    pass


class AmbiguousLoad(ValueError):
    """Which results to load is not clear, or loading them would rewrite what was published."""


@dataclass(frozen=True)
class Loaded:
    as_of: date
    companies: int
    kept_newer: int
    """Companies whose row already holds a later result (theirs is kept)."""
    score_file: str | None
    tier_file: str | None


def mask_name(name: str | None) -> str | None:
    """An individual business's name carries its owner's name, often at its start ("李四便利店")
    or as the whole name ("张三"): only the first character (a surname, as names are published
    masked) and, from 5 characters on, the last two (the trade: "李**利店") stay visible."""
    if not name:
        return name
    if len(name) <= 4:
        return name[0] + "*" * (len(name) - 1)
    return name[0] + "*" * (len(name) - 3) + name[-2:]


SHOWN_ATTRIBUTES = ("penalty_types", "domain", "reason", "list", "year", "check_item", "licence",
                    "legal_basis", "ref")  # fmt: skip
"""Attributes of a public record that carry no personal data; `reason` only where the catalogue
declares it a code (the abnormal-operation list's ground), never free text, which may name
people (a proposer's reason for a listing, a removal's reason)."""


def _reason_codes(category: str) -> frozenset[str]:
    """The codes a category's `reason` attribute takes, as the catalogue declares them
    ("missing_annual_report / false_disclosure / unreachable"); empty where it declares none."""
    declared = default_catalogue()[category].attributes.get("reason", "")
    return frozenset(c.strip() for c in declared.split("/") if c.strip().isidentifier())


def shown_attributes(category: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a record the public may see (see `SHOWN_ATTRIBUTES`): what the public
    page shows, and what a department sees of another department's records."""
    out = {k: attributes[k] for k in SHOWN_ATTRIBUTES if k in attributes}
    if "reason" in out and out["reason"] not in _reason_codes(category):
        del out["reason"]
    return out


LOAD_LOCK = 321_000_000_000
"""PostgreSQL advisory locks of loads: this plus the as-of date's ordinal."""
LOAD_WAIT_SECONDS = 900.0
"""How long a load on SQLite waits for another to finish (PostgreSQL waits for the date's
lock as long as it is held)."""


def _lock_date(con: Connection, as_of: date) -> None:
    """One load of a date at a time, from the check of what is published to the commit: two
    loads of one date by two models once both passed the check and the later silently replaced
    the other's tiers. PostgreSQL: a transaction advisory lock per date; SQLite: the write lock
    taken at once (a deferred transaction would read first)."""
    if con.dialect.name == "postgresql":
        con.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOAD_LOCK + as_of.toordinal()}
        )
    elif con.dialect.name == "sqlite":
        # the lock is the file's (the wait for it: `_waiting_as_a_load`): take it at once with
        # an empty write, before the published versions are read
        con.execute(company_history.delete().where(sa.false()))


@contextmanager
def _waiting_as_a_load(engine: Engine) -> Iterator[Connection]:
    """A connection for a load. On SQLite it waits for another load's write lock as long as a
    load may take (the pool's 30 s suit a request, not a batch), and gives the wait back to
    the pool as it found it."""
    with engine.connect() as con:
        if con.dialect.name != "sqlite":
            yield con
            return
        previous = con.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        con.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOAD_WAIT_SECONDS * 1000)}")
        con.commit()
        try:
            yield con
        finally:
            con.rollback()
            con.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous)}")
            con.commit()


def _latest(folder: Path, version: str | None) -> Path | None:
    if not folder.is_dir():
        return None
    if version is not None:
        path = folder / f"{version}.parquet"
        return path if path.exists() else None
    return written_last(folder)


def _tier_file(folder: Path, version: str | None) -> Path | None:
    """The tiers of the given model version, or the only tier file of the date."""
    if version is not None or not folder.is_dir():
        return _latest(folder, version)
    files = sorted(p.stem for p in folder.glob("*.parquet"))
    if len(files) > 1:
        raise AmbiguousLoad(
            f"{len(files)} tier files for {folder.name} ({', '.join(files)}): say which model's "
            "tiers to load (`credsup load --model-version N`; by default the champion's)"
        )
    return folder / f"{files[0]}.parquet" if files else None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _source_files(
    data_dir: Path, as_of: date, tier_version: str | None
) -> tuple[Path | None, Path | None, Path | None]:
    """The date's published evaluation, the tiers to load and the features published with them."""
    results = Path(data_dir) / "results"
    day = f"as_of={as_of.isoformat()}"
    score_file = _latest(results / "scores" / day, None)
    tier_file = _tier_file(results / "tiers" / day, tier_version)
    if tier_version is not None and tier_file is None:
        raise NothingToLoad(
            f"no tiers of {tier_version} as of {as_of} under {results}: run "
            f"`credsup tier --as-of {as_of} --model {tier_version.rsplit('-v', 1)[-1]}` first"
        )
    if score_file is None and tier_file is None:
        raise NothingToLoad(
            f"no results as of {as_of} under {results}: run `credsup score --as-of {as_of}` "
            f"and `credsup tier --as-of {as_of}` first"
        )
    return score_file, tier_file, written_last(results / "features" / day)


def _columns(path: Path | None, wanted: dict[str, str], alias: str) -> list[str]:
    """`alias.column AS name` for each wanted column the file has, NULL for the others (and for
    every one without a file)."""
    have = set(pq.read_schema(path).names) if path is not None else set()
    return [
        f"{alias}.{column} AS {name}" if column in have else f"NULL AS {name}"
        for name, column in wanted.items()
    ]


def _merged_sql(score_file: Path | None, tier_file: Path | None, feature_file: Path | None) -> str:
    """Per company with an evaluation or a tier: the entity facts in force, the evaluation, the
    tier and the flags, under the names `_documents` reads."""
    columns = [
        *_columns(score_file, {"score": "score", "grade": "grade", "vetoes": "vetoes",
                               "top_deductions": "top_deductions",
                               "method_version": "method_version", "spec_version": "spec_version",
                               **{f"points_{d}": f"points_{d}" for d in DIMENSIONS}}, "s"),
        *_columns(tier_file, {"probability": "probability", "model_tier": "model_tier",
                              "tier": "tier", "reasons": "reasons", "model_name": "model_name",
                              "model_version": "model_version",
                              "spec_version_tier": "spec_version"}, "t"),
        *_columns(feature_file, {c: c for c in ("objection_open", *LIST_FLAGS)}, "f"),
    ]  # fmt: skip
    joins = "".join(
        f" LEFT JOIN read_parquet({_quote(str(path))}) {alias} ON {alias}.uscc = e.uscc"
        for path, alias in ((score_file, "s"), (tier_file, "t"), (feature_file, "f"))
        if path is not None
    )
    # a company is loaded with an evaluation (a NaN score is none, as pandas had it) or a tier;
    # a file without the column holds neither
    present = (
        " OR ".join(
            test
            for path, column, test in (
                (score_file, "score", "(s.score IS NOT NULL AND NOT isnan(s.score))"),
                (tier_file, "tier", "t.tier IS NOT NULL"),
            )
            if path is not None and column in pq.read_schema(path).names
        )
        or "false"
    )
    return f"""
        WITH e AS (
            SELECT uscc, arg_max(name, {VERSION_ORDER}) AS name,
                arg_max(entity_type, {VERSION_ORDER}) AS entity_type,
                arg_max(region, {VERSION_ORDER}) AS region,
                arg_max(industry, {VERSION_ORDER}) AS industry,
                arg_max(status, {VERSION_ORDER}) AS status
            FROM entities WHERE recorded_date <= $as_of GROUP BY uscc
        )
        SELECT e.uscc, e.name, e.entity_type, e.region, e.industry, e.status,
            {", ".join(columns)}
        FROM e{joins}
        WHERE {present}"""


LOAD_PART = 20_000
"""Companies turned into documents and written at a time: a load streams the merged results
from DuckDB, so its memory does not grow with the province (at 1 M companies in one piece it
took 12.6 GB)."""


def _merged_parts(
    store: Store, as_of: date, files: tuple[Path | None, Path | None, Path | None],
    part: int | None = None,
) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    """The merged rows (`_merged_sql`) `part` (default `LOAD_PART`) at a time, each with its two
    documents as JSON text (`full_doc`, `public_doc`)."""
    part = part or LOAD_PART
    with store.connect() as con:
        reader = con.sql(_merged_sql(*files), params={"as_of": as_of}).to_arrow_reader(part)
        for batch in reader:
            rows = batch.to_pylist()
            for row in rows:
                with_documents(row, as_of)
            if rows:
                yield rows


def build_documents(
    store: Store, data_dir: Path, as_of: date, tier_version: str | None = None
) -> tuple[pd.DataFrame, Path | None, Path | None]:
    """Every company's merged row and documents as one frame, as `load_results` writes them (to
    look at: the load itself streams them)."""
    files = _source_files(data_dir, as_of, tier_version)
    rows = [row for part in _merged_parts(store, as_of, files) for row in part]
    return pd.DataFrame(rows), files[0], files[1]


def not_tiered(status: str | None) -> str:
    """Why a company has no tier: `inactive` unless its registration is active (the batch and a
    re-score tier active companies only), else `no_tier` (none loaded for it)."""
    return "no_tier" if status == "active" else "inactive"


def _deductions(value: Any) -> list[dict[str, Any]] | None:
    """The evaluation's largest deductions with the record ids behind them, as `credsup score`
    stored them (a list from the batch's Parquet, arrays from a re-score's frame); None for a
    file written without them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    out = []
    for d in value:
        records = d.get("records")
        out.append({
            "feature": str(d["feature"]), "points": float(d["points"]),
            "records": [] if records is None else [str(r) for r in records],
        })  # fmt: skip
    return out


def _documents(row: dict[str, Any], as_of: date) -> tuple[dict[str, Any], dict[str, Any]]:
    individual = row.get("entity_type") == "individual_business"
    lists = [name for col, name in LIST_FLAGS.items() if (_clean(row.get(col)) or 0) > 0]
    objection = bool((_clean(row.get("objection_open")) or 0) > 0)
    evaluation = None
    if _clean(row.get("score")) is not None:
        evaluation = {
            "score": float(row["score"]),
            "grade": row["grade"],
            "points": {d: _clean(row.get(f"points_{d}")) for d in DIMENSIONS},
            "vetoes": [] if row.get("vetoes") is None else list(row["vetoes"]),
            "method_version": row.get("method_version"),
            "top_deductions": _deductions(row.get("top_deductions")),
        }
    tier = None
    if _clean(row.get("tier")) is not None:
        tier = {
            "tier": row["tier"],
            "model_tier": row.get("model_tier"),
            "probability": round(float(row["probability"]), 6),
            "reasons": json.loads(row["reasons"]) if row.get("reasons") else [],
            "model": row.get("model_name"),
            "model_version": row.get("model_version"),
            "spec_version": row.get("spec_version_tier") or row.get("spec_version"),
        }
    status = _clean(row.get("status"))
    base = {
        "uscc": row["uscc"], "entity_type": row.get("entity_type"),
        "region": row.get("region"), "industry": row.get("industry"), "as_of": as_of.isoformat(),
        "status": status,
    }  # fmt: skip
    full = {
        **base, "name": row.get("name"), "evaluation": evaluation, "tier": tier,
        "not_tiered": None if tier is not None else not_tiered(status),
        "flags": {"objection_open": objection, "lists": lists},
    }  # fmt: skip
    public = {
        **base,
        "name": mask_name(row.get("name")) if individual else row.get("name"),
        "evaluation": None if evaluation is None
        else {"score": evaluation["score"], "grade": evaluation["grade"]},
        "flags": {"objection_open": objection},
    }  # fmt: skip
    return full, public


def _staging(table: sa.Table) -> sa.Table:
    """A temporary table with `table`'s columns (no keys, no indexes)."""
    return sa.Table(
        f"staged_{table.name}", sa.MetaData(),
        *(sa.Column(c.name, c.type) for c in table.columns), prefixes=["TEMPORARY"],
    )  # fmt: skip


def _upsert(engine: Engine, rows: sa.Select[Any] | None = None) -> Any:
    """Insert (the parameters given, or `rows` selected with the columns of `companies`), or
    replace a company's row unless it holds a later result."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt: Any = (
        postgresql.insert(companies)
        if engine.dialect.name == "postgresql"
        else sqlite.insert(companies)
    )
    if rows is not None:
        stmt = stmt.from_select([c.name for c in companies.columns], rows)
    columns = ("region", "industry", "entity_type", "as_of", "tier", "grade", "full_doc",
               "public_doc", "name")  # fmt: skip
    return stmt.on_conflict_do_update(
        index_elements=[companies.c.uscc],
        set_={c: stmt.excluded[c] for c in columns},
        where=companies.c.as_of <= stmt.excluded.as_of,
    )


def load_results(
    engine: Engine,
    store: Store,
    data_dir: Path,
    as_of: date,
    tier_version: str | None = None,
    replace: bool = False,
) -> Loaded:
    files = _source_files(data_dir, as_of, tier_version)
    score_file, tier_file, _ = files
    versions = (
        {str(v) for v in pq.read_table(tier_file, columns=["model_version"]).column(
            "model_version").drop_null().unique().to_pylist()}
        if tier_file is not None and "model_version" in pq.read_schema(tier_file).names
        else set()
    )  # fmt: skip
    loaded = 0
    staged, staged_history = _staging(companies), _staging(company_history)
    with _waiting_as_a_load(engine) as con, con.begin():
        # the rows are built and staged in temporary tables (the connection's own) before the
        # write lock is taken: on SQLite it is the whole file's, and other writers (re-scores,
        # the audit log) then wait for the copy only, not for DuckDB and the documents
        for table in (staged, staged_history):
            table.drop(con, checkfirst=True)  # left by a load that failed on this connection
            table.create(con)
        for records in _merged_parts(store, as_of, files):
            con.execute(staged.insert(), [served_row(r, as_of) for r in records])
            con.execute(staged_history.insert(), [history_row(r, as_of) for r in records])
            loaded += len(records)
        _lock_date(con, as_of)
        published = {
            str(v)
            for (v,) in con.execute(
                sa.select(company_history.c.model_version).distinct().where(
                    company_history.c.as_of == as_of, company_history.c.source == "batch",
                    company_history.c.model_version.is_not(None),
                )
            )
        }  # fmt: skip
        if published - versions and versions and not replace:
            raise AmbiguousLoad(
                f"the tiers published for {as_of} are of model version(s) "
                f"{', '.join(sorted(published))}; loading version(s) "
                f"{', '.join(sorted(versions))} would rewrite them: load that version, or "
                "replace them knowingly (`credsup load --replace`)"
            )
        newer = con.execute(
            sa.select(sa.func.count()).select_from(companies).where(companies.c.as_of > as_of)
        ).scalar_one()
        con.execute(company_history.delete().where(company_history.c.as_of == as_of))
        # WHERE true: SQLite would read ON CONFLICT after a bare FROM as a join's ON
        rows = sa.select(*staged.columns).where(sa.true())
        con.execute(_upsert(engine, rows))
        history = sa.select(*staged_history.columns)
        con.execute(company_history.insert().from_select(list(history.selected_columns), history))
        for table in (staged, staged_history):
            table.drop(con)
    return Loaded(
        as_of=as_of, companies=loaded, kept_newer=int(newer),
        score_file=str(score_file) if score_file else None,
        tier_file=str(tier_file) if tier_file else None,
    )  # fmt: skip


def with_documents(row: dict[str, Any], as_of: date) -> dict[str, Any]:
    """The merged row with its two documents as JSON text (`full_doc`, `public_doc`)."""
    doc, pub = _documents(row, as_of)
    row["full_doc"] = json.dumps(doc, ensure_ascii=False, default=str)
    row["public_doc"] = json.dumps(pub, ensure_ascii=False, default=str)
    return row


def served_row(r: dict[str, Any], as_of: date) -> dict[str, Any]:
    """A merged row with its documents as the `companies` row that serves it (the batch's and a
    re-score's)."""
    return {
        "uscc": r["uscc"],
        "region": r.get("region"),
        "industry": r.get("industry"),
        "entity_type": r.get("entity_type"),
        "as_of": as_of,
        "tier": _clean(r.get("tier")),
        "grade": _clean(r.get("grade")),
        "full_doc": r["full_doc"],
        "public_doc": r["public_doc"],
        "name": _clean(r.get("name")),
    }


def history_row(r: dict[str, Any], as_of: date, source: str = "batch") -> dict[str, Any]:
    """A merged row as its `company_history` row, from `source` (`batch` or `rescore`)."""
    return {
        "uscc": r["uscc"],
        "as_of": as_of,
        "tier": _clean(r.get("tier")),
        "probability": _clean(r.get("probability")),
        "score": _clean(r.get("score")),
        "grade": _clean(r.get("grade")),
        "model_version": _clean(r.get("model_version")),
        "method_version": _clean(r.get("method_version")),
        "region": _clean(r.get("region")),
        "industry": _clean(r.get("industry")),
        "entity_type": _clean(r.get("entity_type")),
        "name": _clean(r.get("name")),
        "source": source,
    }
