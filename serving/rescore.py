"""Re-scoring one company on demand: after a credit repair, a correction or a list change, its
public credit evaluation and supervision tier are recomputed at once instead of at the next batch.

`rescore_company` computes for one company exactly what the batch computes for every company
(`credsup score`, `credsup tier`, `serving.load.load_results`), with the same library code:
point-in-time features (`features.builder.build_features`); the scorecard method the province
publishes with (that of the latest batch loaded, with its scale and cut-offs, as `credsup
score` recorded it; the packaged one before any batch) and the records behind its deductions;
the tier model with its reasons and their evidence (active companies only, as
`models.batch.tier_companies`); and the documents of `serving.load`. It then writes that
company's `companies` row (only if it holds no later result) and its `company_history` row for
the as-of date, in one transaction. Other companies and other as-of dates are never touched,
so what was published for an earlier date stays as it was: a batch's result for a day before
today is never replaced (a re-score that agrees with it writes nothing; one that does not is
refused: the batch restates a published day, `credsup score --restate`). Without a tier model
nothing is re-scored (a score without a tier would replace the served tier).

Re-scores of one company take turns from reading the store to the commit (a PostgreSQL
transaction advisory lock on the one connection a re-score uses, a lock on the company's byte of
a file beside SQLite): two at once (a filing and a decision) once wrote in the wrong order, and
the one that had read the store before the filing won.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from features import evidence
from features.builder import build_features
from features.results import Results
from features.scorecard import Scorecard, ScorecardConfig, load_config
from features.specs import spec_version
from models.batch import tier_features
from models.bundle import SpecMismatch, TierModel
from models.published import MODEL_NAME
from records.schema import VERSION_ORDER
from records.store import Store
from records.workdays import china_today
from serving.db import companies, company_history
from serving.load import (
    LIST_FLAGS,
    _clean,
    _latest,
    _upsert,
    history_row,
    served_row,
    with_documents,
)
from serving.state import ServiceState

TIER_REASONS = 3
"""Reasons per company, as `credsup tier` writes them (its `--reasons` default)."""

FLAGS = ("objection_open", *LIST_FLAGS)
"""The feature columns `serving.load` reads into the documents' flags."""


class RescoreRefused(ValueError):
    """A company, date or method that cannot be re-scored; the message says why."""


class UnknownCompany(RescoreRefused):
    """No entity of that code registered by the as-of date (natural persons never are)."""


class MethodMismatch(RescoreRefused):
    """The method the province publishes with cannot be applied (its configuration was not
    recorded), or the batch evaluated that date with another method."""


class NoModel(RescoreRefused):
    """No tier model is loaded: a score without its tier would replace the served tier."""


class PublishedDay(RescoreRefused):
    """A day before today whose batch result differs from the re-score: the batch restates it."""


RESCORE_LOCK = 321_002_016
"""The PostgreSQL advisory lock class of re-scores (the second key is the code's hash)."""

COMPARED = ("tier", "probability", "score", "grade", "model_version", "method_version")
"""What a re-score of a published day must reproduce for the batch's result to stand."""


def rescore_company(
    engine: Engine,
    store: Store,
    data_dir: Path,
    model: TierModel | None,
    model_version: str | None,
    uscc: str,
    as_of: date,
    *,
    model_name: str = MODEL_NAME,
) -> dict[str, Any]:
    """Recompute one company's evaluation and tier as of `as_of` and store them for serving.

    Returns `uscc`, `as_of`, `before` (the served score, grade, tier and their as-of date;
    None when the company was not served), `after` (score, grade, tier, probability),
    `model_version`, `current` (whether the served row now holds this result: not when it
    already held a later one) and `notes`. Without a model the tier is left out (None).
    """
    if model is None:
        raise NoModel(
            "no tier model is loaded: nothing was re-scored (a score without a tier would "
            "replace the served tier); the next batch catches up"
        )
    if model_version is None:
        raise ValueError("a tier model needs its registered version (model_version)")
    today = china_today()
    if as_of > today:
        raise RescoreRefused(f"as-of date {as_of} is after today: records are not known yet")
    # re-scores of the company take turns from reading the store to the commit: on SQLite a
    # lock on the company's byte of a file (released after the commit), on PostgreSQL a
    # transaction lock on the one connection the re-score uses (released by commit or rollback)
    with _file_lock(engine, data_dir, uscc), engine.begin() as con:
        if engine.dialect.name == "postgresql":
            con.execute(sa.text("SELECT pg_advisory_xact_lock(:c, hashtext(:u))"),
                        {"c": RESCORE_LOCK, "u": uscc})  # fmt: skip
        return _rescore(con, engine, store, data_dir, model, model_version, uscc, as_of, today,
                        model_name)  # fmt: skip


