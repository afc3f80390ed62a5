"""Declarative mappings: a department's own export → the canonical record or entity format.

A new export needs a YAML file, not code. Each canonical field is given by exactly one of:

- ``column: NAME``        a source column (trimmed; empty → missing)
- ``value: TEXT``         a constant
- ``template: "x-{A}"``   text with ``{COLUMN}`` placeholders (``{_row}`` = 1-based data row)
- ``sql: EXPR``           a DuckDB SQL expression over the source columns (for conditions)
- ``hash_of: [NAMES]``    ``prefix`` + MD5 of those columns: a stable id for exports without one,
                          independent of row order (so re-exports stay idempotent)
- ``derive_uscc: NAME``   a deterministic valid code derived from a foreign id (real data sets
                          without codes; see `records.uscc.derive`), using the mapping's
                          ``derive`` settings

optionally followed by ``map: {source value: canonical value}`` (unmapped values pass through and
are then judged by validation), ``formats: [strptime formats]`` for dates, ``scale`` for amounts,
``type: int|float|str`` for attributes. ``attributes`` is a table of attribute name → field, or
``attributes_json: COLUMN`` for a column that already holds a JSON object. ``unpivot`` turns
several value columns of one row into one record each (e.g. three counts → three signals).

Example (../shared/data's news table)::

    kind: records
    derive: {namespace: bdci2020, region: "110000"}
    fields:
      record_id: {template: "bdci-news-{_row}"}
      uscc: {derive_uscc: id}
      category: {value: news}
      event_date: {column: public_date}
      severity: {column: positive_negtive, map: {积极: positive, 中立: neutral, 消极: negative}}
      attributes: {source_id: {column: id}}
"""

from __future__ import annotations

import codecs
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from records.config import StrictModel
from records.schema import ENTITY_COLUMNS, RECORD_COLUMNS

DEFAULT_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日",
    "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%dT%H:%M",
)  # fmt: skip
"""Dates and date-times as departments export them (Excel and WPS write 2024/1/5 8:05).
`%Y%m%d` reads exactly 8 digits, and a UTC offset (`Z`, `+08:00`) is moved to China time
before the date is taken (records.ingest._date_sql)."""


class MappingError(ValueError):
    """A mapping file that cannot be used, with the file and the problem in one line."""


def check_date_format(fmt: str) -> str:
    """The strptime format if DuckDB understands it (ingestion parses dates with DuckDB)."""
    problem = None
    with duckdb.connect() as con:
        try:
            con.execute("SELECT try_strptime('2000-01-01', '" + fmt.replace("'", "''") + "')")
        except duckdb.Error as exc:
            problem = str(exc).split(": ", 1)[-1]
    if problem is not None:  # raised outside the handler: no DuckDB exception kept alive
        raise ValueError(f"date format {fmt!r} is not a strptime format: {problem}")
    return fmt


def check_row_expression(sql: str) -> str:
    """A mapping's `sql:` is one scalar expression over the row's columns, parsed by DuckDB
    itself: no subquery, no FROM, no second statement. A mapping is not code: it must not read
    files (`read_text`), the store or anything else on the host while records are ingested."""
    problem = None
    with duckdb.connect() as con:
        row = con.execute("SELECT json_serialize_sql(?)", [f"SELECT ({sql})"]).fetchone()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        problem = str(tree.get("error_message", "it does not parse")).split("\n")[0]
    else:
        statements: list[dict[str, Any]] = tree.get("statements") or []
        node: dict[str, Any] = statements[0].get("node", {}) if len(statements) == 1 else {}
        if (
            node.get("type") != "SELECT_NODE"
            or len(node.get("select_list") or []) != 1
            or (node.get("from_table") or {}).get("type") != "EMPTY"
            or any(node.get(k) for k in _CLAUSES)
            or (node.get("cte_map") or {}).get("map")
            or _has_subquery(node)
        ):
            problem = "it must be one expression over the row's columns (no SELECT, FROM or ;)"
        elif called := sorted(_functions(node) & HOST_FUNCTIONS):
            problem = f"it may not call {', '.join(called)} (it reads the host, not the row)"
    if problem is not None:
        raise ValueError(f"sql {sql!r}: {problem}")
    return sql


_CLAUSES = ("where_clause", "having", "qualify", "sample", "group_expressions", "modifiers")
HOST_FUNCTIONS = frozenset({
    "current_setting", "getenv", "getvariable", "current_database", "current_schema",
    "current_schemas", "current_user", "session_user", "user", "version", "pragma_version",
    "duckdb_settings", "read_text", "read_blob", "glob", "sniff_csv",
})  # fmt: skip
"""Scalar functions that read the process, the host or its files rather than the row."""


