"""Response models (the OpenAPI contract); stored documents follow them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.specs import by_name
from serving.load import LIST_CODES, LIST_FLAGS

VETO_FEATURES = sorted(n for n, s in by_name().items() if getattr(s, "direction", 0) == 1)
"""What `evaluation.vetoes` may name: a scorecard veto is a risk-raising feature (the default
method's: on_serious_dishonest_list, on_abnormal_list, on_dishonest_debtor_list)."""

ListName = Annotated[
    str,
    Field(
        json_schema_extra={"enum": list(LIST_FLAGS.values())},
        description="A list the company is on; its catalogue code (`/v1/public/lists`, the "
        "public page): " + ", ".join(f"{k} = {v}" for k, v in LIST_CODES.items()),
    ),
]
VetoName = Annotated[
    str,
    Field(
        json_schema_extra={"enum": VETO_FEATURES},
        description="The feature whose veto capped the grade (the list features: "
        "on_serious_dishonest_list = serious_dishonest_list, on_abnormal_list = "
        "abnormal_operation_list, on_dishonest_debtor_list = dishonest_judgment_debtor, "
        "on_focus_list = focus_attention_list)",
    ),
]


TierLetter = Literal["A", "B", "C", "D"]


class Reason(BaseModel):
    code: str
    kind: Literal["veto", "default", "model"] = Field(
        description="veto: a legal veto rule; default: a default (no history, only negative "
        "history); model: a feature's contribution to the risk model"
    )
    contribution: float | None = Field(
        default=None,
        description="The feature's contribution to the model's log-odds of risk (model "
        "reasons; positive raises the risk)",
    )
    zh: str
    en: str
    raised: bool | None = None
    evidence: dict[str, Any] | None = None


class Deduction(BaseModel):
    feature: str = Field(description="The scorecard rule's feature")
    points: float = Field(description="Points it deducts (negative)")
    records: list[str] | None = Field(
        default=None,
        description="The record ids behind it; absent for a department where the records are "
        "of a category the catalogue does not share (as a tier reason's evidence)",
    )


class Evaluation(BaseModel):
    score: float
    grade: str
    points: dict[str, float | None] | None = None
    vetoes: list[VetoName] | None = None
    method_version: str | None = None
    top_deductions: list[Deduction] | None = Field(
        default=None,
        description="The three largest deductions with the records behind them (full view; "
        "null in documents loaded before they were served and in a past point)",
    )


class Tier(BaseModel):
    tier: TierLetter
    model_tier: TierLetter | None = None
    probability: float
    reasons: list[Reason] | None = Field(
        description="Null in a past point (`?on=`): reasons are served with the current document "
        "only (`not_served` names them), never today's under a past date"
    )
    model: str | None = None
    model_version: str | None = None
    spec_version: str | None = None


class Flags(BaseModel):
    objection_open: bool = Field(
        description="A record this caller may see is under an open objection now (read live at "
        "each look-up; the public view: public records only)"
    )
    lists: list[ListName] | None = Field(
        default=None,
        description="The lists the company is on as of `as_of` (the red list too); null in a "
        "past point (`?on=`)",
    )


class Company(BaseModel):
    """One company's public credit evaluation, supervision tier and flags (what the caller's
    role may see: the public view has no tier and masks an individual business's name)."""

    uscc: str
    name: str | None = None
    entity_type: str | None = None
    region: str | None = None
    industry: str | None = None
    as_of: date = Field(description="The date of the evaluation and tier served")
    status: Literal["active", "suspended", "revoked", "deregistered"] | None = Field(
        default=None,
        description="Registration status on the as-of date: active, suspended, revoked or "
        "deregistered (null in documents loaded before it was served)",
    )
    evaluation: Evaluation | None = None
    tier: Tier | None = None
    not_tiered: Literal["inactive", "no_tier"] | None = Field(
        default=None,
        description="Why `tier` is null (full view): inactive (the registration is not active on "
        "the as-of date: only active companies are tiered) or no_tier (none was loaded)",
    )
    flags: Flags
    on: date | None = Field(
        default=None,
        description="The day asked for (`?on=`): this is the evaluation and tier in force that "
        "day, the latest published on or before it (`as_of` is its date); absent from the "
        "current document",
    )
    source: Literal["batch", "rescore"] | None = Field(
        default=None,
        description="With `?on=`: where that point came from (batch: the monthly batch; "
        "rescore: one company re-scored on demand)",
    )
    not_served: list[str] | None = Field(
        default=None,
        description="With `?on=`, for a point before the current document: what is served with "
        "the current document only and so is absent or null here (e.g. `tier.reasons`, "
        "`evaluation.points`, `flags.lists`)",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # `{"as_of": …}` was dropped without a word

    usccs: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        json_schema_extra={"maxItems": 10_000},  # checked by the route: 413 `too_large`
        description="Up to 10,000 codes (100 for public and company keys): more is 413 `too_large`",
    )


class Invalid(BaseModel):
    uscc: str
    message: str


class BatchResponse(BaseModel):
    companies: list[Company]
    not_found: list[str] = Field(
        description="Valid codes without a document (for `?on=`: none published by that day)"
    )
    not_yet_scored: list[str] = Field(
        default_factory=list,
        description="Of `not_found`, the companies registered since the last batch: scored at "
        "the next one (a single look-up answers them 404 `not_yet_scored`)",
    )
    invalid: list[Invalid]


class HistoryPoint(BaseModel):
    as_of: date
    tier: TierLetter | None = None
    probability: float | None = Field(
        default=None, description="Rounded to 6 places, as the company document has it"
    )
    score: float | None = None
    grade: str | None = None
    model_version: str | None = None
    method_version: str | None = None
    source: Literal["batch", "rescore"] | None = Field(
        default=None,
        description="batch: the monthly batch's result; rescore: one company re-scored on demand",
    )


class History(BaseModel):
    uscc: str
    history: list[HistoryPoint]
    total: int = Field(description="Points in all (the page is `history`)")
    next: int | None = Field(description="The `offset` of the next page; null: the last")


class RecordView(BaseModel):
    record_id: str
    category: str
    event_date: date
    recorded_date: date | None = None
    """The day the record became known here (what every as-of question reads)."""
    source_recorded_date: date | None = None
    """The department's own recorded date, when the record arrived after it (late delivery)."""
    source_dept: str | None = None
    severity: str | None = None
    amount: float | None = None
    attributes: dict[str, Any] | None = None
    public_until: date | None = None
    """First day it is no longer public: for a public record the end of its period (or an
    earlier stop); for one no longer public (`public: false`: expired, repaired, withdrawn,
    stopped publishing, past a natural person's period) the day its publicity ended. Null: never
    public (a warning, a category the public is not shown) or open-ended. The name the public
    page (`/v1/public/companies/{uscc}`) uses."""
    publicity_end: date | None = Field(
        default=None, deprecated=True, description="Deprecated: the same as `public_until`."
    )
    objection_open: bool
    corrected: bool = False
    """Shown in its corrected form (a correction is in force: an objection decided `corrected`,
    or the department's own); not for information only added (`supplemented`)."""
    supplemented: bool = False
    """Information was added to it (an objection decided `supplemented`, 已补充): its
    attributes carry it; severity and amount are as recorded unless also `corrected`."""
    public: bool | None = None
    """Public on the day (authorities' view; the public sees only public records)."""
    counts: bool | None = None
    """Counts in features, score and tier on the day (authorities' view)."""


class Records(BaseModel):
    uscc: str
    on: date
    records: list[RecordView]
    total: int = Field(description="Records in all that pass the filters (the page is `records`)")
    next: int | None = Field(description="The `offset` of the next page; null: the last")


class SummaryRow(BaseModel):
    group: str | None
    A: int
    B: int
    C: int
    D: int
    total: int


class Summary(BaseModel):
    as_of: date | None
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