def _rescore(
    con: Connection,
    engine: Engine,
    store: Store,
    data_dir: Path,
    model: TierModel,
    model_version: str,
    uscc: str,
    as_of: date,
    today: date,
    model_name: str,
) -> dict[str, Any]:
    entity = _entity(store, uscc, as_of)
    card = _published_scorecard(con, data_dir, as_of)
    _check_method(data_dir, as_of, card.method_version)
    features = build_features(store, as_of, [uscc])
    scores = _evaluation(store, card, features)
    notes: list[str] = []
    tiers = _tiers(store, model, features, model_name, model_version)
    if tiers is None:
        notes.append(f"not active on {as_of}: the batch tiers active companies only")
    row = _row(entity, scores, tiers, features)
    served = served_row(with_documents(row, as_of), as_of)
    history = history_row(row, as_of, source="rescore")
    before = _served(con, uscc)
    published = _published(con, uscc, as_of) if as_of < today else None
    if published is None:
        con.execute(_upsert(engine), [served])
        con.execute(_history_upsert(engine), [history])
    elif any(published[k] != history[k] for k in COMPARED):
        differ = ", ".join(f"{k} {published[k]} → {history[k]}" for k in COMPARED
                           if published[k] != history[k])  # fmt: skip
        raise PublishedDay(
            f"the batch published {as_of} for {uscc} and the re-score differs ({differ}): "
            "a published day is restated by the batch (`credsup score --restate`), "
            "a change decided now is re-scored as of today"
        )
    else:
        notes.append(f"the batch's result for {as_of} stands: the re-score agrees with it")
    current = before is None or before["as_of"] <= as_of
    if before is not None and not current:
        notes.append(
            f"the served result is as of {before['as_of']} (later): it is kept; "
            f"the result as of {as_of} was added to the history"
        )
    probability = _clean(row.get("probability"))
    return {
        "uscc": uscc,
        "as_of": as_of,
        "before": before,
        "after": {
            "score": float(row["score"]),
            "grade": str(row["grade"]),
            "tier": _clean(row.get("tier")),
            "probability": None if probability is None else round(float(probability), 6),
        },
        "model_version": history["model_version"],
        "current": current,
        "notes": notes,
    }


def rescore_today(
    engine: Engine,
    store: Store,
    data_dir: Path,
    model: TierModel | None,
    model_version: str | None,
    uscc: str,
    *,
    model_name: str = MODEL_NAME,
) -> dict[str, Any]:
    """Re-score the company today after a repair, a correction, an objection or a list change,
    so that it does not wait for the next batch. A refusal (or a model of another feature spec)
    is returned as `{"error": ...}`, not raised: the change is committed already and stands, an
    error response would only invite a conflicting retry, and the next batch catches up."""
    try:
        return rescore_company(engine, store, data_dir, model, model_version, uscc, china_today(),
                               model_name=model_name)  # fmt: skip
    except (RescoreRefused, SpecMismatch) as exc:
        return {"error": str(exc)}