def _functions(node: object) -> set[str]:
    if isinstance(node, dict):
        name = str(node.get("function_name", "")).lower()
        own = {name} if node.get("class") == "FUNCTION" else set()
        return own.union(*(_functions(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_functions(v) for v in node))
    return set()


def _has_subquery(node: object) -> bool:
    if isinstance(node, dict):
        return node.get("class") == "SUBQUERY" or any(_has_subquery(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_subquery(v) for v in node)
    return False


class FieldSpec(StrictModel):
    column: str | None = None
    value: str | None = None
    template: str | None = None
    sql: str | None = None
    derive_uscc: str | None = None
    hash_of: tuple[str, ...] | None = None
    prefix: str = ""
    map: dict[str, str] | None = None
    formats: tuple[str, ...] | None = None
    scale: float | None = None
    type: Literal["str", "int", "float"] = "str"

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return tuple(check_date_format(f) for f in formats) if formats else formats

    @field_validator("sql")
    @classmethod
    def _row_expression(cls, sql: str | None) -> str | None:
        return None if sql is None else check_row_expression(sql)

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [
            k for k in ("column", "value", "template", "sql", "derive_uscc", "hash_of")
            if getattr(self, k) is not None
        ]  # fmt: skip
        if len(given) != 1:
            raise ValueError(
                "give exactly one of column, value, template, sql, derive_uscc, hash_of; "
                f"got {given or 'none'}"
            )
        return self

    def source_columns(self) -> list[str]:
        if self.column is not None:
            return [self.column]
        if self.derive_uscc is not None:
            return [self.derive_uscc]
        if self.hash_of is not None:
            return list(self.hash_of)
        if self.template is not None:
            return [c for c in re.findall(r"{([^{}]+)}", self.template) if c != "_row"]
        return []


class DeriveSettings(StrictModel):
    namespace: str
    region: str = "110000"
    kind: str = "91"


class Unpivot(StrictModel):
    """One output row per non-empty column of `columns` (column → name)."""

    columns: dict[str, str]
    name_column: str = "_name"
    value_column: str = "_value"


class Mapping(StrictModel):
    kind: Literal["records", "entities", "events"] = "records"
    description: str | None = None
    encoding: str = "utf-8"
    sheet: str | None = None
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    derive: DeriveSettings | None = None
    unpivot: Unpivot | None = None
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    attributes: dict[str, FieldSpec] = Field(default_factory=dict)
    attributes_json: str | None = None
    _origin: str = PrivateAttr(default="the mapping")
    """Where it was loaded from, for error messages ("mapping path/to/m.yaml")."""

    @property
    def origin(self) -> str:
        return self._origin

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r} (e.g. utf-8, gbk, gb18030)") from None
        return encoding

    @field_validator("date_formats")
    @classmethod
    def _known_date_formats(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        if formats == DEFAULT_DATE_FORMATS:
            return formats
        return tuple(check_date_format(f) for f in formats)

    @model_validator(mode="after")
    def _known_fields(self) -> Mapping:
        allowed = set(RECORD_COLUMNS if self.kind == "records" else ENTITY_COLUMNS)
        allowed |= {"recorded_date"}
        unknown = set(self.fields) - allowed
        if unknown:
            raise ValueError(
                f"unknown {self.kind} fields {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "attributes" in self.fields:
            raise ValueError("give attributes as a table under `attributes:` or `attributes_json`")
        if self.attributes and self.attributes_json:
            raise ValueError("give either attributes or attributes_json, not both")
        uses_derive = any(f.derive_uscc for f in self.fields.values())
        if uses_derive and self.derive is None:
            raise ValueError("derive_uscc needs a `derive: {namespace: ...}` section")
        return self

    def source_columns(self) -> set[str]:
        cols: set[str] = set()
        for spec in [*self.fields.values(), *self.attributes.values()]:
            cols.update(spec.source_columns())
        if self.attributes_json:
            cols.add(self.attributes_json)
        if self.unpivot:
            cols.update(self.unpivot.columns)
            cols -= {self.unpivot.name_column, self.unpivot.value_column}
        return cols


def identity_mapping(kind: str, columns: list[str]) -> Mapping:
    """The mapping of a file already in the canonical format: each canonical column it has."""
    canonical = RECORD_COLUMNS if kind == "records" else ENTITY_COLUMNS
    present = set(columns)
    fields = {
        c: FieldSpec(column=c)
        for c in (*canonical, "recorded_date")
        if c in present and c != "attributes"
    }
    return Mapping(
        kind=kind,
        fields=fields,
        attributes_json="attributes" if "attributes" in present and kind == "records" else None,
    )


def packaged_mappings() -> list[str]:
    """Names of the mappings shipped with the package (records/mappings/*.yaml)."""
    folder = resources.files("records").joinpath("mappings")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_mapping(name_or_path: str | Path) -> Mapping:
    """Load a mapping from a YAML path, or by the name of a packaged mapping.

    Raises FileNotFoundError for an unknown name, and MappingError (one line naming the file)
    for a file that is not YAML or not a valid mapping.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text(encoding="utf-8")
        where = str(path)
    elif str(name_or_path) in packaged_mappings():
        res = resources.files("records").joinpath("mappings", f"{name_or_path}.yaml")
        text = res.read_text(encoding="utf-8")
        where = f"packaged mapping {name_or_path}"
    else:
        raise FileNotFoundError(
            f"no mapping file {str(name_or_path)!r}; packaged mappings: "
            + ", ".join(packaged_mappings())
        )
    try:
        mapping = Mapping.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MappingError(f"mapping {where}: not valid YAML{at}: {problem}") from None
    except ValidationError as exc:
        raise MappingError(f"mapping {where}: {validation_problems(exc)}") from None
    mapping._origin = f"mapping {where}"
    return mapping


def validation_problems(exc: ValidationError) -> str:
    """A pydantic error as one line: `where: what` for each problem."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
