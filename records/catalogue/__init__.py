"""The versioned record catalogue (信用信息目录): which categories exist and how each behaves.

Loaded from YAML and validated with pydantic; ../shared/DOMAIN.md §4 and §9 give the defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from records.config import StrictModel
from records.spans import SpanField

Dimension = Literal["basic", "operations", "supervision", "relations", "social"]
Polarity = Literal["positive", "neutral", "negative"]

DIMENSIONS: tuple[Dimension, ...] = ("basic", "operations", "supervision", "relations", "social")

REQUIRED_CODES = frozenset(
    {
        "registration", "annual_report", "tax_credit_grade", "admin_license", "admin_penalty",
        "admin_coercion", "spot_check", "abnormal_operation_list", "serious_dishonest_list",
        "focus_attention_list", "dishonest_judgment_debtor", "court_judgment",
        "credit_commitment", "commitment_breach", "warning_talk", "complaint", "honor",
        "red_list", "news", "third_party_signal",
    }
)  # fmt: skip
"""Codes every catalogue must define, with the meanings the rest of the service relies on."""


class Names(StrictModel):
    zh: str
    en: str


class PublicityPeriod(StrictModel):
    """From the event date: published at least `min`, at most `max` (None = open), calendar
    periods such as "3 months" or "1 year" (`records.spans`)."""

    min: SpanField | None = None
    max: SpanField | None = None

    @model_validator(mode="before")
    @classmethod
    def _days_form(cls, data: Any) -> Any:
        """Catalogues before 2026.12 gave `min_days` and `max_days`: whole days."""
        return _renamed(data, {"min_days": "min", "max_days": "max"})

    @model_validator(mode="after")
    def _ordered(self) -> PublicityPeriod:
        lo, hi = self.min, self.max
        if lo is not None and hi is not None and lo.approximate_days > hi.approximate_days:
            raise ValueError(f"min {lo} exceeds max {hi}")
        return self


def _renamed(data: Any, names: dict[str, str]) -> Any:
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for old, new in names.items():
        if old in out:
            if new in out:
                raise ValueError(f"give {new} or {old}, not both")
            out[new] = out.pop(old)
    return out


class Category(StrictModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: Names
    dimension: Dimension
    severities: tuple[str, ...] = ()
    severity_required: bool = False
    polarity: dict[str, Polarity] = Field(default_factory=dict)
    amount: Literal["none", "optional", "required"] = "none"
    amount_meaning: str | None = None
    negative_amount_allowed: bool = False
    attributes: dict[str, str] = Field(default_factory=dict)
    required_attributes: tuple[str, ...] = ()
    publicity: dict[str, PublicityPeriod]
    publicity_natural_person: SpanField | None = None
    """Records of an individual business (a natural person behind it) are public at most this
    long (DOMAIN §7: spot-check results 2 years)."""
    shared_with_public: bool = True
    repairable: bool = False
    never_repairable_early: tuple[str, ...] = ()
    unpublished_types: tuple[str, ...] = ()
    """Penalty types (attribute `penalty_types`) never published: a decision of these alone is
    not public (warnings)."""
    type_severity: dict[str, str] = Field(default_factory=dict)
    """Penalty types whose decision runs at least this severity's period (the longest applies)."""
    special_domains: tuple[str, ...] = ()
    special_domain_period: SpanField | None = None
    """Records of these domains (attribute `domain`) are public and wait before repair at least
    this long."""
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _days_form(cls, data: Any) -> Any:
        """Catalogues before 2026.12 gave these periods in whole days."""
        return _renamed(data, {"publicity_natural_person_days": "publicity_natural_person",
                               "special_domain_days": "special_domain_period"})  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> Category:
        keys = set(self.severities) | {"*"}
        for what, mapping in (("polarity", self.polarity), ("publicity", self.publicity)):
            unknown = set(mapping) - keys
            if unknown:
                raise ValueError(f"{self.code}: {what} names unknown severities {sorted(unknown)}")
        strange = sorted(set(self.type_severity.values()) - set(self.severities))
        if strange:
            raise ValueError(f"{self.code}: type_severity names unknown severities {strange}")
        if self.special_domains and self.special_domain_period is None:
            raise ValueError(f"{self.code}: special_domains without special_domain_period")
        if self.severity_required and not self.severities:
            raise ValueError(f"{self.code}: severity_required without severities")
        spans = [s for p in self.publicity.values() for s in (p.min, p.max)]
        spans += [self.special_domain_period, self.publicity_natural_person]
        units = {("months" if s.months else "") + ("days" if s.days else "")
                 for s in spans if s is not None and not s.zero}  # fmt: skip
        if len(units) > 1 or "monthsdays" in units:
            raise ValueError(
                f"{self.code}: its periods mix months and days; give them all in months and "
                "years or all in days, so that which of two is longer does not depend on the "
                "day it starts (3 months from 28 February are 89 days)"
            )
        if "*" not in self.publicity and set(self.severities) - set(self.publicity):
            missing = sorted(set(self.severities) - set(self.publicity))
            raise ValueError(f"{self.code}: no publicity period for severities {missing}")
        return self

    def publicity_for(self, severity: str | None) -> PublicityPeriod:
        """The severity's period, else the category's default ("*"), else open (no periods)."""
        if severity is not None and severity in self.publicity:
            return self.publicity[severity]
        return self.publicity.get("*", PublicityPeriod())

    def polarity_of(self, severity: str | None) -> Polarity:
        if severity is not None and severity in self.polarity:
            return self.polarity[severity]
        return self.polarity.get("*", "neutral")


