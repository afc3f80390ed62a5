"""Company look-ups: evaluation and tier, batch, history, records. Every read is audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route
from starlette.types import Scope

from records import publicity
from records.catalogue import default_catalogue
from records.publicity import records_on
from records.workdays import china_today
from serving.auth import FULL_VIEW, HISTORY, Caller
from serving.db import companies, company_history
from serving.deps import (
    CallerDep,
    PurposeHeader,
    StateDep,
    get_caller,
    purpose_of,
    require,
    valid_code,
)
from serving.errors import ApiError, ErrorBody
from serving.load import mask_name, shown_attributes
from serving.lookup import (
    department_view,
    disputed_on,
    may_withhold,
    objection_flags,
    registered_entity,
)
from serving.schemas import BatchRequest, BatchResponse, Company, History, Records
from serving.state import ServiceState

router = APIRouter(prefix="/v1", tags=["companies"])
USCC_REASONS = ("length", "charset", "region", "authority", "category", "org_check", "check",
                "resident_id", "type")  # fmt: skip
"""The reasons of `records.uscc.InvalidUSCC`: the 422 code is `invalid_uscc:<reason>`."""

KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "`purpose_required`: an admin, regulator, analyst "
          "or department key sent no `X-Purpose` where the route requires one; "
          "`bad_request`: the request lacks what the route needs (the message says what)"},
    401: {"model": ErrorBody, "description": "`unauthorized`: no valid `X-API-Key`"},
}  # fmt: skip
"""The answers about the key and the purpose, the same on every keyed route."""

ERRORS: dict[int | str, dict[str, Any]] = {
    **{s: {"model": ErrorBody} for s in (403, 404)},
    **KEY_ERRORS,
    422: {
        "model": ErrorBody,
        "description": "A malformed request. `code`: `invalid` (a parameter or the body), "
        "`invalid_uscc:<reason>` for a malformed company code, `<reason>` one of "
        f"{', '.join(USCC_REASONS)} (the message says what is wrong: 'check character should "
        "be N, got M'), `unknown_parameter` (a query parameter the route does not take), "
        "`future_day` (a day after today) …",
    },
}
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **{s: v for s, v in ERRORS.items() if s != 404},  # an unknown code is in `not_found`
    413: {"model": ErrorBody, "description": "`too_large`: more codes than the key may ask "
          "for (10,000; 100 for public and company keys), or a body over the limit"},
}  # fmt: skip

BATCH_LIMIT = 10_000
"""Most companies an authority may ask for in one batch."""

PUBLIC_BATCH = 100
"""Most companies a public or company key may ask for in one batch (the public page is one
company; 10,000 lines of audit log per request let one key crowd out every other reader)."""


def refuse_unknown_query(request: Request, known: frozenset[str]) -> None:
    """A query parameter the route does not take is refused (422 `unknown_parameter`, naming
    it): `?as_of=` (a typo of `on`) was silently dropped and answered with today's document."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise ApiError(422, "unknown_parameter", f"unknown query parameter(s) "
                       f"{', '.join(unknown)}: this route takes {takes}")  # fmt: skip


ON = frozenset({"on"})
OnQuery = Annotated[
    date | None,
    Query(description="A day (YYYY-MM-DD, not after today): the evaluation and tier in force "
          "that day, the latest published on or before it (a batch or a re-score), instead "
          "of the current document"),
]  # fmt: skip


def _future(day: date) -> None:
    if day > china_today():
        raise ApiError(422, "future_day", f"{day} is after today: no evaluation is known for it")


@router.get(
    "/companies/{uscc}", response_model=Company, responses=ERRORS,
    summary="A company's public credit evaluation, supervision tier, reasons and flags",
)  # fmt: skip
async def get_company(
    request: Request, uscc: str, state: StateDep, caller: CallerDep,
    on: OnQuery = None, x_purpose: PurposeHeader = None,
) -> Response:  # fmt: skip
    purpose = purpose_of(caller, x_purpose)
    code = valid_code(uscc)
    if request.scope["query_string"]:  # the look-up's hot path: no parsing without one
        refuse_unknown_query(request, ON)
    if on is not None:
        _future(on)
        docs, disputed, missing = await run_in_threadpool(_points, state, caller, [code], on)
        state.audit.log(caller, "GET /v1/companies/{uscc}", code, purpose,
                        200 if code in docs else 404)  # fmt: skip
        if code not in docs:
            if code in missing:
                raise ApiError(404, "not_scored_by_date", f"no evaluation or tier of {code} "
                               f"was published on or before {on}")  # fmt: skip
            raise _unscored(state, code)
        served = await _as_served(state, caller, docs, disputed, on)
        return Response(content=served[code], media_type="application/json")
    return await _current(state, caller, code, purpose)


