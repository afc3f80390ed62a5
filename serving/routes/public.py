"""The public company page (DOMAIN §9–§10): exactly what is public about a company on a day.

Records are chosen by the one publicity rule (`records.publicity`): warnings, categories not
shared with the public, records past their period, repaired, withdrawn or no longer published
are left out; a corrected record is shown in its corrected form. The page is computed from the
store at request time, so a repair, correction, listing or objection shows at once, not at the
next batch. Personal data is masked: an individual business's name (a natural person's) is
masked, and of a record's attributes only the non-personal ones listed in `SHOWN_ATTRIBUTES` are
shown. Every read is audited.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from records.catalogue import default_catalogue
from records.publicity import records_on
from records.workdays import china_today
from serving.db import company_history
from serving.deps import CallerDep, PurposeHeader, StateDep, purpose_of, valid_code
from serving.errors import ApiError
from serving.load import mask_name, shown_attributes
from serving.lookup import disputed_on, objection_flags, registered_entity
from serving.routes.companies import ERRORS, ON, refuse_unknown_query

router = APIRouter(prefix="/v1", tags=["public"])

LISTS = ("serious_dishonest_list", "abnormal_operation_list", "focus_attention_list", "red_list")


class PublicRecord(BaseModel):
    record_id: str
    category: str
    category_name: str = Field(description="中文名称 of the category")
    event_date: date
    source_dept: str | None
    severity: str | None
    amount: float | None
    attributes: dict[str, Any]
    public_until: date | None = Field(description="First day it is no longer public (null: open)")
    corrected: bool = Field(description="Shown in its corrected form (结果已更正)")
    supplemented: bool = Field(
        False, description="Information added to it by an objection decided supplemented (已补充)"
    )
    objection_open: bool = Field(description="An objection to the record is being decided")


class Listing(BaseModel):
    list: str
    record_id: str
    listed_on: date
    reason: str | None = Field(None, description="The ground, where the list has coded ones")


class PublicCompany(BaseModel):
    uscc: str
    on: date
    name: str | None
    entity_type: str | None
    region: str | None
    evaluation: dict[str, Any] | None = Field(description="Public credit evaluation (score, grade)")
    lists: list[Listing] = Field(description="Lists the company is on that day")
    objection_open: bool
    records: list[PublicRecord]


def _open_listings(rows: list[dict[str, Any]]) -> list[Listing]:
    """Public listings not ended by a counting removal (one naming it, or a later one of the
    list without a reference), as the feature builder decides."""
    out = []
    for r in rows:
        if r["category"] not in LISTS or r["severity"] != "listed" or not r["public"]:
            continue
        ended = any(
            x["category"] == r["category"] and x["severity"] == "removed" and x["counts"]
            and (x["attributes"].get("ref") == r["record_id"]
                 or (x["attributes"].get("ref") is None and x["event_date"] >= r["event_date"]))
            for x in rows
        )  # fmt: skip
        if not ended:
            reason = shown_attributes(r["category"], r["attributes"]).get("reason")
            out.append(Listing(list=r["category"], record_id=r["record_id"],
                               listed_on=r["event_date"], reason=reason))  # fmt: skip
    return out


def _evaluation_on(con: Connection, code: str, day: date) -> dict[str, Any] | None:
    """The public credit evaluation (score, grade) in force on `day`: the latest published on
    or before it (a batch or a re-score, as `company_history` keeps them), also after the
    company was re-scored since; None when there was none or it had no score."""
    point = con.execute(
        sa.select(company_history.c.score, company_history.c.grade)
        .where(company_history.c.uscc == code, company_history.c.as_of <= day)
        .order_by(company_history.c.as_of.desc()).limit(1)
    ).first()  # fmt: skip
    if point is None or point.score is None:
        return None
    return {"score": float(point.score), "grade": point.grade}


@router.get(
    "/public/companies/{uscc}", response_model=PublicCompany, responses=ERRORS,
    summary="What is public about a company on a day: records, lists, evaluation, objections",
)  # fmt: skip
def public_company(
    request: Request,
    uscc: str,
    state: StateDep,
    caller: CallerDep,
    on: Annotated[date | None, Query(description="Day (default today)")] = None,
    x_purpose: PurposeHeader = None,
) -> PublicCompany:
    code = valid_code(uscc)
    refuse_unknown_query(request, ON)
    purpose = purpose_of(caller, x_purpose) if caller.role != "public" else None
    day = on or china_today()
    if day > china_today():
        raise ApiError(422, "future_day", f"{day} is after today: publicity is not forecast")
    entity = registered_entity(state.store, code, day)
    if entity is None:
        state.audit.log(caller, "GET /v1/public/companies/{uscc}", code, purpose, 404)
        raise ApiError(404, "not_found", f"no company {code} registered by {day}")
    rows = records_on(state.store, code, day, now=china_today(), entity=entity)
    catalogue = default_catalogue()
    shown = [r for r in rows if r["public"]]
    with state.engine.connect() as con:
        evaluation = _evaluation_on(con, code, day)
        disputed = disputed_on(con, [code], day)
    individual = entity["entity_type"] == "individual_business"
    flag = objection_flags(state.store, disputed, {code: entity["entity_type"]}, public=True,
                           day=day)[code]  # fmt: skip
    state.audit.log(caller, "GET /v1/public/companies/{uscc}", code, purpose, 200)
    return PublicCompany(
        uscc=code, on=day,
        name=mask_name(entity["name"]) if individual else entity["name"],
        entity_type=entity["entity_type"], region=entity["region"], evaluation=evaluation,
        lists=_open_listings(rows),
        objection_open=flag,
        records=[
            PublicRecord(
                record_id=r["record_id"], category=r["category"],
                category_name=catalogue[r["category"]].name.zh, event_date=r["event_date"],
                source_dept=r["source_dept"], severity=r["severity"], amount=r["amount"],
                attributes=shown_attributes(r["category"], r["attributes"]),
                public_until=r["public_until"], corrected=r["corrected"],
                supplemented=r["supplemented"],
                objection_open=r["objection_open"],
            )
            for r in shown
        ],
    )  # fmt: skip
