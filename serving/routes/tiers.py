"""Distribution of tiers by region, industry or entity type."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query

from serving.auth import SUMMARY
from serving.db import companies, company_history
from serving.deps import CallerDep, StateDep, require
from serving.errors import ApiError
from serving.routes.companies import ERRORS
from serving.schemas import Summary

router = APIRouter(prefix="/v1", tags=["tiers"])


@router.get("/tiers/summary", response_model=Summary, responses=ERRORS)
async def summary(
    state: StateDep,
    caller: CallerDep,
    by: Annotated[Literal["region", "industry", "entity_type", "all"], Query()] = "all",
    as_of: Annotated[date | None, Query(description="A loaded as-of date (default: current)")]
    = None,
) -> Summary:  # fmt: skip
    """Companies per tier, grouped, for the current results or a loaded as-of date (its batch,
    with companies re-scored as of it since), by region, industry and type as they were on it.
    A date no batch was loaded for is a 404 naming it: companies re-scored one by one on some
    day are not that day's distribution."""
    require(caller, SUMMARY, "read tier summaries")
    table: Any = companies
    columns: Any = companies.c
    where: Any = sa.true()
    if as_of is not None:
        table, columns = company_history, company_history.c
        where = columns.as_of == as_of  # the batch, and companies re-scored as of that date
        batch = sa.and_(where, columns.source == "batch")
        with state.engine.connect() as con:
            loaded = con.execute(sa.select(columns.uscc).where(batch).limit(1)).first()
        if loaded is None:
            raise ApiError(
                404, "not_loaded",
                f"no results were loaded as of {as_of} (`credsup load --as-of {as_of}`)",
            )  # fmt: skip
    group: Any = sa.literal("all") if by == "all" else columns[by]
    tier: Any = columns.tier
    counts = [sa.func.count().filter(tier == t).label(t) for t in "ABCD"]
    total = sa.func.count().filter(tier.is_not(None)).label("total")
    query = (
        sa.select(group.label("group"), *counts, total)
        .select_from(table)
        .where(where)
        .group_by(group)
        .order_by(group)
    )
    with state.engine.connect() as con:
        rows = [dict(r) for r in con.execute(query).mappings().all()]
    return Summary.model_validate(
        {"as_of": as_of.isoformat() if as_of else None, "by": by, "rows": rows}
    )