async def _current(state: ServiceState, caller: Caller, code: str, purpose: str | None) -> Response:
    """The company's current document as this caller is served it, the read audited."""
    doc, disputed_now = await state.lookup.company(code, caller.sees_fully(code))
    state.audit.log(caller, "GET /v1/companies/{uscc}", code, purpose, 200 if doc else 404)
    if doc is None:
        raise _unscored(state, code)
    docs = await _as_served(state, caller, {code: doc}, {code: disputed_now})
    return Response(content=docs[code], media_type="application/json")


async def _plain_company(request: Request) -> Response:
    """`get_company` without a query string, its parameters read by hand (see `PlainLookup`)."""
    state: ServiceState = request.app.state.service
    caller = await get_caller(request, state, request.headers.get("x-api-key"))
    purpose = purpose_of(caller, request.headers.get("x-purpose"))
    code = valid_code(request.path_params["uscc"])
    return await _current(state, caller, code, purpose)


class PlainLookup(Route):
    """`GET /v1/companies/{uscc}` without a query string: the hot path of the API, answered as
    a plain Starlette route placed before the FastAPI one (`serving.app.create_app`).

    FastAPI resolves an endpoint's dependencies and parameters anew for every request (the
    state, the caller and its key header, `on`, the purpose header, the path): profiled, that
    machinery was 37 % of the time a look-up held the interpreter, and one worker answered
    2,074 look-ups a second on 20,000 companies. Read by hand here, with the same functions
    (`get_caller`, `purpose_of`, `valid_code`) and the same answer (`_current`), it answers
    3,464 (server CPU 0.51 → 0.32 ms a look-up).

    Anything else goes on to the FastAPI route `get_company`, which documents the route in
    OpenAPI: a query string (`?on=`, an unknown parameter refused there), another method (its
    405 and Allow), a non-HTTP scope. Both answer the same (`tests/serving/test_plain_lookup.py`).
    """

    def __init__(self) -> None:
        super().__init__(f"{router.prefix}/companies/{{uscc}}", _plain_company, methods=["GET"],
                         name="get_company_plain", include_in_schema=False)  # fmt: skip

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match == Match.FULL:
            child["route"] = self  # the metrics' route label, as FastAPI's route sets it
        return match, child


def _unscored(state: ServiceState, code: str) -> ApiError:
    """The 404 of a code without a document: `not_yet_scored` for a company registered since
    the last load (known from `Lookup.newcomers`, not from the store: a look-up never reads
    it), `not_found` for a code no one here knows."""
    newcomer = state.lookup.newcomers.get(code)
    if newcomer is not None:
        return ApiError(
            404, "not_yet_scored",
            f"{code} was registered on {newcomer.registered} (recorded here on "
            f"{newcomer.known_since}), after the last batch: it is scored and tiered at the next "
            "batch",
        )  # fmt: skip
    return ApiError(404, "not_found", f"no evaluation or tier of {code}: no company of that "
                    "code is known here")  # fmt: skip


NOT_SERVED = ["status", "not_tiered", "evaluation.points", "evaluation.vetoes",
              "evaluation.top_deductions", "tier.model_tier", "tier.reasons",
              "flags.lists"]  # fmt: skip
"""What a past point (`?on=`) does not carry: `company_history` keeps the evaluation's score,
grade and method and the tier's probability and model, not the reasons, points, vetoes or lists
of that day (they are served with the current document only)."""