def rescore_served(state: ServiceState, uscc: str) -> dict[str, Any]:
    """`rescore_today` with the model the service is serving (model and version read as one
    pair). The score and tier it returns go back to the caller in the answer of the step that
    moved them, which that step's route logs (`serving.case_audit`: the caller's purpose and
    the status answered)."""
    model, version = state.slot.current(state.models)
    return rescore_today(state.engine, state.store, state.settings.data_dir, model, version, uscc,
                         model_name=state.models.name)  # fmt: skip


def _entity(store: Store, uscc: str, as_of: date) -> pd.DataFrame:
    """The entity facts in force on `as_of` (of the versions known by then, the newest by the
    department's date), as
    `serving.load` reads them (`records.schema.version_order`)."""
    with store.connect() as con:
        found = con.execute(
            "SELECT uscc, "
            f"arg_max(name, {VERSION_ORDER}) AS name, "
            f"arg_max(entity_type, {VERSION_ORDER}) AS entity_type, "
            f"arg_max(region, {VERSION_ORDER}) AS region, "
            f"arg_max(industry, {VERSION_ORDER}) AS industry, "
            f"arg_max(status, {VERSION_ORDER}) AS status "
            f"FROM {store.scan('entities', uscc)} WHERE uscc = ? AND recorded_date <= ? "
            "GROUP BY uscc",
            [uscc, as_of],
        ).df()
    if found.empty:
        raise UnknownCompany(
            f"{uscc} is not an entity registered by {as_of}: only registered market entities "
            "are evaluated and tiered (natural persons never are)"
        )
    return found


def _published_scorecard(con: Connection, data_dir: Path, as_of: date) -> Scorecard:
    """The scorecard of the latest batch loaded up to `as_of` (its scale and cut-offs: a
    province grading 优/良/中/差 keeps doing so), from the configuration `credsup score` recorded
    for its method version; the packaged scorecard when no batch was loaded yet."""
    packaged = Scorecard(load_config(None, None))
    method = con.execute(
        sa.select(company_history.c.method_version)
        .where(company_history.c.source == "batch", company_history.c.as_of <= as_of,
               company_history.c.method_version.is_not(None))
        .order_by(company_history.c.as_of.desc()).limit(1)
    ).scalar_one_or_none()  # fmt: skip
    if method is None or method == packaged.method_version:
        return packaged
    config = Results(data_dir).method(method)
    if config is None:
        raise MethodMismatch(
            f"the batch loaded last evaluated with method {method}, whose configuration is not "
            "recorded (scored before methods were kept): re-run `credsup score` with that "
            "scale or config, then re-score"
        )
    card = Scorecard(ScorecardConfig.model_validate(config))
    if card.method_version != method:
        raise MethodMismatch(
            f"the configuration recorded for method {method} now gives {card.method_version} "
            "(the feature specs changed): re-run the batch"
        )
    return card


def _check_method(data_dir: Path, as_of: date, method_version: str) -> None:
    """Refuse to mix methods on one date: a date the batch evaluated with another method than
    the one applied here (`credsup score --scale/--config` since) is refused."""
    day = Path(data_dir) / "results" / "scores" / f"as_of={as_of.isoformat()}"
    batch = _latest(day, None)  # the file `serving.load` loads for that date
    if batch is not None and batch.stem != method_version:
        raise MethodMismatch(
            f"the batch evaluated {as_of} with method {batch.stem}, re-scoring applies the "
            f"published method ({method_version}): re-run the batch for that date instead"
        )


def _evaluation(store: Store, card: Scorecard, features: pa.Table) -> pa.Table:
    """The evaluation as `credsup score` stores it: scores, the records behind the largest
    deductions, the spec and method versions."""
    scored = evidence.with_evidence(store, card.score(features))
    n = scored.num_rows
    scored = scored.append_column("spec_version", pa.array([spec_version()] * n))
    return scored.append_column("method_version", pa.array([card.method_version] * n))


def _tiers(
    store: Store, model: TierModel, features: pa.Table, name: str, version: str
) -> pa.Table | None:
    """The tier as `models.batch.tier_companies` computes it for the batch (active companies
    only, reasons with their evidence); None when the company is not active."""
    active = features.column("active").to_pylist()
    if not any((a or 0) > 0 for a in active):
        return None
    return tier_features(store, model, features, name, version, reasons=TIER_REASONS)