class Catalogue(StrictModel):
    version: str
    categories: tuple[Category, ...]

    @field_validator("categories")
    @classmethod
    def _complete(cls, categories: tuple[Category, ...]) -> tuple[Category, ...]:
        codes = [c.code for c in categories]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate category codes {duplicates}")
        missing = sorted(REQUIRED_CODES - set(codes))
        if missing:
            raise ValueError(f"catalogue lacks required categories {missing}")
        return categories

    def __getitem__(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise KeyError(f"unknown record category {code!r}")

    def __contains__(self, code: object) -> bool:
        return any(c.code == code for c in self.categories)

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.categories]


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue file; without a path, the catalogue in force
    (`default_catalogue`)."""
    if path is None:
        return default_catalogue()
    # one stat a call (default_catalogue is asked per record in places): no path resolution
    return _loaded(os.path.abspath(path), os.stat(path).st_mtime_ns)


CATALOGUE_SETTING = "CREDSUP_CATALOGUE_PATH"


def default_catalogue() -> Catalogue:
    """The catalogue in force in this process: the file `CREDSUP_CATALOGUE_PATH` names (the
    environment, else `.env` in the working directory, as `records.settings.Settings` reads
    them), else the packaged one. Every stage asks for it here, so ingestion, features, scores,
    publicity and the API use one catalogue (a province's publicity periods included); each file
    is read once (again only when it changes)."""
    path = os.environ.get(CATALOGUE_SETTING) or _dotenv_setting(CATALOGUE_SETTING)
    if not path:
        return packaged_catalogue()
    return load_catalogue(path)


@lru_cache(maxsize=1)
def packaged_catalogue() -> Catalogue:
    """The catalogue shipped with the code (`catalogue-v1.yaml`, DOMAIN §4 and §9)."""
    text = resources.files(__package__).joinpath("catalogue-v1.yaml").read_text(encoding="utf-8")
    return Catalogue.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=8)
def _loaded(path: str, mtime_ns: int) -> Catalogue:
    return Catalogue.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def _dotenv_setting(name: str) -> str | None:
    try:
        mtime_ns = os.stat(".env").st_mtime_ns
    except OSError:
        return None
    return _dotenv_values(os.path.abspath(".env"), mtime_ns).get(name)


@lru_cache(maxsize=4)
def _dotenv_values(path: str, mtime_ns: int) -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(path))