def _points(
    state: ServiceState, caller: Caller, codes: list[str], day: date
) -> tuple[dict[str, str], dict[str, set[str]], set[str]]:
    """The documents in force on `day` (the latest published on or before it: the current
    document when that is it, else the point of `company_history`, marked with `on`, `source`
    and `not_served`), the records under objection open on `day`, and the companies known here
    that had nothing published by then."""
    docs: dict[str, str] = {}
    disputed: dict[str, set[str]] = {}
    missing: set[str] = set()
    h = company_history.c
    with state.engine.connect() as con:
        for start in range(0, len(codes), 900):
            part = codes[start : start + 900]
            latest = (
                sa.select(h.uscc, sa.func.max(h.as_of).label("as_of"))
                .where(h.uscc.in_(part), h.as_of <= day).group_by(h.uscc).subquery()
            )  # fmt: skip
            points = {
                r.uscc: r
                for r in con.execute(
                    sa.select(company_history).join(
                        latest, sa.and_(h.uscc == latest.c.uscc, h.as_of == latest.c.as_of)
                    )
                ).mappings()
            }
            current = {
                r.uscc: r
                for r in con.execute(
                    sa.select(companies.c.uscc, companies.c.as_of, companies.c.full_doc,
                              companies.c.public_doc).where(companies.c.uscc.in_(part))
                )
            }  # fmt: skip
            known = set(current) | set(
                con.execute(sa.select(h.uscc).distinct().where(h.uscc.in_(part))).scalars()
            )
            missing |= known - set(points)
            disputed.update(disputed_on(con, part, day))
            for u, point in points.items():
                full = caller.sees_fully(u)
                row = current.get(u)
                if row is not None and row.as_of == point["as_of"]:
                    doc = json.loads(row.full_doc if full else row.public_doc)
                else:
                    doc = _point_doc(point, full)
                doc["on"] = day.isoformat()
                doc["source"] = point["source"]
                docs[u] = json.dumps(doc, ensure_ascii=False)
    return docs, disputed, missing


def _point_doc(point: Any, full: bool) -> dict[str, Any]:
    """A `company_history` point as a document (full or public view), `not_served` naming what
    only the current document carries."""
    individual = point["entity_type"] == "individual_business"
    base = {
        "uscc": point["uscc"], "entity_type": point["entity_type"], "region": point["region"],
        "industry": point["industry"], "as_of": point["as_of"].isoformat(), "status": None,
    }  # fmt: skip
    scored = point["score"] is not None
    if not full:
        return {
            **base, "name": mask_name(point["name"]) if individual else point["name"],
            "evaluation": {"score": float(point["score"]), "grade": point["grade"]}
            if scored else None,
            "flags": {"objection_open": False}, "not_served": ["status"],
        }  # fmt: skip
    tier = None
    if point["tier"] is not None:
        probability = point["probability"]
        tier = {
            "tier": point["tier"], "model_tier": None,
            "probability": None if probability is None else round(float(probability), 6),
            "reasons": None, "model": None, "model_version": point["model_version"],
        }  # fmt: skip
    return {
        **base, "name": point["name"],
        "evaluation": {"score": float(point["score"]), "grade": point["grade"], "points": None,
                       "vetoes": None, "method_version": point["method_version"],
                       "top_deductions": None}
        if scored else None,
        "tier": tier, "not_tiered": None,
        "flags": {"objection_open": False, "lists": None}, "not_served": NOT_SERVED,
    }  # fmt: skip


async def _as_served(
    state: ServiceState, caller: Caller, docs: dict[str, str], disputed: dict[str, set[str]],
    day: date | None = None,
) -> dict[str, str]:  # fmt: skip
    """The stored documents as this caller is served them: the open-objection flag read live
    (`serving.lookup.objection_flags`: the records under objection now, or on `day` for a past
    point, that this caller's view includes), and for a department what the reasons say about
    records it may not see withheld (`serving.lookup.department_view`). A document that needs
    neither is served as stored (for a department: one that names no feature whose records
    could be withheld, `serving.lookup.may_withhold`)."""
    department = caller.role == "department"
    work = [
        u for u, text in docs.items()
        if disputed.get(u) or _STORED_OPEN in text or (department and may_withhold(text))
    ]  # fmt: skip
    if not work:
        return docs
    if not any(disputed.get(u) for u in work):  # no record to look up in the store: at once
        return {**docs, **_served_docs(state, caller, {u: docs[u] for u in work}, disputed, day)}
    changed = await run_in_threadpool(_served_docs, state, caller, {u: docs[u] for u in work},
                                      disputed, day)  # fmt: skip
    return {**docs, **changed}


