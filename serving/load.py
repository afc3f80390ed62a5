"""Load batch results (`credsup score`, `credsup tier`) into the serving tables.

For an as-of date: the stored evaluation (latest method file) and tiers (the given model
version; without one, the date's only tier file: several are refused, since the newest file
need not be the champion's), the entity facts in force and the list and objection flags from the
stored features. Each company gets two ready-to-serve JSON documents (full and public).
A company's row is replaced only by a result at least as recent as the one it has (companies
that left the register keep their last result); every load also adds to `company_history`.
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
from records.catalogue import DIMENSIONS
from records.schema import VERSION_ORDER
from records.store import Store
from serving.db import companies, company_history

LIST_FLAGS = {
    "on_serious_dishonest_list": "serious_dishonest",
    "on_abnormal_list": "abnormal_operation",
    "on_dishonest_debtor_list": "dishonest_judgment_debtor",
    "on_focus_list": "focus_attention",
}


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


def build_documents(
    store: Store, data_dir: Path, as_of: date, tier_version: str | None = None
) -> tuple[pd.DataFrame, Path | None, Path | None]:
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
    with store.connect() as con:
        entities = con.execute(
            f"SELECT uscc, arg_max(name, {VERSION_ORDER}) AS name, "
            f"arg_max(entity_type, {VERSION_ORDER}) AS entity_type, "
            f"arg_max(region, {VERSION_ORDER}) AS region, "
            f"arg_max(industry, {VERSION_ORDER}) AS industry "
            "FROM entities WHERE recorded_date <= ? GROUP BY uscc",
            [as_of],
        ).df()
    frame = entities
    if score_file is not None:
        scores = pq.read_table(score_file).to_pandas()
        frame = frame.merge(scores, on="uscc", how="left", suffixes=("", "_score"))
    if tier_file is not None:
        tiers = pq.read_table(tier_file).to_pandas()
        frame = frame.merge(tiers, on="uscc", how="left", suffixes=("", "_tier"))
    feature_file = written_last(results / "features" / day)  # the one published with them
    flags = ["objection_open", *LIST_FLAGS]
    if feature_file is not None:
        feats = pq.read_table(feature_file, columns=["uscc", *flags]).to_pandas()
        frame = frame.merge(feats, on="uscc", how="left")
    has_score = frame["score"].notna() if "score" in frame else pd.Series(False, index=frame.index)
    has_tier = frame["tier"].notna() if "tier" in frame else pd.Series(False, index=frame.index)
    frame = frame[has_score | has_tier].reset_index(drop=True)
    full, public = [], []
    for row in frame.to_dict("records"):
        doc, pub = _documents({str(k): v for k, v in row.items()}, as_of)
        full.append(json.dumps(doc, ensure_ascii=False, default=str))
        public.append(json.dumps(pub, ensure_ascii=False, default=str))
    frame["full_doc"] = full
    frame["public_doc"] = public
    return frame, score_file, tier_file


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
    base = {
        "uscc": row["uscc"], "entity_type": row.get("entity_type"),
        "region": row.get("region"), "industry": row.get("industry"), "as_of": as_of.isoformat(),
    }  # fmt: skip
    full = {
        **base, "name": row.get("name"), "evaluation": evaluation, "tier": tier,
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


def _upsert(engine: Engine) -> Any:
    """Insert, or replace a company's row unless it holds a later result."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt: Any = (
        postgresql.insert(companies)
        if engine.dialect.name == "postgresql"
        else sqlite.insert(companies)
    )
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
    frame, score_file, tier_file = build_documents(store, data_dir, as_of, tier_version)
    records = frame.to_dict("records")
    rows = [
        {
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
        for r in records
    ]
    history = [
        {
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
            "source": "batch",
        }
        for r in records
    ]
    versions = {str(v) for v in frame["model_version"].dropna().unique()} if (
        "model_version" in frame
    ) else set()  # fmt: skip
    with _waiting_as_a_load(engine) as con, con.begin():
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
        for start in range(0, len(rows), 20_000):
            con.execute(_upsert(engine), rows[start : start + 20_000])
        con.execute(company_history.delete().where(company_history.c.as_of == as_of))
        for start in range(0, len(history), 20_000):
            con.execute(company_history.insert(), history[start : start + 20_000])
    return Loaded(
        as_of=as_of, companies=len(rows), kept_newer=int(newer),
        score_file=str(score_file) if score_file else None,
        tier_file=str(tier_file) if tier_file else None,
    )  # fmt: skip
