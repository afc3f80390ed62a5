"""A simulated inspector pool for the loaded companies (`credsup plan inspectors demo`).

For each department with check items and each city (4-digit division prefix) of the loaded
companies: `per_city` inspectors qualified for all of the department's items, plus one
province-wide inspector per department; about 5 % are inactive (on leave), and a few declare a
conflict with a company of their city. Deterministic for a seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.db import companies
from serving.spotcheck.plans import InspectorIn, load_items, save_inspectors

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def demo_inspectors(engine: Engine, per_city: int = 8, seed: int = 7) -> list[InspectorIn]:
    rng = np.random.default_rng(seed)
    items = [i for i in load_items(engine) if i.active]
    by_dept: dict[str, list[str]] = {}
    for item in items:
        by_dept.setdefault(item.department, []).append(item.id)
    with engine.connect() as con:
        regions = sorted(r for (r,) in con.execute(sa.select(companies.c.region).distinct()) if r)
        codes_by_city: dict[str, list[str]] = {}
        for code, region in con.execute(sa.select(companies.c.uscc, companies.c.region)):
            if region:
                codes_by_city.setdefault(region[:4], []).append(code)
    cities = sorted({r[:4] for r in regions})
    pool = []
    for dept, dept_items in sorted(by_dept.items()):
        province = cities[0][:2] if cities else ""
        pool.append(_inspector(rng, f"{dept}-{province}-00", dept, province, dept_items, []))
        for city in cities:
            for k in range(1, per_city + 1):
                conflicts = []
                if rng.random() < 0.1 and codes_by_city.get(city):
                    conflicts = [str(rng.choice(codes_by_city[city]))]
                pool.append(
                    _inspector(rng, f"{dept}-{city}-{k:02d}", dept, city, dept_items, conflicts)
                )
    return pool


def _inspector(
    rng: np.random.Generator,
    inspector_id: str,
    dept: str,
    area: str,
    items: list[str],
    conflicts: list[str],
) -> InspectorIn:
    name = str(rng.choice(list(_SURNAMES))) + "".join(rng.choice(list(_GIVEN), 2))
    return InspectorIn(
        inspector_id=inspector_id, name=name, department=dept, area=area, items=sorted(items),
        active=bool(rng.random() >= 0.05), conflicts=conflicts,
    )  # fmt: skip


def load_demo_inspectors(engine: Engine, per_city: int = 8, seed: int = 7) -> dict[str, Any]:
    return save_inspectors(engine, demo_inspectors(engine, per_city, seed))