_STORED_OPEN = '"objection_open": true'
"""How a stored document says its flag is up (`json.dumps`' separators)."""


def _served_docs(
    state: ServiceState, caller: Caller, docs: dict[str, str], disputed: dict[str, set[str]],
    day: date | None = None,
) -> dict[str, str]:  # fmt: skip
    parsed = {u: json.loads(text) for u, text in docs.items()}
    public = {u for u in parsed if not caller.sees_fully(u)}
    department = caller.department if caller.role == "department" else None
    flags: dict[str, bool] = {}
    for shown_publicly in (True, False):
        group = {u: d.get("entity_type") for u, d in parsed.items()
                 if (u in public) == shown_publicly}  # fmt: skip
        if group:
            flags.update(
                objection_flags(
                    state.store,
                    disputed,
                    group,
                    public=shown_publicly,
                    department=None if shown_publicly else department,
                    day=day,
                )
            )
    if department is not None:
        department_view([d for u, d in parsed.items() if u not in public], department)
    for u, doc in parsed.items():
        doc["flags"]["objection_open"] = flags[u]
    return {u: json.dumps(doc, ensure_ascii=False) for u, doc in parsed.items()}


@router.post(
    "/companies:batch", response_model=BatchResponse, responses=BATCH_ERRORS,
    summary="The same for up to 10,000 companies (100 for public and company keys)",
)  # fmt: skip
async def batch(
    request: Request, body: BatchRequest, state: StateDep, caller: CallerDep,
    on: OnQuery = None, x_purpose: PurposeHeader = None,
) -> Response:  # fmt: skip
    purpose = purpose_of(caller, x_purpose)
    if request.scope["query_string"]:  # the look-up's hot path: no parsing without one
        refuse_unknown_query(request, ON)
    limit = BATCH_LIMIT if caller.role in FULL_VIEW else PUBLIC_BATCH
    if len(body.usccs) > limit:  # one status and code for every key (an authority's was 422)
        raise ApiError(413, "too_large", f"a {caller.role} key may ask for at most "
                       f"{limit:,} companies at once; got {len(body.usccs):,}")  # fmt: skip
    if on is not None:
        _future(on)
    valid, invalid = [], []
    for raw in body.usccs:
        try:
            valid.append(valid_code(raw))
        except ApiError as exc:
            invalid.append({"uscc": raw, "message": exc.message})
    found: dict[str, str] = {}
    disputed: dict[str, set[str]] = {}
    wanted = list(dict.fromkeys(valid))
    if on is not None:
        found, disputed, _ = await run_in_threadpool(_points, state, caller, wanted, on)
    else:
        today = china_today()
        with state.engine.connect() as con:
            for start in range(0, len(wanted), 900):  # a query of the documents and one of
                part = wanted[start : start + 900]  # the open objections per 900 codes
                rows = con.execute(
                    sa.select(companies.c.uscc, companies.c.full_doc, companies.c.public_doc)
                    .where(companies.c.uscc.in_(part))
                ).all()  # fmt: skip
                found.update({u: full if caller.sees_fully(u) else public
                              for u, full, public in rows})  # fmt: skip
                disputed.update(disputed_on(con, part, today))
    lines = [(code, 200 if code in found else 404) for code in wanted]
    # a malformed code is a probe, on record as a look-up of it is (422, the code as given);
    # all the lines or none (at most the batch limit of probes)
    probes = list(dict.fromkeys(i["uscc"] for i in invalid))
    state.audit.log_each(caller, "POST /v1/companies:batch", lines, purpose, probes=probes)
    found = await _as_served(state, caller, found, disputed, on)
    docs = ",".join(found[u] for u in wanted if u in found)
    absent = [u for u in wanted if u not in found]
    newcomers = state.lookup.newcomers
    content = (
        f'{{"companies":[{docs}],"not_found":{json.dumps(absent)},'
        f'"not_yet_scored":{json.dumps([u for u in absent if u in newcomers])},'
        f'"invalid":{json.dumps(invalid, ensure_ascii=False)}}}'
    )
    return Response(content=content, media_type="application/json")


