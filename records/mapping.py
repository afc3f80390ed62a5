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

import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from records.config import StrictModel
from records.schema import ENTITY_COLUMNS, RECORD_COLUMNS

DEFAULT_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日",
    "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
)  # fmt: skip


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
    """Load a mapping from a YAML path, or by the name of a packaged mapping."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text(encoding="utf-8")
    elif str(name_or_path) in packaged_mappings():
        res = resources.files("records").joinpath("mappings", f"{name_or_path}.yaml")
        text = res.read_text(encoding="utf-8")
    else:
        raise FileNotFoundError(
            f"no mapping file {str(name_or_path)!r}; packaged mappings: "
            + ", ".join(packaged_mappings())
        )
    return Mapping.model_validate(yaml.safe_load(text))