def _row(
    entity: pd.DataFrame, scores: pa.Table, tiers: pa.Table | None, features: pa.Table
) -> dict[str, Any]:
    """The company's row as `serving.load.build_documents` assembles it from the batch files."""
    frame = entity.merge(scores.to_pandas(), on="uscc", how="left", suffixes=("", "_score"))
    if tiers is not None:
        frame = frame.merge(tiers.to_pandas(), on="uscc", how="left", suffixes=("", "_tier"))
    flags = features.select(["uscc", *FLAGS]).to_pandas()
    frame = frame.merge(flags, on="uscc", how="left")
    return {str(k): v for k, v in frame.to_dict("records")[0].items()}


@contextlib.contextmanager
def _file_lock(engine: Engine, data_dir: Path, uscc: str) -> Iterator[None]:
    """On SQLite, re-scores of `uscc` take turns on one byte of a file beside the data (every
    process on the machine; other companies' bytes are free). PostgreSQL needs none: the
    re-score takes a transaction lock on its own connection."""
    if engine.dialect.name == "postgresql":
        yield
        return
    byte = int.from_bytes(hashlib.sha256(uscc.encode()).digest()[:4], "big")
    # a byte-range lock is the process's: threads of one process take turns on a lock of their own
    with _THREAD_LOCKS[byte % len(_THREAD_LOCKS)]:
        lock = _lock_file(Path(data_dir) / "run" / "rescore.lock")
        fcntl.lockf(lock, fcntl.LOCK_EX, 1, byte)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN, 1, byte)


_THREAD_LOCKS = tuple(threading.Lock() for _ in range(256))
"""`_file_lock`'s turns among the threads of this process (by the company's byte)."""

_LOCK_FILES: dict[Path, BinaryIO] = {}
_LOCK_FILES_LOCK = threading.Lock()


def _lock_file(path: Path) -> BinaryIO:
    """The process's one open descriptor of the lock file, never closed: closing any
    descriptor of a file drops every byte-range lock the process holds on it (POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path = path.parent.resolve() / path.name
    with _LOCK_FILES_LOCK:
        if path not in _LOCK_FILES:
            _LOCK_FILES[path] = open(path, "a+b")  # noqa: SIM115 - kept open on purpose
        return _LOCK_FILES[path]


def _published(con: Connection, uscc: str, as_of: date) -> dict[str, Any] | None:
    """The batch's history row of the company for `as_of`, if the batch published one."""
    found = con.execute(
        sa.select(*(company_history.c[k] for k in COMPARED)).where(
            company_history.c.uscc == uscc, company_history.c.as_of == as_of,
            company_history.c.source == "batch",
        )
    ).first()  # fmt: skip
    return None if found is None else dict(found._mapping)


def _served(con: Connection, uscc: str) -> dict[str, Any] | None:
    """The company's served score, grade and tier (and their date), locked until commit."""
    found = con.execute(
        sa.select(companies.c.as_of, companies.c.tier, companies.c.grade, companies.c.full_doc)
        .where(companies.c.uscc == uscc)
        .with_for_update()
    ).first()
    if found is None:
        return None
    evaluation = json.loads(found.full_doc).get("evaluation") or {}
    return {
        "as_of": found.as_of,
        "score": evaluation.get("score"),
        "grade": found.grade,
        "tier": found.tier,
    }


def _history_upsert(engine: Engine) -> Any:
    """Insert the company's history row for the date, or replace it."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt: Any = (
        postgresql.insert(company_history)
        if engine.dialect.name == "postgresql"
        else sqlite.insert(company_history)
    )
    keys = {"uscc", "as_of"}
    return stmt.on_conflict_do_update(
        index_elements=[company_history.c.uscc, company_history.c.as_of],
        set_={c.name: stmt.excluded[c.name] for c in company_history.c if c.name not in keys},
    )