PAGE = frozenset({"limit", "offset"})
LimitQuery = Annotated[
    int | None, Query(ge=1, le=1000, description="At most this many (default: all)")
]
OffsetQuery = Annotated[
    int, Query(ge=0, le=2**31 - 1, description="Skip this many first (with `limit`: a page)")
]


def _page(rows: list[Any], limit: int | None, offset: int) -> tuple[list[Any], int | None]:
    """The page of `rows` from `offset` (at most `limit`), and the offset of the next page
    (None: this is the last)."""
    end = len(rows) if limit is None else offset + limit
    return rows[offset:end], end if end < len(rows) else None


@router.get(
    "/companies/{uscc}/history", response_model=History, responses=ERRORS,
    summary="Scores and tiers over time",
)  # fmt: skip
async def history(
    request: Request, uscc: str, state: StateDep, caller: CallerDep,
    limit: LimitQuery = None, offset: OffsetQuery = 0, x_purpose: PurposeHeader = None,
) -> History:  # fmt: skip
    purpose = purpose_of(caller, x_purpose)
    code = valid_code(uscc)
    if not caller.is_company(code):  # a company reads its own
        require(caller, HISTORY, "read histories")
    refuse_unknown_query(request, PAGE)
    with state.engine.connect() as con:
        rows = con.execute(
            sa.select(company_history).where(company_history.c.uscc == code)
            .order_by(company_history.c.as_of)
        ).mappings().all()  # fmt: skip
    state.audit.log(caller, "GET /v1/companies/{uscc}/history", code, purpose,
             200 if rows else 404)  # fmt: skip
    if not rows:
        raise ApiError(404, "not_found", f"no history of {code}")
    page, following = _page(list(rows), limit, offset)
    points = [
        {**{k: v for k, v in r.items() if k != "uscc"}, "as_of": r["as_of"].isoformat(),
         "probability": None if r["probability"] is None else round(r["probability"], 6)}
        for r in page
    ]  # fmt: skip
    return History.model_validate(
        {"uscc": code, "history": points, "total": len(rows), "next": following}
    )


@router.get(
    "/companies/{uscc}/records", response_model=Records, responses=ERRORS,
    summary="The records of a company this caller may see (public ones for the public, masked)",
)  # fmt: skip
def records(
    request: Request,
    uscc: str,
    state: StateDep,
    caller: CallerDep,
    on: Annotated[date | None, Query(description="Day the records are seen on (default today)")]
    = None,
    category: Annotated[
        list[str] | None,
        Query(description="Only records of these categories (the catalogue's codes; repeat "
              "the parameter for several)"),
    ] = None,
    from_: Annotated[
        date | None, Query(alias="from", description="Only records of events on or after this day")
    ] = None,
    to: Annotated[
        date | None, Query(description="Only records of events on or before this day")
    ] = None,
    limit: LimitQuery = None,
    offset: OffsetQuery = 0,
    x_purpose: PurposeHeader = None,
) -> Records:  # fmt: skip
    purpose = purpose_of(caller, x_purpose)
    code = valid_code(uscc)
    refuse_unknown_query(request, RECORDS_QUERY)
    day = on or china_today()
    if day > china_today():
        raise ApiError(422, "future_day", f"{day} is after today: records are not forecast")
    if from_ is not None and to is not None and from_ > to:
        raise ApiError(422, "invalid", f"from ({from_}) is after to ({to})")
    wanted = None if not category else set(category)
    if wanted is not None:
        catalogue = default_catalogue()
        unknown = sorted(c for c in wanted if c not in catalogue)
        if unknown:
            raise ApiError(422, "unknown_category", f"no record category {', '.join(unknown)} "
                           "in the catalogue")  # fmt: skip

    def kept(r: dict[str, Any]) -> bool:
        return ((wanted is None or r["category"] in wanted)
                and (from_ is None or r["event_date"] >= from_)
                and (to is None or r["event_date"] <= to))  # fmt: skip

    rows, seen = _records(state, code, day, caller, kept)
    if not seen and registered_entity(state.store, code, day) is None:  # as the public page
        state.audit.log(caller, "GET /v1/companies/{uscc}/records", code, purpose, 404)
        raise ApiError(404, "not_found", f"no company {code} registered by {day}")
    state.audit.log(caller, "GET /v1/companies/{uscc}/records", code, purpose, 200)
    page, following = _page(rows, limit, offset)
    return Records.model_validate({"uscc": code, "on": day.isoformat(), "records": page,
                                   "total": len(rows), "next": following})  # fmt: skip


