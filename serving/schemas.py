"""Response models (the OpenAPI contract); stored documents follow them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field


class Reason(BaseModel):
    code: str
    kind: str = Field(description="veto | default | model")
    contribution: float | None = None
    zh: str
    en: str
    raised: bool | None = None
    evidence: dict[str, Any] | None = None


class Evaluation(BaseModel):
    score: float
    grade: str
    points: dict[str, float | None] | None = None
    vetoes: list[str] | None = None
    method_version: str | None = None


class Tier(BaseModel):
    tier: str
    model_tier: str | None = None
    probability: float
    reasons: list[Reason]
    model: str | None = None
    model_version: str | None = None
    spec_version: str | None = None


class Flags(BaseModel):
    objection_open: bool = Field(
        description="A record this caller may see is under an open objection now (read live at "
        "each look-up; the public view: public records only)"
    )
    lists: list[str] | None = None


class Company(BaseModel):
    """One company's public credit evaluation, supervision tier and flags (what the caller's
    role may see: the public view has no tier and masks an individual business's name)."""

    uscc: str
    name: str | None = None
    entity_type: str | None = None
    region: str | None = None
    industry: str | None = None
    as_of: str
    status: str | None = Field(
        default=None,
        description="Registration status on the as-of date: active, suspended, revoked or "
        "deregistered (null in documents loaded before it was served)",
    )
    evaluation: Evaluation | None = None
    tier: Tier | None = None
    not_tiered: str | None = Field(
        default=None,
        description="Why `tier` is null (full view): inactive (the registration is not active on "
        "the as-of date: only active companies are tiered) or no_tier (none was loaded)",
    )
    flags: Flags


class BatchRequest(BaseModel):
    usccs: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=10_000)


class Invalid(BaseModel):
    uscc: str
    message: str


class BatchResponse(BaseModel):
    companies: list[Company]
    not_found: list[str]
    invalid: list[Invalid]


class HistoryPoint(BaseModel):
    as_of: str
    tier: str | None = None
    probability: float | None = Field(
        default=None, description="Rounded to 6 places, as the company document has it"
    )
    score: float | None = None
    grade: str | None = None
    model_version: str | None = None
    method_version: str | None = None
    source: str | None = Field(
        default=None,
        description="batch: the monthly batch's result; rescore: one company re-scored on demand",
    )


class History(BaseModel):
    uscc: str
    history: list[HistoryPoint]


class RecordView(BaseModel):
    record_id: str
    category: str
    event_date: str
    recorded_date: str | None = None
    """The day the record became known here (what every as-of question reads)."""
    source_recorded_date: str | None = None
    """The department's own recorded date, when the record arrived after it (late delivery)."""
    source_dept: str | None = None
    severity: str | None = None
    amount: float | None = None
    attributes: dict[str, Any] | None = None
    public_until: str | None = None
    """First day it is no longer public: for a public record the end of its period (or an
    earlier stop); for one no longer public (`public: false`: expired, repaired, withdrawn,
    stopped publishing, past a natural person's period) the day its publicity ended. Null: never
    public (a warning, a category the public is not shown) or open-ended. The name the public
    page (`/v1/public/companies/{uscc}`) uses."""
    publicity_end: str | None = Field(
        default=None, deprecated=True, description="Deprecated: the same as `public_until`."
    )
    objection_open: bool
    corrected: bool = False
    """Shown in its corrected form (an objection's correction is in force)."""
    public: bool | None = None
    """Public on the day (authorities' view; the public sees only public records)."""
    counts: bool | None = None
    """Counts in features, score and tier on the day (authorities' view)."""


class Records(BaseModel):
    uscc: str
    on: str
    records: list[RecordView]


class SummaryRow(BaseModel):
    group: str | None
    A: int
    B: int
    C: int
    D: int
    total: int


class Summary(BaseModel):
    as_of: str | None
    by: str
    rows: list[SummaryRow]


class AuditEntry(BaseModel):
    id: int
    at: str
    key_id: int
    role: str
    department: str | None = None
    uscc: str | None = None
    endpoint: str
    purpose: str | None = None
    status: int
    detail: str | None = None
    """What else chose what was read: the query's parameters (`on=…`), a malformed code."""


class AuditPage(BaseModel):
    entries: list[AuditEntry]


class RefusedAuditEntry(BaseModel):
    refused_at: str | None
    """When the database refused the row (UTC)."""
    reason: str
    """The database's reason."""
    row: dict[str, Any]
    """The audit row as it was to be written (control characters kept, JSON-escaped)."""
    acknowledged: bool


class RefusedAuditPage(BaseModel):
    open: int
    """Entries not yet acknowledged, and rows not filed: the service is not ready while there
    are any."""
    entries: list[RefusedAuditEntry]
    unfiled: int = 0
    """Refused rows the quarantine could not take either (its directory not writable): in the
    service log only; the service is not ready until it is restarted."""


class ReloadResult(BaseModel):
    loaded: bool
    version: str | None = None
    changed: bool | None = None
    error: str | None = None
    serving: str | None = None


class Readiness(BaseModel):
    ready: bool
    database: str
    store: str
    model: dict[str, Any]
    audit_backlog: int
    audit_refused: int = 0
    """Audit rows the database refused and nobody has acknowledged yet (in the audit quarantine,
    `credsup audit refused`): not ready until they are (`credsup audit acknowledge`)."""
