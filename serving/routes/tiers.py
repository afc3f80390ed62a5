"""Distribution of tiers by region, industry or entity type."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query

from serving.auth import SUMMARY
from serving.db import companies, company_history
from serving.deps import CallerDep, StateDep, require
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
    """Companies per tier, grouped, for the current results or a loaded as-of date."""
    require(caller, SUMMARY, "read tier summaries")
    group: Any = sa.literal("all") if by == "all" else companies.c[by]
    table: Any = companies
    tier: Any = companies.c.tier
    where: Any = sa.true()
    if as_of is not None:
        table = company_history.join(companies, companies.c.uscc == company_history.c.uscc)
        tier = company_history.c.tier
        where = company_history.c.as_of == as_of
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