RECORDS_QUERY = frozenset({"on", "category", "from", "to", *PAGE})


def _records(
    state: ServiceState, code: str, day: date, caller: Caller,
    kept: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """The company's records on `day` that this caller may see and `kept` keeps (with how many
    it may see: 0 says nothing of whether the company is known), by the publicity rule
    (`records.publicity`): the public (and other companies) see the public ones, a department
    also its own, the company itself and the other authorities all. A department sees the
    attributes of its own records, of others' only those the public page shows (no personal
    data: `serving.load.shown_attributes`). What is seen of a past day as public (by the
    public, other companies, a department for others' records) leaves out what is no longer
    public today (repaired, expired, unpublished)."""
    out = []
    full = caller.role in FULL_VIEW or caller.is_company(code)  # a company sees its own
    sees_all = full and caller.role != "department"
    today = china_today()
    shown = []
    seen = 0
    for r in records_on(state.store, code, day, now=None if sees_all else today):
        if not full and not r["public"]:
            continue
        own = r["source_dept"] == caller.department
        if caller.role == "department" and not r["public"] and not own:
            continue
        seen += 1
        if kept is None or kept(r):
            shown.append(r)
    ends = _public_ends(state, shown, day, None if sees_all else today)
    for r in shown:
        own = r["source_dept"] == caller.department
        end = ends[r["record_id"]]
        out.append(
            {
                "record_id": r["record_id"],
                "category": r["category"],
                "event_date": r["event_date"].isoformat(),
                "recorded_date": r["recorded_date"].isoformat() if full else None,
                "source_recorded_date": (
                    r["source_recorded_date"].isoformat()
                    if full and r["source_recorded_date"]
                    else None
                ),
                "source_dept": r["source_dept"],
                "severity": r["severity"],
                "amount": r["amount"],
                "attributes": (
                    None
                    if not full
                    else shown_attributes(r["category"], r["attributes"])
                    if caller.role == "department" and not own
                    else r["attributes"]
                ),  # another department's record: no personal data (the public page's)
                "public_until": end.isoformat() if end else None,
                "publicity_end": end.isoformat() if end else None,
                "objection_open": r["objection_open"],
                "corrected": r["corrected"],
                "supplemented": r["supplemented"],
                "public": r["public"] if full else None,
                "counts": r["counts"] if full else None,
            }
        )
    return out, seen


def _public_ends(
    state: ServiceState, rows: list[dict[str, Any]], day: date, now: date | None
) -> dict[str, date | None]:
    """The first day each record is no longer public: for a public one, the end of its period
    (or an earlier stop) as known on `day`; for one no longer public (expired, repaired,
    withdrawn, stopped publishing, past a natural person's period), the day its publicity
    ended, as known on `now` for a view made then (`records.publicity.records_on`); None for a
    record never public (a warning, a category the public is not shown) or open-ended."""
    ends: dict[str, date | None] = {}
    later = []
    for r in rows:
        end = r["public_until"]
        period = publicity.period(r["category"], r["severity"], r["attributes"], r["entity_type"])
        if r["public"]:
            ends[r["record_id"]] = end
        elif not period.published or (end is not None and end <= r["event_date"]):
            ends[r["record_id"]] = None  # never public: nothing ended
        elif end is not None and end <= day:
            ends[r["record_id"]] = end  # ended by the day
        else:  # public on the day as known then, no longer by `now`: ended since, known now
            later.append(r)
    if later and now is not None:
        records, events = publicity.stored_with_events(
            state.store, [r["record_id"] for r in later], now
        )
        for r in later:
            rid = r["record_id"]
            ends[rid] = publicity.public_until(
                records.get(rid, r["original"]), events.get(rid, []), now, r["entity_type"]
            )
    for r in later:
        ends.setdefault(r["record_id"], r["public_until"])
    return ends
