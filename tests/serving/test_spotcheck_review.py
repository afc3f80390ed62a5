"""Defects found by the review of ten spot-check plans over six months (the reviewer's report:
caps and floors crossed by rounding, list-level settings of an item file dropped, lists that
ignore corrections and objections, presets that loosen an item's cap, plans drawn twice and
never cancelled, triggered checks of every item, inspector imports that can never be drawn,
messages that mislead): each test pins the behaviour now."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from serving.db import spot_check_plans
from serving.spotcheck import plans as plans_module
from serving.spotcheck.plans import PlanRequest, create_plan, verify_plan
from tests.serving import test_spotcheck_plans as _plans
from tests.serving.databases import Loaded
from tests.serving.test_spotcheck_plans import SMALL_AS_OF

small = _plans.small
"""40 companies of one county, the national-default items, 6 samr inspectors (the fixture)."""


def _request(**kw: Any) -> PlanRequest:
    return PlanRequest.model_validate({
        "name": "review", "departments": ["samr"], "items": ["SC-GS-01"], "seed": 3,
        "snapshot_date": SMALL_AS_OF, "start_date": date(2026, 7, 6), **kw,
    })  # fmt: skip


# ---- 1, 2: whole counts under a cap or a floor; old plans replay with their rule -----------


def test_a_plan_drawn_by_version_2_still_verifies(
    small: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans stored before the whole-count rule record draw_version 2 and replay with it; new
    plans record 3. A capped item on 40 companies tells the two apart."""
    resolve = plans_module.resolve
    monkeypatch.setattr(
        plans_module, "resolve", lambda e, r: dataclasses.replace(resolve(e, r), draw_version=2)
    )
    request = _request(item_ratios={"SC-GS-01": {"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.5}},
                       general_item_cap=0.06)  # fmt: skip
    old = create_plan(small.engine, request, today=date(2026, 7, 6))
    monkeypatch.undo()
    new = create_plan(small.engine, request.model_copy(update={"name": "new"}),
                      today=date(2026, 7, 6))  # fmt: skip
    with small.engine.connect() as con:
        versions = {
            pid: json.loads(p)["draw_version"]
            for pid, p in con.execute(sa.select(spot_check_plans.c.id, spot_check_plans.c.params))
        }
    assert versions == {old.plan_id: 2, new.plan_id: 3}
    assert verify_plan(small.engine, old.plan_id).identical
    assert verify_plan(small.engine, new.plan_id).identical
    # 40 eligible at 6 %: 2.4 expected under version 2 (2 or 3 drawn), ⌊2.4⌋ = 2 under 3
    assert new.tasks == 2 and old.tasks in (2, 3)
