"""Market simulator: a synthetic province (Henan) of companies, their records and a hidden truth.

`simulate` draws companies, a hidden risk propensity per company and year, and the records that
departments would have sent over the window [end - years, end]; `write_simulation` writes the
canonical files plus the hidden truth in a separate folder (evaluation may read it, models must
not). All work is vectorised with numpy/pyarrow (loops only over categories, years, quarters and
filing seasons). One `np.random.default_rng(seed)` and a fixed order of draws make a run
reproducible. Every number below is a modelling assumption, not an official statistic.

Assumptions
- Time: simulated year k is the 12 months ending on the k-th anniversary of the window start;
  `propensity_<Y>` is named after the calendar year in which that period ends. event_date lies in
  the window; recorded_date = event_date + a lag (0-3 days for online filings, 0-30 typical,
  15-180 for courts); rows recorded after `end` are dropped.
- Entities: kinds 92 individual business 66 %, 91 enterprise 30 %, 93 farmers' cooperative 2.5 %,
  51/52 social organisations 1.0/0.5 %. Region: a real GB/T 2260 district of one of Henan's 17
  prefectures (weights ~ population, Zhengzhou x1.6, urban districts x3); the code carries the
  same region. Industry: GB/T 4754 section letter + 2-digit division with type-specific shares
  (individual businesses: retail F52 38 %, catering H62 16 %, residents' services O80 14 %, ...;
  enterprises: wholesale F51, retail, business services L72, tech, construction, manufacturing;
  cooperatives: agriculture A01/A03/A05 and C13; social groups S95; private non-enterprise units
  P83/Q84/Q85/R89/M75). Registered capital lognormal (median CNY 1 M enterprises, 30 k individual
  businesses, 500 k cooperatives, 50-100 k social organisations). Age exponential (mean 7 / 5 / 8 /
  10 years), so ~35-45 % were founded inside a 3-year window and have no history before founding.
  Names: enterprises "<城市|城市+区|河南><字号><行业词>有限(责任)公司"; individual businesses
  "<区县><姓>记<行业店名>" (the owner's surname is visible, as in reality); cooperatives
  "<区县><字号><产品>专业合作社"; social organisations "<区县>…协会" / "<区县><字号>培训学校".
  Names are not made unique.
- Exit: yearly hazards deregistration 1.0-2.0 %, revocation 0.2-0.6 % (risk-driven), suspension
  0.1-0.2 % (~5 % over 3 years); no record is dated after the exit day (suspended ones
  included). Entities are versioned: every company has an `active` version recorded on its
  founding day + 0-15 days, and a company that exits a second version with the new status
  recorded 10 days after its last day (capped at `end`); the exit day is in the truth
  (`status_date`) too.
- Propensity: logit = -1.9 + industry effect (-0.25 tech ... +0.35 catering/food) + type effect
  (individual +0.1, cooperative +0.3, social organisation -0.3) - 0.15 x standardised log capital
  + N(0, 0.75) noise + 2.5 for a persistent class of repeat offenders (6 %; the shift is centred,
  so the mean logit stays put) (`base_propensity`, mean ~0.18); a yearly AR(1) drift (rho 0.7,
  sd 0.5) on top (`propensity_<Y>`). The offender class makes risk as concentrated as
  inspection histories are (a few companies account for most problems found: in the Boston
  inspections of ../shared/data the 20 % of restaurants with the most severe violations
  account for 53 % of them). With it, tiers made by ranking on the truth itself make a
  tier-weighted plan (3/10/40/100 %) find about 2.0x the problems of a uniform one; without it
  1.8x. propensity = sigmoid(logit) is the chance that a standard inspection finds a problem in
  a company without recent penalties.
- Rates: a category's yearly rate = base rate by type x industry factor x exp(beta z) / mean
  exp(beta z) over the year's companies, z = logit + 1.72 (the mean logit); beta > 0 for
  negative records (penalties 1.2,
  dishonest lists 1.4-1.6), < 0 for positive ones (honours -0.8, red list -1.0); Poisson counts
  over the days the company was alive in the period, uniform days. About 3 records per company
  and year; tax declarations (~40 %) and annual reports (~25 %) dominate.
- Annual reports (types 91/92/93) for year Y: filed Jan 1-Jun 30 of Y+1 (on_time), else a
  `missing` record on Jul 1 and an abnormal-operation listing (reason missing_annual_report) within
  ~30 days; P(missing) = sigmoid(-2.6 enterprise / -2.1 individual / -1.5 cooperative + 1.1 z),
  about 7 / 13 / 20 %. About 40 % of the missing ones file later (a `late` record after the
  `missing` one) and their listing is removed (ref). Other listings: unreachable (removed with
  sigmoid(-0.5 - 0.6 z)), false_disclosure (60 %); a listing still open after 3 years moves an
  enterprise or cooperative to the serious illegal and dishonest list.
- Tax: enterprises, 60 % of cooperatives, ~20 % of individual businesses (larger ones) and 30 % of
  social organisations declare quarterly (one VAT/income-tax declaration by the 15th of the next
  month; late and missing more likely with risk; ~23 % zero declarations, likelier with risk).
  Tax credit grades in April for the previous year for ~95 % of declaring enterprises, 80 % of
  cooperatives, 30 % of declaring individual businesses: M (~20 %) if founded that year or without
  revenue, else an ordinal draw (A ~14 %, B ~80 %, C ~4 %, D ~2 %) with points in the grade's band
  (A >= 90, B 70-89, C 40-69, D < 40); A grades go on the red list (a_grade_taxpayer) and come off
  it at the first later non-A grade.
- Penalties: 3.0 / 2.0 / 0.8 / 0.4 % a year (enterprise / individual / cooperative / social), x0.6
  to x1.8 by industry; severity minor 55 % / general 38 % / serious 4 % at average risk, more
  serious with risk (~9 % of all penalties); fines lognormal (median CNY 2 k / 20 k / 200 k),
  warnings without a fine; penalty types and the domain (food_safety, fire, work_safety, ...)
  decide the department.
  Serious ones lead to the serious dishonest list (~25 %; removed early after >= 1 year with 30 %
  chance, else after 3 years) and, when a licence is revoked, an admin_license `revoked` record;
  6 % of general ones to the focus-attention list (removed after 180-730 days).
- Courts: defendant judgments drive later dishonest-judgment-debtor listings (~5 %), which
  themselves are removed with ~40 % chance; dishonest parties make related_party records for
  related enterprises. Credit commitments fall due 90-365 days later; breaches (sigmoid(-3.2 +
  1.3 z)) come after the commitment. Warning talks are rectified with ~75 % chance. Complaints come
  mostly from consumer-facing industries via 12315 (70 %) / 12345 (25 %) / other; verified more
  often with risk; verified/dismissed ones are recorded after handling (7-60 days).
- Spot checks (types 91/92/93, double random): one plan per simulated year drawn on day 75 of the
  year; inclusion 3 % / 10 % / 40 % by the number of negative records recorded in the previous
  12 months (0 / 1 / >= 2); inspections 14-214 days after the draw; the first plan sees only the
  days of the window before it. True problem probability = sigmoid(logit of that year + 0.7 x
  penalties in the 12 months before the check (max 3) + 0.4 if listed abnormal in those months +
  item effect), in `check_truth`. Findings: serious ~ sigmoid(-2 + 0.8 z), major ~ Poisson,
  minor ~ Poisson, at least one when a problem is found; severity serious / problem / pass from
  the counts. Problems lead to penalties (70 % of serious, 30 % with major findings), warning
  talks (25 %) and, for public-information checks, false_disclosure listings (25 %); later plans
  see those. About 6 % of companies are inspected a year, a third of them find a problem.
  Triggered (non-random) checks are not simulated.
- Record ids: "SIM-<abbreviation>-<9 digits>", numbered per category in order of recorded_date.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from records import uscc as codes
from records.catalogue import Catalogue, default_catalogue
from records.schema import ENTITY_COLUMNS, RECORD_COLUMNS

Ints = npt.NDArray[np.integer[Any]]
Floats = npt.NDArray[np.floating[Any]]
Bools = npt.NDArray[np.bool_]

# ---- public API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """How many companies, how many years back from `end`, and the seed of the one generator."""

    companies: int = 10_000
    years: int = 3
    seed: int = 0
    end: date = date(2026, 6, 30)
    repeat_offenders: float = 0.06
    """Share of companies in the persistent high-risk class (see Propensity in the docstring)."""
    offender_shift: float = 2.5
    """How much that class adds to the propensity logit."""

    def __post_init__(self) -> None:
        if not 0 <= self.repeat_offenders < 1:
            raise ValueError(f"repeat_offenders must be in [0, 1), got {self.repeat_offenders}")
        if self.companies < 1:
            raise ValueError(f"companies must be at least 1, got {self.companies}")
        if not 1 <= self.years <= 30:
            raise ValueError(f"years must be between 1 and 30, got {self.years}")


@dataclass
class Simulation:
    """Canonical entities and records, and the hidden truth that models must never read."""

    entities: pa.Table
    records: pa.Table
    truth: pa.Table
    check_truth: pa.Table
    end: date | None = None


# ---- the synthetic province -------------------------------------------------------------------

KINDS = ("91", "92", "93", "51", "52")
KIND_SHARES = (0.300, 0.660, 0.025, 0.010, 0.005)
KIND_ENTITY_TYPE = (
    "enterprise", "individual_business", "cooperative", "social_organisation",
    "social_organisation",
)  # fmt: skip
ENT, IND, COOP, SOC, PNE = range(5)
"""Kind indexes: enterprise, individual business, cooperative, social group, private non-enterprise
unit (民办非企业单位)."""

_PREFECTURES: tuple[tuple[str, str, float, str], ...] = (
    ("4101", "郑州", 20.5, "02中原区 03二七区 04管城回族区 05金水区 06上街区 08惠济区 "
     "22中牟县 81巩义市 82荥阳市 83新密市 84新郑市 85登封市"),
    ("4102", "开封", 4.7, "02龙亭区 03顺河回族区 04鼓楼区 05禹王台区 12祥符区 21杞县 22通许县 "
     "23尉氏县 25兰考县"),
    ("4103", "洛阳", 8.0, "02老城区 03西工区 04瀍河回族区 05涧西区 07偃师区 08孟津区 11洛龙区 "
     "23新安县 24栾川县 25嵩县 26汝阳县 27宜阳县 28洛宁县 29伊川县"),
    ("4104", "平顶山", 5.0, "02新华区 03卫东区 04石龙区 11湛河区 21宝丰县 22叶县 23鲁山县 25郏县 "
     "81舞钢市 82汝州市"),
    ("4105", "安阳", 5.4, "02文峰区 03北关区 05殷都区 06龙安区 22安阳县 23汤阴县 26滑县 27内黄县 "
     "81林州市"),
    ("4106", "鹤壁", 1.6, "02鹤山区 03山城区 11淇滨区 21浚县 22淇县"),
    ("4107", "新乡", 6.2, "02红旗区 03卫滨区 04凤泉区 11牧野区 21新乡县 24获嘉县 25原阳县 26延津县 "
     "27封丘县 81卫辉市 82辉县市 83长垣市"),
    ("4108", "焦作", 3.5, "02解放区 03中站区 04马村区 11山阳区 21修武县 22博爱县 23武陟县 25温县 "
     "82沁阳市 83孟州市"),
    ("4109", "濮阳", 3.8, "02华龙区 22清丰县 23南乐县 26范县 27台前县 28濮阳县"),
    ("4110", "许昌", 4.4, "02魏都区 03建安区 24鄢陵县 25襄城县 81禹州市 82长葛市"),
    ("4111", "漯河", 2.4, "02源汇区 03郾城区 04召陵区 21舞阳县 22临颍县"),
    ("4112", "三门峡", 2.0, "02湖滨区 03陕州区 21渑池县 24卢氏县 81义马市 82灵宝市"),
    ("4113", "南阳", 9.7, "02宛城区 03卧龙区 21南召县 22方城县 23西峡县 24镇平县 25内乡县 26淅川县 "
     "27社旗县 28唐河县 29新野县 30桐柏县 81邓州市"),
    ("4114", "商丘", 7.8, "02梁园区 03睢阳区 21民权县 22睢县 23宁陵县 24柘城县 25虞城县 26夏邑县 "
     "81永城市"),
    ("4115", "信阳", 6.2, "02浉河区 03平桥区 21罗山县 22光山县 23新县 24商城县 25固始县 26潢川县 "
     "27淮滨县 28息县"),
    ("4116", "周口", 8.9, "02川汇区 03淮阳区 21扶沟县 22西华县 23商水县 24沈丘县 25郸城县 27太康县 "
     "28鹿邑县 81项城市"),
    ("4117", "驻马店", 7.0, "02驿城区 21西平县 22上蔡县 23平舆县 24正阳县 25确山县 26泌阳县 "
     "27汝南县 28遂平县 29新蔡县"),
)  # fmt: skip
"""Henan's prefectures: code prefix, name, weight (~ population, business density), districts."""


@dataclass(frozen=True)
class _District:
    code: str
    city: str  # "郑州"
    display: str  # how names start: "郑州市金水区" for a city district, "中牟县" for a county


@lru_cache(maxsize=1)
def _districts() -> tuple[tuple[_District, ...], Floats]:
    out: list[_District] = []
    weights: list[float] = []
    for prefix, city, weight, text in _PREFECTURES:
        items = text.split()
        urban = [int(s[:2]) < 20 for s in items]
        unit = weight / (3 * sum(urban) + (len(items) - sum(urban)))
        for item, is_urban in zip(items, urban, strict=True):
            name = item[2:]
            display = f"{city}市{name}" if is_urban else name
            out.append(_District(prefix + item[:2], city, display))
            weights.append(unit * (3 if is_urban else 1))
    w = np.asarray(weights)
    return tuple(out), w / w.sum()


@dataclass(frozen=True)
class _Industry:
    code: str
    weights: tuple[float, float, float, float, float]  # share within each kind (unnormalised)
    risk: float  # effect on the propensity logit
    penalty: float  # penalty-rate factor
    consumer: float  # complaint-rate factor (consumer-facing trades complain more)
    ent: tuple[str, ...] = ()  # enterprise name words
    shop: tuple[str, ...] = ()  # individual-business name endings
    org: tuple[str, ...] = ()  # cooperative / social-organisation name endings
    licence: tuple[str, str, float] | None = None  # licence, department, share needing one
    tax_item: str = "现代服务"
    domains: tuple[str, ...] = ("market_order",)  # penalty domains
    items: tuple[str, ...] = ()  # spot-check items besides public information and registration


_SP, _CP, _TZ, _JG, _GG = "SC-SP-03", "SC-CP-04", "SC-TZ-05", "SC-JG-06", "SC-GG-07"
_FOOD = ("food_safety", "food_safety", "fire", "pricing", "market_order")
_MAKE = ("product_quality", "environment", "work_safety", "special_equipment", "market_order")
_BUILD = ("work_safety", "construction", "environment", "market_order")

INDUSTRIES: tuple[_Industry, ...] = (
    _Industry("A01", (0.02, 0.02, 0.55, 0, 0), -0.10, 0.5, 0.2, ("农业科技",),
              ("蔬菜种植园", "果园"),
              ("蔬菜种植专业合作社", "小麦种植专业合作社", "果蔬专业合作社"),
              ("seed_production", "agriculture", 0.1), "农产品销售",
              ("product_quality", "environment")),
    _Industry("A03", (0.01, 0.02, 0.20, 0, 0), 0.05, 0.8, 0.2, ("牧业",), ("养殖场",),
              ("生猪养殖专业合作社", "肉牛养殖专业合作社", "家禽养殖专业合作社"),
              ("animal_epidemic_prevention", "agriculture", 0.8), "农产品销售",
              ("environment", "food_safety")),
    _Industry("A05", (0.005, 0, 0.17, 0, 0), 0.0, 0.4, 0.2, ("农业服务",), (),
              ("农机专业合作社", "植保专业合作社")),
    _Industry("C13", (0.015, 0.01, 0.08, 0, 0), 0.30, 1.8, 0.6, ("农产品加工",),
              ("面粉加工坊", "油坊"), ("粮食加工专业合作社",), ("food_production", "samr", 0.8),
              "货物销售", _FOOD[:2] + _MAKE,
              (_SP, _CP)),
    _Industry("C14", (0.015, 0, 0, 0, 0), 0.30, 1.8, 0.8, ("食品",), (), (),
              ("food_production", "samr", 0.9), "货物销售", _FOOD[:2] + _MAKE, (_SP, _CP)),
    _Industry("C18", (0.015, 0.01, 0, 0, 0), 0.05, 1.0, 0.6, ("服饰",), ("裁缝店",), (),
              ("pollutant_discharge", "ecology", 0.2), "货物销售", _MAKE, (_CP,)),
    _Industry("C21", (0.01, 0, 0, 0, 0), 0.05, 1.0, 0.6, ("家具",), (), (),
              ("pollutant_discharge", "ecology", 0.2), "货物销售", _MAKE, (_CP,)),
    _Industry("C30", (0.015, 0, 0, 0, 0), 0.15, 1.3, 0.3, ("建材",), (), (),
              ("industrial_product", "samr", 0.3), "货物销售", _MAKE, (_CP, _TZ)),
    _Industry("C33", (0.02, 0, 0, 0, 0), 0.10, 1.2, 0.3, ("金属制品",), (), (),
              ("industrial_product", "samr", 0.3), "货物销售", _MAKE, (_CP, _TZ)),
    _Industry("C34", (0.015, 0, 0, 0, 0), 0.0, 1.0, 0.3, ("机械设备",), (), (),
              ("industrial_product", "samr", 0.3), "货物销售", _MAKE, (_CP, _TZ)),
    _Industry("C39", (0.01, 0, 0, 0, 0), -0.15, 0.7, 0.4, ("电子科技",), (), (), None, "货物销售",
              _MAKE, (_CP,)),
    _Industry("E47", (0.03, 0, 0, 0, 0), 0.30, 1.5, 0.6, ("建筑工程",), (), (),
              ("construction_qualification", "housing", 0.8), "建筑服务", _BUILD),
    _Industry("E48", (0.02, 0, 0, 0, 0), 0.30, 1.5, 0.4, ("路桥工程",), (), (),
              ("construction_qualification", "housing", 0.8), "建筑服务", _BUILD),
    _Industry("E50", (0.035, 0.02, 0, 0, 0), 0.25, 1.3, 1.2, ("装饰工程",), ("装饰部",), (),
              ("construction_qualification", "housing", 0.5), "建筑服务", _BUILD),
    _Industry("F51", (0.16, 0.08, 0, 0, 0), 0.0, 0.9, 0.7, ("商贸", "贸易", "供应链管理"),
              ("粮油批发店", "副食批发部", "建材批发店"), (), ("food_business", "samr", 0.3),
              "货物销售",
              ("product_quality", "market_order", "advertising", "pricing"), (_CP, _SP)),
    _Industry("F52", (0.12, 0.38, 0, 0, 0), 0.10, 1.4, 2.0, ("商业", "超市", "百货"),
              ("百货店", "便利店", "烟酒店", "服装店", "五金店", "手机店", "农资店"), (),
              ("food_business", "samr", 0.5), "货物销售", (*_FOOD, "product_quality"),
              (_SP, _CP, _JG)),
    _Industry("G54", (0.03, 0.04, 0, 0, 0), 0.25, 1.5, 0.8, ("物流", "运输"), ("货运部",), (),
              ("road_transport", "transport", 0.9), "交通运输服务",
              ("transport", "work_safety", "market_order")),
    _Industry("G59", (0.01, 0, 0, 0, 0), 0.10, 1.0, 0.3, ("仓储服务",), (), (),
              ("special_equipment_use", "samr", 0.3), "现代服务",
              ("work_safety", "fire", "special_equipment"), (_TZ,)),
    _Industry("H61", (0.01, 0.02, 0, 0, 0), 0.20, 1.4, 2.0, ("酒店管理",), ("旅社", "宾馆"), (),
              ("public_place_hygiene", "health", 0.9), "餐饮住宿服务",
              ("fire", "public_health", "food_safety", "pricing"), (_TZ, _JG, _SP)),
    _Industry("H62", (0.03, 0.16, 0, 0, 0), 0.35, 1.8, 2.5, ("餐饮管理",),
              ("烩面馆", "胡辣汤店", "小吃店", "饺子馆", "烧烤店", "快餐店"), (),
              ("food_business", "samr", 0.95), "餐饮住宿服务", _FOOD, (_SP, _JG)),
    _Industry("I65", (0.07, 0.005, 0, 0, 0), -0.20, 0.6, 0.6, ("信息技术", "网络科技"),
              ("电脑维修店",),
              (), ("value_added_telecom", "miit", 0.2), "现代服务", ("advertising", "market_order"),
              (_GG,)),
    _Industry("K70", (0.035, 0, 0, 0, 0), 0.25, 1.3, 2.0, ("置业", "房地产开发"), (), (),
              ("real_estate_development", "housing", 0.9), "销售不动产",
              ("advertising", "pricing", "construction", "special_equipment"), (_GG, _JG, _TZ)),
    _Industry("L71", (0.02, 0, 0, 0, 0), 0.05, 0.8, 0.5, ("设备租赁",), (), (), None, "现代服务"),
    _Industry("L72", (0.12, 0.01, 0, 0, 0), 0.15, 0.8, 0.6, ("企业管理咨询", "商务信息咨询"),
              ("广告部",), (), None, "现代服务", ("market_order", "advertising"), (_GG,)),
    _Industry("M75", (0.08, 0, 0, 0, 0.10), -0.25, 0.6, 0.4, ("科技", "技术服务"), (),
              ("科技研究院",), None, "现代服务", ("advertising", "market_order"), (_GG,)),
    _Industry("N77", (0.01, 0, 0, 0, 0), 0.05, 1.0, 0.3, ("环保科技",), (), (),
              ("pollutant_discharge", "ecology", 0.3), "现代服务", ("environment", "market_order")),
    _Industry("O80", (0.02, 0.14, 0, 0, 0), 0.10, 1.0, 1.5, ("家政服务",),
              ("理发店", "洗衣店", "美容店", "家政服务部"), (),
              ("public_place_hygiene", "health", 0.5),
              "生活服务", ("public_health", "pricing", "fire"), (_JG,)),
    _Industry("O81", (0.01, 0.06, 0, 0, 0), 0.10, 1.0, 1.5, ("汽车维修",),
              ("汽修部", "家电维修部", "手机维修店"), (),
              ("motor_vehicle_repair", "transport", 0.6),
              "生活服务", ("product_quality", "environment", "pricing"), (_JG,)),
    _Industry("P83", (0.01, 0.005, 0, 0, 0.45), 0.10, 1.2, 2.0, ("教育科技",), ("培训部",),
              ("培训学校", "幼儿园"), ("private_school", "education", 0.9), "生活服务",
              ("pricing", "advertising", "education"), (_JG, _GG)),
    _Industry("Q84", (0.005, 0.01, 0, 0, 0.10), 0.20, 1.6, 1.5, ("医疗管理",), ("诊所",),
              ("门诊部",), ("medical_institution", "health", 1.0), "生活服务",
              ("medical", "advertising", "pricing"),
              (_GG, _JG)),
    _Industry("Q85", (0, 0, 0, 0, 0.25), 0.10, 1.0, 1.0, (), (), ("养老院", "社会工作服务中心"),
              ("elderly_care", "mca", 0.8), "生活服务", ("fire", "public_health")),
    _Industry("R88", (0.02, 0, 0, 0, 0), 0.0, 0.8, 0.5, ("文化传媒",), (), (),
              ("radio_tv_program", "culture", 0.1), "现代服务", ("advertising", "market_order"),
              (_GG,)),
    _Industry("R89", (0.01, 0.005, 0, 0, 0.10), 0.0, 0.8, 1.2, ("体育发展",), ("健身馆",),
              ("体育俱乐部",), ("sports_business", "culture", 0.3), "生活服务", ("fire", "pricing"),
              (_JG,)),
    _Industry("R90", (0, 0.01, 0, 0, 0), 0.20, 1.3, 1.5, (), ("棋牌室", "网吧"), (),
              ("entertainment", "culture", 0.9), "生活服务", ("fire", "public_health", "culture"),
              (_JG,)),
    _Industry("S95", (0, 0, 0, 1.0, 0), -0.10, 0.5, 0.3, (), (),
              ("个体劳动者协会", "餐饮行业协会", "物流协会", "电子商务协会", "企业家协会",
               "书法家协会",
               "摄影家协会", "老年体育协会", "志愿者协会", "总商会"), None, "其他"),
)  # fmt: skip
"""GB/T 4754-2017 divisions used, with shares by kind, risk effects and what follows from them."""

_TRADE_CHARS = (
    "金鑫华恒盛达兴隆泰瑞祥宏源鼎丰顺佳联润德信诚中豫通博富安康荣海天宇新航晟睿创浩远卓嘉腾锦汇亿豪凯科骏永益铭"
    "正和美乐星辰阳明东方嵩洛嘉禾聚鸿"
)
_SURNAMES = (
    "王李张刘陈杨赵郭孙马朱高胡徐吴周宋黄何郑韩冯程曹田许邓魏闫付",
    (8.0, 7.5, 7.2, 5.6, 3.6, 3.4, 2.6, 2.0, 1.7, 1.6, 1.3, 1.3, 1.1, 1.1, 1.0, 1.0, 1.0, 0.9,
     0.6, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.5, 0.6, 0.6, 0.5),
)  # fmt: skip

CHECK_ITEMS: tuple[tuple[str, str, float], ...] = (
    ("SC-GS-01", "market_order", -0.1),  # 企业公示信息 (annual report, public information)
    ("SC-DJ-02", "market_order", 0.0),  # 登记事项
    (_SP, "food_safety", 0.2),  # 食品经营
    (_CP, "product_quality", 0.1),  # 产品质量
    (_TZ, "special_equipment", 0.1),  # 特种设备
    (_JG, "pricing", 0.0),  # 价格行为
    (_GG, "advertising", 0.0),  # 广告发布
)
"""Spot-check items: id, penalty domain of what they find, effect on the problem logit."""

INSPECTION_RATES = (0.03, 0.10, 0.40)
"""Inclusion probability by observable-risk band (0, 1, >= 2 negative records in 12 months)."""

DEPARTMENTS = (
    "samr", "tax", "court", "hrss", "ndrc", "12315", "12345", "media", "third_party", "gov",
    "emergency", "fire", "ecology", "health", "education", "transport", "housing", "culture",
    "mca", "agriculture", "miit",
)  # fmt: skip
_DOMAIN_DEPT = {
    "food_safety": "samr", "product_quality": "samr", "pricing": "samr", "advertising": "samr",
    "market_order": "samr", "special_equipment": "samr", "fire": "fire", "work_safety": "emergency",
    "environment": "ecology", "transport": "transport", "construction": "housing",
    "public_health": "health", "medical": "health", "education": "education", "culture": "culture",
    "tax": "tax",
}  # fmt: skip
DOMAINS = tuple(_DOMAIN_DEPT)

ABBREVIATIONS = {
    "registration_change": "RCH", "annual_report": "AR", "tax_credit_grade": "TCG",
    "tax_declaration": "TXD", "social_insurance_arrears": "SIA", "dishonest_judgment_debtor": "DJD",
    "admin_license": "LIC", "admin_penalty": "PEN", "admin_coercion": "COE", "spot_check": "CHK",
    "abnormal_operation_list": "AOL", "serious_dishonest_list": "SDL",
    "focus_attention_list": "FAL", "court_judgment": "CJ", "credit_commitment": "CC",
    "commitment_breach": "CB", "warning_talk": "WT", "complaint": "CMP", "honor": "HON",
    "red_list": "RED", "news": "NEWS", "third_party_signal": "TPS", "shared_address": "SHA",
    "related_party": "REL",
}  # fmt: skip
"""Record categories the simulator produces (all but registration) and their id abbreviations."""

_INTERCEPT = -1.9
CENTER = -1.72
"""About the mean propensity logit (intercept + mean effects); z = logit - CENTER drives rates."""
_NEVER = np.iinfo(np.int32).max
_EPOCH = date(1970, 1, 1)

# ---- small helpers ----------------------------------------------------------------------------


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> date:
    return _EPOCH + timedelta(days=int(day))


def _shift_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _sigmoid(x: Floats) -> Floats:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))).astype(np.float32)


def _lag(rng: np.random.Generator, n: int, lo: int, mean: float, cap: int) -> Ints:
    """Reporting delays in days: lo + an exponential part, at most cap."""
    return (lo + np.minimum(np.floor(rng.exponential(mean, n)), cap - lo)).astype(np.int32)


def _pick(rng: np.random.Generator, n: int, probs: Sequence[float] | Floats) -> Ints:
    p = np.asarray(probs, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int8)


def _pick_rows(rng: np.random.Generator, weights: Floats) -> Ints:
    """One category per row from a (rows, K) matrix of non-negative weights."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    codes: Ints = np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1).astype(np.int8)
    return codes


def _lognormal(rng: np.random.Generator, median: Floats | float, sigma: float, n: int) -> Floats:
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _round_to(x: Floats, unit: float, minimum: float) -> Floats:
    return np.maximum(np.round(np.asarray(x) / unit) * unit, minimum)


# JSON values of attributes, as pyarrow text arrays (null = the key is left out).


def _jstr(vocab: Sequence[str], idx: Ints) -> pa.Array:
    texts = pa.array([json.dumps(v, ensure_ascii=False) for v in vocab], pa.string())
    return texts.take(pa.array(np.asarray(idx, dtype=np.int32)))


def _jraw(texts: Sequence[str], idx: Ints) -> pa.Array:
    """Values that are already JSON text (lists), chosen by index."""
    return pa.array(list(texts), pa.string()).take(pa.array(np.asarray(idx, dtype=np.int32)))


def _jconst(value: object, n: int) -> pa.Array:
    return pa.repeat(json.dumps(value, ensure_ascii=False), n)


def _jint(values: Ints, omit: Bools | None = None) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64), mask=omit), pa.string())


def _jnum(values: Floats) -> pa.Array:
    v = np.asarray(values, dtype=np.float64)
    return pc.cast(pa.array(v, mask=np.isnan(v)), pa.string())


def _jdate(days: Ints) -> pa.Array:
    text = pc.cast(pa.array(np.asarray(days, dtype=np.int32)).cast(pa.date32()), pa.string())
    return pc.binary_join_element_wise('"', text, '"', "")


# ---- the world: companies and their hidden propensity -----------------------------------------


@dataclass
class _World:
    start: int  # first day of the window (days since 1970-01-01)
    end: int  # last day
    bounds: Ints  # (years + 1,) first day of each simulated year; bounds[-1] = end + 1
    kind: Ints
    industry: Ints
    district: Ints
    capital: Floats
    size: Floats  # standardised log capital within the kind
    established: Ints
    exit_day: Ints  # last day of existence, _NEVER when still active
    status: Ints  # index into ENTITY_STATUSES order used below
    base: Floats  # base logit
    logit: Floats  # (n, years) logit per simulated year
    uscc: pa.Array
    alive_from: Ints = field(init=False)
    alive_to: Ints = field(init=False)
    lo: Ints = field(init=False)  # (n, years) first alive day of each year
    span: Ints = field(init=False)  # (n, years) alive days in each year

    def __post_init__(self) -> None:
        self.set_alive()

    @property
    def n(self) -> int:
        return len(self.kind)

    @property
    def years(self) -> int:
        return len(self.bounds) - 1

    def set_alive(self) -> None:
        self.alive_from = np.maximum(self.established, self.start).astype(np.int32)
        self.alive_to = np.minimum(self.exit_day, self.end).astype(np.int32)
        first = self.bounds[:-1][None, :]
        last = self.bounds[1:][None, :] - 1
        self.lo = np.maximum(first, self.alive_from[:, None]).astype(np.int32)
        hi = np.minimum(last, self.alive_to[:, None])
        self.span = np.maximum(hi - self.lo + 1, 0).astype(np.int32)

    def exposure(self) -> Floats:
        return (self.span / np.diff(self.bounds)[None, :]).astype(np.float32)

    def z(self) -> Floats:
        return (self.logit - CENTER).astype(np.float32)

    def multiplier(self, beta: float) -> Floats:
        """exp(beta z) normalised to mean 1 over the companies of each year."""
        raw = np.exp(beta * self.z())
        factor: Floats = (raw / raw.mean(axis=0, keepdims=True)).astype(np.float32)
        return factor

    def period(self, days: Ints) -> Ints:
        k = np.searchsorted(self.bounds, days, side="right") - 1
        return np.clip(k, 0, self.years - 1)

    def logit_at(self, company: Ints, days: Ints) -> Floats:
        return self.logit[company, self.period(days)].astype(np.float32)

    def z_at(self, company: Ints, days: Ints) -> Floats:
        return self.logit_at(company, days) - np.float32(CENTER)

    def by_kind(self, rates: Sequence[float]) -> Floats:
        return np.asarray(rates, dtype=np.float32)[self.kind]

    def by_industry(self, attr: str) -> Floats:
        values = np.array([getattr(i, attr) for i in INDUSTRIES], dtype=np.float32)
        return values[self.industry]

    def events(self, rng: np.random.Generator, rate: Floats, beta: float) -> tuple[Ints, Ints]:
        """Poisson events at `rate` a year x exp(beta z), on uniform alive days: (company, day)."""
        lam = rate[:, None] * self.multiplier(beta) * self.exposure()
        counts = rng.poisson(lam).ravel()
        flat = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        company = (flat // self.years).astype(np.int32)
        offset = (rng.random(flat.size) * self.span.ravel()[flat]).astype(np.int32)
        return company, (self.lo.ravel()[flat] + offset).astype(np.int32)


STATUSES = ("active", "deregistered", "revoked", "suspended")


def _world(rng: np.random.Generator, cfg: SimulationConfig) -> _World:
    n, years = cfg.companies, cfg.years
    end = _day(cfg.end)
    bounds = np.array(
        [_day(_shift_years(cfg.end, k - years)) for k in range(years)] + [end + 1], dtype=np.int32
    )
    kind = _pick(rng, n, KIND_SHARES)
    weights = np.array([i.weights for i in INDUSTRIES], dtype=np.float64)  # (industries, kinds)
    industry = np.empty(n, dtype=np.int16)
    for k in range(len(KINDS)):
        idx = np.flatnonzero(kind == k)
        industry[idx] = _pick(rng, len(idx), weights[:, k]).astype(np.int16)
    districts, district_weights = _districts()
    district = rng.choice(len(districts), size=n, p=district_weights).astype(np.int16)

    median = np.array([1e6, 3e4, 5e5, 5e4, 1e5])[kind]
    sigma = np.array([1.4, 1.0, 1.2, 0.8, 1.0])[kind]
    size = rng.standard_normal(n)
    capital = np.exp(np.log(median) + sigma * size)
    unit = np.array([1e4, 1e3, 1e4, 1e3, 1e3])[kind]
    floor = np.array([1e4, 1e3, 1e4, 3e4, 3e4])[kind]
    capital = np.maximum(np.round(capital / unit) * unit, floor)

    age_years = rng.exponential(np.array([7.0, 5.0, 8.0, 10.0, 10.0])[kind])
    earliest = np.array(
        [_day(date(1984, 1, 1)), _day(date(1987, 1, 1)), _day(date(2007, 7, 1))]
        + [_day(date(1990, 1, 1))] * 2
    )[kind]
    established = np.maximum(end - (age_years * 365.25).astype(np.int64), earliest).astype(np.int32)

    base = (
        _INTERCEPT
        + np.array([i.risk for i in INDUSTRIES])[industry]
        + np.array([0.0, 0.1, 0.3, -0.3, -0.3])[kind]
        - 0.15 * size
        + rng.normal(0.0, 0.75, n)
    ).astype(np.float32)
    # repeat offenders: a persistent minority that finds itself in trouble again and again
    offender = rng.random(n) < cfg.repeat_offenders
    base = (
        base + np.float32(cfg.offender_shift) * (offender - np.float32(cfg.repeat_offenders))
    ).astype(np.float32)
    drift = np.empty((n, years), dtype=np.float32)
    drift[:, 0] = rng.normal(0.0, 0.5, n)
    for k in range(1, years):
        drift[:, k] = 0.7 * drift[:, k - 1] + np.sqrt(1 - 0.49) * rng.normal(0.0, 0.5, n)
    logit = base[:, None] + drift

    world = _World(
        start=int(bounds[0]),
        end=end,
        bounds=bounds,
        kind=kind,
        industry=industry,
        district=district,
        capital=capital,
        size=size.astype(np.float32),
        established=established,
        exit_day=np.full(n, _NEVER, dtype=np.int32),
        status=np.zeros(n, dtype=np.int8),
        base=base,
        logit=logit,
        uscc=pa.array([], pa.string()),
    )

    # Exits: yearly hazards (deregistered, revoked, suspended) by kind, revocation risk-driven.
    hazards = np.stack(
        [
            world.by_kind((0.010, 0.020, 0.015, 0.008, 0.008))[:, None] * world.multiplier(0.3),
            world.by_kind((0.003, 0.002, 0.006, 0.002, 0.002))[:, None] * world.multiplier(1.2),
            world.by_kind((0.001, 0.002, 0.001, 0.0, 0.0))[:, None] * world.multiplier(0.0),
        ],
        axis=2,
    )  # (n, years, 3)
    total = hazards.sum(axis=2)
    hit = rng.random((n, years)) < 1 - np.exp(-total * world.exposure())
    first = np.argmax(hit, axis=1)
    exits = np.flatnonzero(hit.any(axis=1))
    k = first[exits]
    day = world.lo[exits, k] + (rng.random(len(exits)) * world.span[exits, k]).astype(np.int32)
    how = _pick_rows(rng, hazards[exits, k, :]) + 1
    day = np.maximum(day, established[exits] + 60)
    ok = day <= end
    world.exit_day[exits[ok]] = day[ok]
    world.status[exits[ok]] = how[ok]
    world.set_alive()

    kinds = np.array(KINDS)[kind]
    regions = np.array([d.code for d in districts])[district]
    world.uscc = pa.array(codes.generate_many(rng, kinds, regions), pa.string())
    return world


def _names(rng: np.random.Generator, w: _World) -> pa.Array:
    """Synthetic Chinese names in the patterns registrars see (see the module docstring)."""
    n = w.n
    districts, _ = _districts()
    display = pa.array([d.display for d in districts]).take(pa.array(w.district))
    city = pa.array([d.city for d in districts]).take(pa.array(w.district))
    chars = pa.array(list(_TRADE_CHARS))
    trade = pc.binary_join_element_wise(
        chars.take(pa.array(rng.integers(0, len(_TRADE_CHARS), n))),
        chars.take(pa.array(rng.integers(0, len(_TRADE_CHARS), n))),
        "",
    )
    surname = pa.array(list(_SURNAMES[0])).take(pa.array(_pick(rng, n, _SURNAMES[1])))

    def word(attr: str) -> pa.Array:
        vocab: list[str] = []
        offset, count = [], []
        for ind in INDUSTRIES:
            words = getattr(ind, attr) or ("",)
            offset.append(len(vocab))
            count.append(len(words))
            vocab.extend(words)
        idx = np.asarray(offset)[w.industry] + (
            rng.random(n) * np.asarray(count)[w.industry]
        ).astype(np.int64)
        return pa.array(vocab).take(pa.array(idx))

    ent_word, shop_word, org_word = word("ent"), word("shop"), word("org")
    form = rng.random(n)
    prefix = pc.if_else(
        pa.array((w.capital >= 1e7) & (form < 0.5)),
        pa.repeat("河南", n),
        pc.if_else(pa.array(form < 0.75), city, display),
    )
    company = pc.if_else(pa.array(rng.random(n) < 0.85), pa.repeat("有限公司", n), "有限责任公司")
    enterprise = pc.binary_join_element_wise(prefix, trade, ent_word, company, "")
    shop = pc.binary_join_element_wise(display, surname, pa.repeat("记", n), shop_word, "")
    org = pc.binary_join_element_wise(display, trade, org_word, "")
    group = pc.binary_join_element_wise(display, org_word, "")
    kind = w.kind
    return pc.case_when(
        pc.make_struct(
            pa.array(kind == ENT),
            pa.array(kind == IND),
            pa.array(kind == SOC),
            field_names=["enterprise", "individual", "group"],
        ),
        enterprise,
        shop,
        group,
        org,
    )


def _entities(rng: np.random.Generator, w: _World) -> pa.Table:
    """One version per company as registered, plus one when it exits (a new status)."""
    names = _names(rng, w)
    recorded = np.minimum(w.established + _lag(rng, w.n, 0, 3.0, 15), w.end)
    registered = pa.table(
        {
            "uscc": w.uscc,
            "name": names,
            "industry": pa.array([i.code for i in INDUSTRIES]).take(pa.array(w.industry)),
            "region": pa.array([d.code for d in _districts()[0]]).take(pa.array(w.district)),
            "entity_type": pa.array(list(KIND_ENTITY_TYPE)).take(pa.array(w.kind)),
            "registered_capital": pa.array(w.capital, pa.float64()),
            "established_date": pa.array(w.established.astype(np.int32)).cast(pa.date32()),
            "status": pa.array(["active"] * w.n),
            "recorded_date": pa.array(recorded.astype(np.int32)).cast(pa.date32()),
        }
    )
    # the exit is registered a fixed 10 days after the last day (no draw: keeps the stream)
    exited = np.flatnonzero(w.exit_day != _NEVER)
    exit_version = registered.take(pa.array(exited))
    exit_version = exit_version.set_column(
        exit_version.schema.get_field_index("status"),
        "status",
        pa.array(list(STATUSES)).take(pa.array(w.status[exited])),
    )
    exit_recorded = np.minimum(np.maximum(w.exit_day[exited] + 10, recorded[exited] + 1), w.end)
    exit_version = exit_version.set_column(
        exit_version.schema.get_field_index("recorded_date"),
        "recorded_date",
        pa.array(exit_recorded.astype(np.int32)).cast(pa.date32()),
    )
    return pa.concat_tables([registered, exit_version])


# ---- records ----------------------------------------------------------------------------------


@dataclass
class _Ref:
    """An attribute whose value is the record_id of another simulated record (set at the end)."""

    category: str
    rows: Ints


_Field: TypeAlias = "pa.Array | _Ref"


@dataclass
class _Chunk:
    company: Ints
    event: Ints
    recorded: Ints
    severity: Ints  # index into the category's severities, -1 = none
    amount: Floats | None  # NaN = none
    dept: Ints
    fields: dict[str, _Field]


class _Records:
    """Collects simulated rows per category, checks them against the catalogue, assigns ids."""

    def __init__(self, catalogue: Catalogue, world: _World) -> None:
        self.catalogue = catalogue
        self.world = world
        for code in ABBREVIATIONS:
            if code not in catalogue:
                raise KeyError(f"catalogue {catalogue.version} lacks simulated category {code!r}")
        self.chunks: dict[str, list[_Chunk]] = {code: [] for code in ABBREVIATIONS}
        self.size: dict[str, int] = dict.fromkeys(ABBREVIATIONS, 0)
        self.escalated = np.zeros(world.n, dtype=bool)  # moved from abnormal to serious list

    def severity(self, category: str, names: Sequence[str]) -> Ints:
        """Codes of severity names in the category's catalogue order (for vectorised choices)."""
        allowed = self.catalogue[category].severities
        return np.array([allowed.index(s) for s in names], dtype=np.int8)

    def add(
        self,
        category: str,
        company: Ints,
        event: Ints,
        recorded: Ints,
        *,
        dept: str | Ints,
        severity: str | Ints | None = None,
        amount: Floats | None = None,
        fields: Mapping[str, _Field] | None = None,
    ) -> Ints:
        """Add rows; return each one's row number, or -1 where it was dropped.

        A row is dropped when its event falls outside the company's alive days in the window, it
        is recorded after `end`, or a record it refers to was dropped.
        """
        cat = self.catalogue[category]
        w = self.world
        company = np.asarray(company, dtype=np.int32)
        event = np.asarray(event, dtype=np.int32)
        recorded = np.asarray(recorded, dtype=np.int32)
        n = len(company)
        keep = (
            (event >= w.alive_from[company])
            & (event <= w.alive_to[company])
            & (recorded >= event)
            & (recorded <= w.end)
        )
        fields = dict(fields or {})
        for value in fields.values():
            if isinstance(value, _Ref):
                keep &= value.rows >= 0
            elif len(value) != n:
                raise ValueError(f"{category}: attribute of length {len(value)} for {n} rows")
        if severity is None:
            if cat.severity_required:
                raise ValueError(f"{category} requires a severity")
            sev = np.full(n, -1, dtype=np.int8)
        elif isinstance(severity, str):
            sev = np.full(n, cat.severities.index(severity), dtype=np.int8)
        else:
            sev = np.asarray(severity, dtype=np.int8)
            if len(sev) and (sev.min() < 0 or sev.max() >= len(cat.severities)):
                raise ValueError(f"{category}: severity code out of range")
        if cat.amount == "none" and amount is not None:
            raise ValueError(f"{category} has no amount")
        if amount is not None:
            amount = np.asarray(amount, dtype=np.float64)
            if cat.amount == "required" and np.isnan(amount).any():
                raise ValueError(f"{category} requires an amount")
        elif cat.amount == "required":
            raise ValueError(f"{category} requires an amount")
        for name in cat.required_attributes:
            if name not in fields:
                raise ValueError(f"{category} requires attribute {name!r}")
        if isinstance(dept, str):
            dept_codes = np.full(n, DEPARTMENTS.index(dept), dtype=np.int8)
        else:
            dept_codes = np.asarray(dept, dtype=np.int8)

        rows = np.full(n, -1, dtype=np.int64)
        kept = int(keep.sum())
        rows[keep] = self.size[category] + np.arange(kept)
        self.size[category] += kept
        mask = pa.array(keep)
        kept_fields: dict[str, _Field] = {
            key: _Ref(v.category, v.rows[keep]) if isinstance(v, _Ref) else v.filter(mask)
            for key, v in fields.items()
        }
        for name in cat.required_attributes:
            value = kept_fields[name]
            if not isinstance(value, _Ref) and value.null_count:
                raise ValueError(f"{category}: attribute {name!r} missing on some rows")
        self.chunks[category].append(
            _Chunk(
                company=company[keep],
                event=event[keep],
                recorded=recorded[keep],
                severity=sev[keep],
                amount=None if amount is None else amount[keep],
                dept=dept_codes[keep],
                fields=kept_fields,
            )
        )
        return rows

    # views used while simulating (what was known or done before a day)

    def negative_counts(self, lo: int, hi: int) -> Ints:
        """Negative records per company recorded in [lo, hi) (what a regulator could see)."""
        counts = np.zeros(self.world.n, dtype=np.int32)
        for code, chunks in self.chunks.items():
            cat = self.catalogue[code]
            negative = np.array(
                [cat.polarity_of(s) == "negative" for s in cat.severities]
                + [cat.polarity_of(None) == "negative"]
            )
            for ch in chunks:
                m = negative[ch.severity] & (ch.recorded >= lo) & (ch.recorded < hi)
                counts += np.bincount(ch.company[m], minlength=self.world.n).astype(np.int32)
        return counts

    def event_keys(self, category: str, severity: str | None = None) -> Ints:
        """Sorted company x 100000 + event day of a category's rows (to count recent events)."""
        keys = []
        code = None if severity is None else self.catalogue[category].severities.index(severity)
        for ch in self.chunks[category]:
            m = np.ones(len(ch.company), dtype=bool) if code is None else ch.severity == code
            keys.append(ch.company[m].astype(np.int64) * 100_000 + ch.event[m])
        return np.sort(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)

    def listings(self, category: str) -> tuple[Ints, Ints]:
        """(company, recorded day) of the category's `listed` rows."""
        code = self.catalogue[category].severities.index("listed")
        comp = [ch.company[ch.severity == code] for ch in self.chunks[category]]
        rec = [ch.recorded[ch.severity == code] for ch in self.chunks[category]]
        if not comp:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        return np.concatenate(comp), np.concatenate(rec)

    # the end: ids, attributes, one table

    def table(self) -> tuple[pa.Table, dict[str, tuple[Ints, pa.Array]]]:
        """All rows as canonical records, and per category (row → sorted position, ids)."""
        order: dict[str, Ints] = {}
        ids: dict[str, tuple[Ints, pa.Array]] = {}
        columns: dict[str, dict[str, Any]] = {}
        for code, chunks in self.chunks.items():
            if not chunks:
                continue
            company = np.concatenate([c.company for c in chunks])
            event = np.concatenate([c.event for c in chunks])
            recorded = np.concatenate([c.recorded for c in chunks])
            o = np.lexsort((company, event, recorded)).astype(np.int64)
            pos = np.empty(len(o), dtype=np.int64)
            pos[o] = np.arange(len(o))
            seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(len(o))), pa.string()), 9, "0")
            ids[code] = (pos, pc.binary_join_element_wise(f"SIM-{ABBREVIATIONS[code]}-", seq, ""))
            order[code] = o
            columns[code] = {"company": company, "event": event, "recorded": recorded}

        def resolve(ref: _Ref) -> pa.Array:
            pos, text = ids[ref.category]
            return pc.binary_join_element_wise('"', text.take(pa.array(pos[ref.rows])), '"', "")

        tables = []
        for code, chunks in self.chunks.items():
            if not chunks:
                continue
            cat = self.catalogue[code]
            o = pa.array(order[code])
            cols = columns[code]
            severity = np.concatenate([c.severity for c in chunks])[order[code]]
            amount = np.concatenate(
                [np.full(len(c.company), np.nan) if c.amount is None else c.amount for c in chunks]
            )[order[code]]
            dept = np.concatenate([c.dept for c in chunks])[order[code]]
            attributes = pa.concat_arrays(
                [_render(c.fields, len(c.company), resolve) for c in chunks]
            )
            n = len(order[code])
            tables.append(
                pa.table(
                    {
                        "record_id": ids[code][1],
                        "uscc": self.world.uscc.take(pa.array(cols["company"][order[code]])),
                        "category": pa.repeat(code, n),
                        "event_date": pa.array(cols["event"][order[code]]).cast(pa.date32()),
                        "recorded_date": pa.array(cols["recorded"][order[code]]).cast(pa.date32()),
                        "source_dept": pa.array(list(DEPARTMENTS)).take(pa.array(dept)),
                        "severity": pa.array(list(cat.severities) or [""], pa.string()).take(
                            pa.array(np.maximum(severity, 0), mask=severity < 0)
                        ),
                        "amount": pa.array(amount, pa.float64(), mask=np.isnan(amount)),
                        "attributes": attributes.take(o),
                    }
                )
            )
        if not tables:
            return _empty_records(), ids
        return pa.concat_tables(tables), ids


def _render(fields: Mapping[str, _Field], n: int, resolve: Callable[[_Ref], pa.Array]) -> pa.Array:
    """JSON object text per row from per-key JSON value texts (a null value leaves the key out)."""
    if not fields:
        return pa.repeat("{}", n)
    pieces = []
    for key, value in fields.items():
        text = resolve(value) if isinstance(value, _Ref) else value
        pieces.append(pc.binary_join_element_wise(json.dumps(key) + ": ", text, ""))
    body = (
        pieces[0]
        if len(pieces) == 1
        else pc.binary_join_element_wise(*pieces, ", ", null_handling="skip")
    )
    return pc.binary_join_element_wise("{", pc.fill_null(body, ""), "}", "")


def _empty_records() -> pa.Table:
    types = {"event_date": pa.date32(), "recorded_date": pa.date32(), "amount": pa.float64()}
    return pa.table({c: pa.array([], types.get(c, pa.string())) for c in RECORD_COLUMNS})


# ---- generators, one per family of records ----------------------------------------------------


def _removals(
    rng: np.random.Generator,
    rec: _Records,
    category: str,
    rows: Ints,
    company: Ints,
    listed_recorded: Ints,
    p_remove: Floats | float,
    delay: tuple[int, float, int],
    *,
    dept: str | Ints,
    extra: Mapping[str, pa.Array] | None = None,
) -> Ints:
    """Removal records for listings (ref = the listing's id); returns each listing's removal day.

    The removal day is after the listing was recorded, so a removal never outlives its listing.
    Listings not removed get _NEVER.
    """
    n = len(rows)
    removed = rng.random(n) < p_remove
    day = (listed_recorded + 1 + _lag(rng, n, *delay)).astype(np.int32)
    recorded = day + _lag(rng, n, 0, 3.0, 15)
    sel = removed & (rows >= 0)
    fields: dict[str, _Field] = {k: v.filter(pa.array(sel)) for k, v in (extra or {}).items()}
    fields["ref"] = _Ref(category, rows[sel])
    dept_sel = dept if isinstance(dept, str) else np.asarray(dept)[sel]
    rec.add(
        category,
        np.asarray(company)[sel],
        day[sel],
        recorded[sel],
        severity="removed",
        dept=dept_sel,
        fields=fields,
    )
    return np.where(removed, day, _NEVER).astype(np.int32)


def _annual_reports(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Annual reports per filing season, missing ones put on the abnormal-operation list."""
    first_season, last_season = _date(w.start).year, _date(w.end).year
    samr = w.kind <= COOP
    miss_base = np.array([-2.6, -2.1, -1.5, 0.0, 0.0], dtype=np.float32)
    for season in range(first_season, last_season + 1):
        jan1, deadline = _day(date(season, 1, 1)), _day(date(season, 6, 30))
        year_end = _day(date(season - 1, 12, 31))
        company = np.flatnonzero(samr & (w.established <= year_end) & (w.exit_day > deadline))
        n = len(company)
        z = w.z_at(company, np.full(n, deadline))
        missing = rng.random(n) < _sigmoid(miss_base[w.kind[company]] + 1.1 * z)
        year = _jconst(season - 1, n)
        employees = np.where(
            w.kind[company] == ENT,
            np.round(_lognormal(rng, 8.0, 1.2, n)),
            1 + rng.poisson(np.where(w.kind[company] == COOP, 6.0, 1.2)),
        )
        disclosure = np.where(
            rng.random(n) < _sigmoid(2.0 - 0.8 * z), 0, np.where(rng.random(n) < 0.8, 1, 2)
        )
        filed = deadline - np.minimum(np.floor(rng.exponential(45.0, n)), deadline - jan1)
        on = ~missing
        rec.add(
            "annual_report",
            company[on],
            filed[on],
            filed[on] + _lag(rng, int(on.sum()), 0, 0.5, 2),
            severity="on_time",
            dept="samr",
            fields={
                "year": year.filter(pa.array(on)),
                "employees": _jint(employees[on]),
                "disclosure": _jstr(("all", "partial", "none"), disclosure[on]),
            },
        )

        m = company[missing]
        k = len(m)
        zm = z[missing]
        day = np.full(k, deadline + 1, dtype=np.int32)
        rec.add(
            "annual_report",
            m,
            day,
            day + _lag(rng, k, 0, 1.0, 3),
            severity="missing",
            dept="samr",
            fields={"year": _jconst(season - 1, k)},
        )
        listed = day + _lag(rng, k, 0, 7.0, 30)
        listed_rec = listed + _lag(rng, k, 0, 2.0, 10)
        reason = _jconst("missing_annual_report", k)
        rows = rec.add(
            "abnormal_operation_list",
            m,
            listed,
            listed_rec,
            severity="listed",
            dept="samr",
            fields={"reason": reason},
        )
        late = rng.random(k) < _sigmoid(0.3 - 1.0 * zm)
        late_day = listed + 1 + _lag(rng, k, 0, 60.0, 170)
        rec.add(
            "annual_report",
            m[late],
            late_day[late],
            late_day[late] + _lag(rng, int(late.sum()), 0, 0.5, 2),
            severity="late",
            dept="samr",
            fields={
                "year": _jconst(season - 1, int(late.sum())),
                "employees": _jint(employees[missing][late]),
                "disclosure": _jstr(("all", "partial", "none"), disclosure[missing][late]),
            },
        )
        # the removal follows the late filing (its delay counts from the later of the two days)
        start_from = np.maximum(late_day, listed_rec) - listed_rec
        removal_rows = np.where(late, rows, -1)
        _removals(
            rng,
            rec,
            "abnormal_operation_list",
            removal_rows,
            m,
            listed_rec + start_from,
            1.0,
            (0, 5.0, 20),
            dept="samr",
            extra={"reason": reason},
        )
        _abnormal_to_serious(rng, w, rec, m, listed, rows, late, late_day)


def _abnormal_to_serious(
    rng: np.random.Generator,
    w: _World,
    rec: _Records,
    company: Ints,
    listed: Ints,
    rows: Ints,
    cured: Bools,
    cured_day: Ints,
) -> None:
    """Enterprises still listed three years after an abnormal listing go on the serious list.

    Once per company: a company with several uncured listings is moved at the first one's term.
    """
    due = listed + 1095
    still = (rows >= 0) & (~cured | (cured_day > due)) & (w.kind[company] != IND)
    day = due + _lag(rng, len(company), 0, 10.0, 30)
    candidates = np.flatnonzero(still & (day <= w.end) & ~rec.escalated[company])
    candidates = candidates[np.lexsort((day[candidates], company[candidates]))]
    first = np.unique(company[candidates], return_index=True)[1]
    chosen = candidates[first]
    rec.escalated[company[chosen]] = True
    _serious_list(rng, w, rec, company[chosen], day[chosen], "abnormal_list_3_years", "samr")


def _serious_list(
    rng: np.random.Generator, w: _World, rec: _Records, company: Ints, day: Ints, reason: str,
    dept: str,
) -> None:  # fmt: skip
    """Serious illegal and dishonest list: removed early after >= 1 year or after 3 years."""
    n = len(company)
    recorded = day + _lag(rng, n, 0, 3.0, 15)
    rows = rec.add(
        "serious_dishonest_list",
        company,
        day,
        recorded,
        severity="listed",
        dept=dept,
        fields={"reason": _jconst(reason, n)},
    )
    early = rng.random(n) < 0.3
    delay = np.where(early, 365 + _lag(rng, n, 0, 120.0, 700), 1095)
    _removals(
        rng,
        rec,
        "serious_dishonest_list",
        rows,
        company,
        recorded + delay,
        1.0,
        (0, 2.0, 10),
        dept=dept,
    )


def _focus_list(
    rng: np.random.Generator, rec: _Records, company: Ints, day: Ints, reason: str
) -> None:
    n = len(company)
    recorded = day + _lag(rng, n, 0, 3.0, 15)
    dept = np.where(rng.random(n) < 0.7, DEPARTMENTS.index("samr"), DEPARTMENTS.index("ndrc"))
    rows = rec.add(
        "focus_attention_list",
        company,
        day,
        recorded,
        severity="listed",
        dept=dept,
        fields={"reason": _jconst(reason, n)},
    )
    _removals(
        rng,
        rec,
        "focus_attention_list",
        rows,
        company,
        recorded,
        1.0,
        (180, 200.0, 730),
        dept=dept,
    )


def _taxes(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Quarterly declarations, yearly tax credit grades and the A-grade red list."""
    n = w.n
    declares = rng.random(n) < np.select(
        [w.kind == ENT, w.kind == COOP, w.kind == IND],
        [1.0, 0.6, _sigmoid(-1.6 + 0.8 * w.size)],
        0.3,
    )
    tax_items = sorted({i.tax_item for i in INDUSTRIES} | {"经营所得", "应纳税所得额"})
    item_of_industry = np.array([tax_items.index(i.tax_item) for i in INDUSTRIES])
    first = date(_date(w.start).year - 1, 10, 1)
    quarter = first
    while _day(quarter) <= w.end:
        q_end = _day(_add_months(quarter, 3)) - 1
        company = np.flatnonzero(declares & (w.established <= q_end))
        k = len(company)
        due = _day(_add_months(quarter, 3)) + 14  # the 15th of the next month
        z = w.z_at(company, np.full(k, due))
        filed = rng.random(k) < _sigmoid(3.0 - 1.0 * z)
        late = rng.random(k) < _sigmoid(-2.5 + 0.8 * z)
        day = np.where(
            late, due + 1 + _lag(rng, k, 0, 20.0, 75), due - (rng.random(k) * 15).astype(np.int32)
        )
        zero = rng.random(k) < _sigmoid(-1.2 + 0.8 * z)
        amount = np.where(
            zero,
            0.0,
            np.round(_lognormal(rng, np.exp(0.6 * np.log(w.capital[company]) + 2.0), 1.2, k), 2),
        )
        kind = w.kind[company]
        income = (kind == IND) & (rng.random(k) < 0.3)
        category = np.where(income, 1, np.where(kind >= SOC, 2, 0))
        item = np.where(
            income,
            tax_items.index("经营所得"),
            np.where(
                kind >= SOC, tax_items.index("应纳税所得额"), item_of_industry[w.industry[company]]
            ),
        )
        rec.add(
            "tax_declaration",
            company[filed],
            day[filed],
            day[filed] + _lag(rng, int(filed.sum()), 0, 1.0, 5),
            amount=amount[filed],
            dept="tax",
            fields={
                "period_end": _jdate(np.full(int(filed.sum()), q_end)),
                "tax_category": _jstr(("增值税", "个人所得税", "企业所得税"), category[filed]),
                "tax_item": _jstr(tax_items, item[filed]),
            },
        )
        quarter = _add_months(quarter, 3)

    # Tax credit grades, published in April for the previous year.
    assessed = declares & (rng.random(n) < w.by_kind((0.95, 0.30, 0.80, 0.0, 0.0)))
    t_d, t_c, t_a = -2.6, -2.0, 1.75
    red_row = np.full(n, -1, dtype=np.int64)
    red_recorded = np.zeros(n, dtype=np.int32)
    grades = ("A", "B", "M", "C", "D")
    for season in range(_date(w.start).year, _date(w.end).year + 1):
        april = _day(date(season, 4, 1))
        company = np.flatnonzero(assessed & (w.established <= _day(date(season - 1, 12, 31))))
        k = len(company)
        day = april + (rng.random(k) * 30).astype(np.int32)
        z = w.z_at(company, day)
        latent = -1.1 * z + rng.standard_normal(k)
        new = w.established[company] >= _day(date(season - 1, 1, 1))
        m_grade = new | (rng.random(k) < _sigmoid(-2.8 + 0.5 * z))
        grade = np.select(
            [m_grade, latent < t_d, latent < t_c, latent < t_a], [2, 4, 3, 1], 0
        ).astype(np.int8)
        points = np.select(
            [grade == 0, grade == 1, grade == 3, grade == 4],
            [
                90 + np.floor(10 * (1 - np.exp(-(latent - t_a)))),
                np.minimum(70 + np.floor(20 * (latent - t_c) / (t_a - t_c)), 89),
                np.minimum(40 + np.floor(30 * (latent - t_d) / (t_c - t_d)), 69),
                np.maximum(39 - np.floor(15 * (t_d - latent)), 0),
            ],
            np.nan,
        )
        recorded = day + _lag(rng, k, 0, 5.0, 30)
        graded = rec.add(
            "tax_credit_grade",
            company,
            day,
            recorded,
            severity=rec.severity("tax_credit_grade", grades)[grade],
            amount=points,
            dept="tax",
            fields={"year": _jconst(season - 1, k)},
        )
        # A grades go on the red list; the first later non-A grade takes them off
        alive = graded >= 0
        list_now = alive & (grade == 0) & (red_row[company] < 0)
        lc = company[list_now]
        lday = recorded[list_now] + _lag(rng, len(lc), 0, 10.0, 30)
        lrec = lday + _lag(rng, len(lc), 0, 2.0, 10)
        rows = rec.add(
            "red_list",
            lc,
            lday,
            lrec,
            severity="listed",
            dept="tax",
            fields={"list": _jconst("a_grade_taxpayer", len(lc))},
        )
        red_row[lc] = rows
        red_recorded[lc] = lrec
        off = alive & (grade != 0) & (red_row[company] >= 0)
        oc = company[off]
        _removals(
            rng,
            rec,
            "red_list",
            red_row[oc],
            oc,
            np.maximum(recorded[off], red_recorded[oc]),
            1.0,
            (0, 5.0, 30),
            dept="tax",
            extra={"list": _jconst("a_grade_taxpayer", len(oc))},
        )
        red_row[oc] = -1


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


_PENALTY_TYPES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("warning",), 0.3), (("fine",), 0.5), (("warning", "fine"), 0.2),  # minor
    (("fine",), 0.6), (("fine", "confiscation"), 0.4),  # general
    (("fine", "confiscation"), 0.35), (("fine", "business_restriction"), 0.15),
    (("fine", "licence_revoked"), 0.15), (("fine", "closure"), 0.10),
    (("fine", "employment_ban"), 0.05), (("fine", "qualification_downgrade"), 0.10),
    (("fine", "confiscation", "licence_revoked"), 0.10),  # serious
)  # fmt: skip
_PENALTY_GROUPS = ((0, 3), (3, 5), (5, 12))  # minor, general, serious slices of _PENALTY_TYPES


def _penalties(
    rng: np.random.Generator,
    w: _World,
    rec: _Records,
    company: Ints,
    day: Ints,
    level: Ints,
    domain: Ints | None = None,
) -> None:
    """Administrative penalties (level 0 minor, 1 general, 2 serious) and what follows from them."""
    n = len(company)
    if domain is None:
        offsets: list[int] = []
        counts: list[int] = []
        vocab: list[int] = []
        for ind in INDUSTRIES:
            offsets.append(len(vocab))
            counts.append(len(ind.domains))
            vocab.extend(DOMAINS.index(d) for d in ind.domains)
        ind_idx = w.industry[company]
        pick = np.asarray(offsets)[ind_idx] + (rng.random(n) * np.asarray(counts)[ind_idx]).astype(
            np.int64
        )
        domain = np.where(
            rng.random(n) < 0.1, DOMAINS.index("tax"), np.asarray(vocab, dtype=np.int64)[pick]
        )
    level = np.asarray(level)
    types = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for lv, (a, b) in enumerate(_PENALTY_GROUPS):
        p = np.cumsum([pt[1] for pt in _PENALTY_TYPES[a:b]])
        choice = a + np.minimum(np.searchsorted(p / p[-1], u, side="right"), b - a - 1)
        types = np.where(level == lv, choice, types)
    fine = np.select(
        [level == 0, level == 1],
        [
            _round_to(_lognormal(rng, 2000.0, 0.8, n), 100, 100),
            _round_to(_lognormal(rng, 20000.0, 1.0, n), 100, 1000),
        ],
        _round_to(_lognormal(rng, 200000.0, 1.1, n), 1000, 10000),
    )
    fine = np.where(types == 0, np.nan, fine)  # a warning alone carries no fine
    recorded = day + _lag(rng, n, 0, 6.0, 20)
    dept = np.array([DEPARTMENTS.index(_DOMAIN_DEPT[d]) for d in DOMAINS])[domain]
    rows = rec.add(
        "admin_penalty",
        company,
        day,
        recorded,
        severity=rec.severity("admin_penalty", ("minor", "general", "serious"))[level],
        amount=fine,
        dept=dept,
        fields={
            "penalty_types": _jraw([json.dumps(t[0]) for t in _PENALTY_TYPES], types),
            "domain": _jstr(DOMAINS, domain),
        },
    )
    kept = rows >= 0
    revoked = kept & np.isin(types, [7, 11])
    licences = sorted({i.licence[0] for i in INDUSTRIES if i.licence} | {"other"})
    lic_of_ind = np.array(
        [licences.index(i.licence[0] if i.licence else "other") for i in INDUSTRIES]
    )
    lic_dept = np.array(
        [DEPARTMENTS.index(i.licence[1] if i.licence else "samr") for i in INDUSTRIES]
    )
    rc = company[revoked]
    rec.add(
        "admin_license",
        rc,
        day[revoked],
        recorded[revoked],
        severity="revoked",
        dept=lic_dept[w.industry[rc]],
        fields={"licence": _jstr(licences, lic_of_ind[w.industry[rc]])},
    )
    z = w.z_at(company, day)
    to_serious = kept & (level == 2) & (rng.random(n) < _sigmoid(-1.0 + 0.5 * z))
    k = int(to_serious.sum())
    _serious_list(
        rng,
        w,
        rec,
        company[to_serious],
        recorded[to_serious] + _lag(rng, k, 20, 30.0, 120),
        "serious_penalty",
        "samr",
    )
    to_focus = kept & (level == 1) & (rng.random(n) < 0.06)
    k = int(to_focus.sum())
    _focus_list(
        rng,
        rec,
        company[to_focus],
        recorded[to_focus] + _lag(rng, k, 10, 20.0, 90),
        "general_penalty",
    )


def _supervision(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Penalties, licences, coercion, lists, commitments and warning talks at their yearly rates."""
    # registration changes
    comp, day = w.events(rng, w.by_kind((0.12, 0.03, 0.05, 0.04, 0.04)), 0.3)
    n = len(comp)
    kinds = w.kind[comp]
    names = ("legal_representative", "address", "name", "capital", "scope", "shareholder")
    weights = np.where(
        (kinds == ENT)[:, None],
        np.array([0.22, 0.25, 0.08, 0.12, 0.25, 0.08]),
        np.array([0.25, 0.35, 0.20, 0.05, 0.15, 0.0]),
    )
    weights[:, 0] *= np.exp(0.5 * w.z_at(comp, day))
    sev = _pick_rows(rng, weights)
    factor = np.exp(rng.normal(0.4, 0.8, n))
    amount = np.where(sev == 3, _round_to(w.capital[comp] * factor, 1000, 1000), np.nan)
    dept = np.where(kinds >= SOC, DEPARTMENTS.index("mca"), DEPARTMENTS.index("samr"))
    rec.add(
        "registration_change",
        comp,
        day,
        day + _lag(rng, n, 0, 1.0, 5),
        severity=rec.severity("registration_change", names)[sev],
        amount=amount,
        dept=dept,
    )

    # licences: granted to new companies in licensed trades, renewals, other grants
    licences = sorted({i.licence[0] for i in INDUSTRIES if i.licence} | {"other"})
    lic_of_ind = np.array(
        [licences.index(i.licence[0] if i.licence else "other") for i in INDUSTRIES]
    )
    lic_share = np.array([i.licence[2] if i.licence else 0.0 for i in INDUSTRIES])
    lic_dept = np.array(
        [DEPARTMENTS.index(i.licence[1] if i.licence else "samr") for i in INDUSTRIES]
    )
    new = np.flatnonzero((w.established >= w.start) & (rng.random(w.n) < lic_share[w.industry]))
    gday = w.established[new] + _lag(rng, len(new), 3, 20.0, 90)
    rec.add(
        "admin_license",
        new,
        gday,
        gday + _lag(rng, len(new), 0, 3.0, 10),
        severity="granted",
        dept=lic_dept[w.industry[new]],
        fields={"licence": _jstr(licences, lic_of_ind[w.industry[new]])},
    )
    comp, day = w.events(rng, (lic_share[w.industry] * 0.15).astype(np.float32), 0.0)
    rec.add(
        "admin_license",
        comp,
        day,
        day + _lag(rng, len(comp), 0, 3.0, 10),
        severity="renewed",
        dept=lic_dept[w.industry[comp]],
        fields={"licence": _jstr(licences, lic_of_ind[w.industry[comp]])},
    )
    comp, day = w.events(rng, w.by_kind((0.04, 0.02, 0.04, 0.02, 0.04)), 0.0)
    rec.add(
        "admin_license",
        comp,
        day,
        day + _lag(rng, len(comp), 0, 3.0, 10),
        severity="granted",
        dept="samr",
        fields={"licence": _jconst("other", len(comp))},
    )
    comp, day = w.events(rng, (lic_share[w.industry] * 0.003).astype(np.float32), 1.3)
    rec.add(
        "admin_license",
        comp,
        day,
        day + _lag(rng, len(comp), 0, 3.0, 10),
        severity="revoked",
        dept=lic_dept[w.industry[comp]],
        fields={"licence": _jstr(licences, lic_of_ind[w.industry[comp]])},
    )

    # administrative penalties
    rate = w.by_kind((0.030, 0.020, 0.008, 0.004, 0.006)) * w.by_industry("penalty")
    comp, day = w.events(rng, rate, 1.2)
    z = w.z_at(comp, day)
    level_w = np.stack(
        [np.ones_like(z), (0.38 / 0.55) * np.exp(0.3 * z), (0.04 / 0.55) * np.exp(0.6 * z)], axis=1
    )
    _penalties(rng, w, rec, comp, day, _pick_rows(rng, level_w))

    # administrative coercion
    comp, day = w.events(rng, w.by_kind((0.004, 0.002, 0.002, 0.001, 0.001)), 1.3)
    n = len(comp)
    sev = _pick(rng, n, (0.5, 0.3, 0.2))
    rec.add(
        "admin_coercion",
        comp,
        day,
        day + _lag(rng, n, 0, 7.0, 30),
        severity=rec.severity("admin_coercion", ("seizure", "freezing", "enforcement"))[sev],
        amount=_round_to(_lognormal(rng, 50000.0, 1.3, n), 100, 100),
        dept=np.where(sev == 1, DEPARTMENTS.index("tax"), DEPARTMENTS.index("samr")),
    )

    # abnormal-operation listings for other reasons
    samr = (w.kind <= COOP).astype(np.float32)
    for reason, rates, beta, p_remove, delay in (
        ("unreachable", (0.012, 0.006, 0.02, 0, 0), 1.2, None, (30, 150.0, 1000)),
        ("false_disclosure", (0.002, 0.0005, 0.003, 0, 0), 1.0, 0.6, (30, 90.0, 600)),
    ):
        comp, day = w.events(rng, w.by_kind(rates) * samr, beta)
        _abnormal(rng, w, rec, comp, day, reason, p_remove, delay)

    # focus-attention and serious lists from other departments' decisions
    comp, day = w.events(rng, w.by_kind((0.003, 0.001, 0.003, 0.001, 0.001)), 1.4)
    _focus_list(rng, rec, comp, day, "repeated_violations")
    for reason, source, list_rates in (
        ("tax_violation", "tax", (0.0006, 0.0002, 0.0003, 0.0, 0.0)),
        ("wage_arrears", "hrss", (0.0004, 0.0001, 0.0002, 0.0, 0.0)),
    ):
        comp, day = w.events(rng, w.by_kind(list_rates), 1.6)
        _serious_list(rng, w, rec, comp, day, reason, source)

    # credit commitments and breaches
    comp, day = w.events(rng, w.by_kind((0.10, 0.04, 0.06, 0.05, 0.05)), 0.0)
    n = len(comp)
    recorded = day + _lag(rng, n, 0, 2.0, 7)
    due = day + 90 + (rng.random(n) * 275).astype(np.int32)
    matters = (
        "licence_conditions",
        "tax_compliance",
        "product_quality",
        "contract_performance",
        "credit_repair",
        "subsidy_application",
    )
    rows = rec.add(
        "credit_commitment",
        comp,
        day,
        recorded,
        dept=np.where(rng.random(n) < 0.5, DEPARTMENTS.index("ndrc"), DEPARTMENTS.index("samr")),
        fields={
            "matter": _jstr(matters, _pick(rng, n, (3, 2, 1, 1, 1, 1))),
            "due_date": _jdate(due),
        },
    )
    breach = (rows >= 0) & (rng.random(n) < _sigmoid(-3.2 + 1.3 * w.z_at(comp, day)))
    bday = recorded + 1 + (rng.random(n) * (due + 60 - recorded)).astype(np.int32)
    rec.add(
        "commitment_breach",
        comp[breach],
        bday[breach],
        bday[breach] + _lag(rng, int(breach.sum()), 0, 7.0, 30),
        dept="samr",
        fields={"ref": _Ref("credit_commitment", rows[breach])},
    )

    # warning talks
    comp, day = w.events(rng, w.by_kind((0.008, 0.004, 0.004, 0.003, 0.003)), 1.2)
    _warning_talks(rng, w, rec, comp, day)


def _abnormal(
    rng: np.random.Generator,
    w: _World,
    rec: _Records,
    company: Ints,
    day: Ints,
    reason: str,
    p_remove: float | None,
    delay: tuple[int, float, int],
) -> None:
    n = len(company)
    recorded = day + _lag(rng, n, 0, 3.0, 10)
    reason_text = _jconst(reason, n)
    rows = rec.add(
        "abnormal_operation_list",
        company,
        day,
        recorded,
        severity="listed",
        dept="samr",
        fields={"reason": reason_text},
    )
    p = _sigmoid(-0.5 - 0.6 * w.z_at(company, day)) if p_remove is None else p_remove
    removal = _removals(
        rng,
        rec,
        "abnormal_operation_list",
        rows,
        company,
        recorded,
        p,
        delay,
        dept="samr",
        extra={"reason": reason_text},
    )
    _abnormal_to_serious(rng, w, rec, company, day, rows, removal < _NEVER, removal)


def _warning_talks(
    rng: np.random.Generator, w: _World, rec: _Records, company: Ints, day: Ints
) -> None:
    n = len(company)
    recorded = day + _lag(rng, n, 0, 3.0, 15)
    rows = rec.add("warning_talk", company, day, recorded, severity="talk", dept="samr")
    _removals_like(
        rng,
        rec,
        "warning_talk",
        "rectified",
        rows,
        company,
        recorded,
        _sigmoid(1.2 - 0.6 * w.z_at(company, day)),
        (15, 30.0, 120),
    )


def _removals_like(
    rng: np.random.Generator,
    rec: _Records,
    category: str,
    severity: str,
    rows: Ints,
    company: Ints,
    recorded: Ints,
    p: Floats | float,
    delay: tuple[int, float, int],
) -> None:
    """A follow-up record of the same category (e.g. rectified after a talk) referring to it."""
    n = len(rows)
    sel = (rows >= 0) & (rng.random(n) < p)
    day = recorded + 1 + _lag(rng, n, *delay)
    rec.add(
        category,
        np.asarray(company)[sel],
        day[sel],
        day[sel] + _lag(rng, int(sel.sum()), 0, 3.0, 15),
        severity=severity,
        dept="samr",
        fields={"ref": _Ref(category, rows[sel])},
    )


def _operations(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Social insurance, courts and dishonest judgment debtors."""
    comp, day = w.events(rng, w.by_kind((0.02, 0.003, 0.005, 0.01, 0.01)), 1.0)
    n = len(comp)
    scale = 30000.0 * np.power(w.capital[comp] / 1e6, 0.3)
    rec.add(
        "social_insurance_arrears",
        comp,
        day,
        day + _lag(rng, n, 5, 20.0, 90),
        amount=_round_to(_lognormal(rng, scale, 1.0, n), 1, 100),
        dept="hrss",
        fields={"months": _jint(1 + rng.poisson(2.0 * np.exp(0.3 * w.z_at(comp, day))))},
    )

    cases = (
        "contract_dispute",
        "sales_contract_dispute",
        "labour_dispute",
        "loan_dispute",
        "lease_dispute",
        "tort",
    )
    for role, rates, beta in (
        ("defendant", (0.02, 0.006, 0.006, 0.003, 0.003), 1.0),
        ("plaintiff", (0.015, 0.003, 0.003, 0.002, 0.002), 0.0),
        ("third_party", (0.004, 0.001, 0.001, 0.001, 0.001), 0.2),
    ):
        comp, day = w.events(rng, w.by_kind(rates), beta)
        n = len(comp)
        median = np.where(w.kind[comp] == ENT, 80000.0, 20000.0)
        dispute = _round_to(_lognormal(rng, median, 1.5, n), 1, 100)
        recorded = day + _lag(rng, n, 15, 45.0, 180)
        rec.add(
            "court_judgment",
            comp,
            day,
            recorded,
            severity=role,
            amount=dispute,
            dept="court",
            fields={"case_type": _jstr(cases, _pick(rng, n, (3, 2, 2, 2, 1, 1)))},
        )
        if role == "defendant":
            follow = rng.random(n) < _sigmoid(-3.0 + 1.0 * w.z_at(comp, day))
            k = int(follow.sum())
            _debtors(
                rng,
                w,
                rec,
                comp[follow],
                recorded[follow] + _lag(rng, k, 60, 120.0, 500),
                np.round(dispute[follow] * rng.uniform(0.3, 1.0, k), 2),
            )
    comp, day = w.events(rng, w.by_kind((0.003, 0.002, 0.002, 0.0005, 0.0005)), 1.4)
    median = np.where(w.kind[comp] == ENT, 100000.0, 30000.0)
    _debtors(rng, w, rec, comp, day, _round_to(_lognormal(rng, median, 1.3, len(comp)), 1, 100))


def _debtors(
    rng: np.random.Generator, w: _World, rec: _Records, company: Ints, day: Ints, owed: Floats
) -> None:
    n = len(company)
    recorded = day + _lag(rng, n, 3, 15.0, 60)
    rows = rec.add(
        "dishonest_judgment_debtor",
        company,
        day,
        recorded,
        severity="listed",
        amount=owed,
        dept="court",
    )
    _removals(
        rng,
        rec,
        "dishonest_judgment_debtor",
        rows,
        company,
        recorded,
        _sigmoid(-0.3 - 0.5 * w.z_at(company, day)),
        (30, 200.0, 900),
        dept="court",
    )


_SIGNALS = (
    # name, yearly rates by kind, beta, consumer-facing only
    ("utility_arrears_months", (0.04, 0.03, 0.03, 0.01, 0.01), 1.0, False),
    ("supplier_payment_delay_days", (0.15, 0.0, 0.05, 0.0, 0.0), 0.4, False),
    ("ecommerce_rating", (0.25, 0.25, 0.0, 0.0, 0.0), 0.0, True),
    ("public_opinion_index", (0.05, 0.01, 0.01, 0.02, 0.02), 0.3, False),
)


def _social(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Complaints, honours, contract-abiding red list, news, third-party signals, relations."""
    rate: Floats = w.by_kind((0.03, 0.03, 0.005, 0.01, 0.01)) * w.by_industry("consumer")
    comp, day = w.events(rng, rate, 0.8)
    n = len(comp)
    z = w.z_at(comp, day)
    verified = rng.random(n) < _sigmoid(-1.2 + 0.6 * z)
    dismissed = ~verified & (rng.random(n) < 0.3)
    sev = np.where(verified, 1, np.where(dismissed, 2, 0))
    handled = sev > 0
    recorded = day + np.where(handled, _lag(rng, n, 7, 15.0, 60), _lag(rng, n, 0, 1.0, 3))
    channel = _pick(rng, n, (0.70, 0.25, 0.05))
    has_amount = rng.random(n) < 0.6
    amount = np.where(has_amount, np.round(_lognormal(rng, 500.0, 1.2, n), 2), np.nan)
    dept = np.array([DEPARTMENTS.index(d) for d in ("12315", "12345", "samr")])[channel]
    rec.add(
        "complaint",
        comp,
        day,
        recorded,
        severity=rec.severity("complaint", ("unverified", "verified", "dismissed"))[sev],
        amount=amount,
        dept=dept,
        fields={"channel": _jstr(("12315", "12345", "other"), channel)},
    )

    titles = (
        "优秀民营企业",
        "消费者满意单位",
        "安全生产先进单位",
        "诚信经营示范户",
        "示范合作社",
        "先进社会组织",
    )
    comp, day = w.events(rng, w.by_kind((0.005, 0.0015, 0.006, 0.01, 0.01)), -0.8)
    n = len(comp)
    title = np.select(
        [w.kind[comp] == ENT, w.kind[comp] == IND, w.kind[comp] == COOP],
        [(rng.random(n) * 3).astype(np.int64), 3, 4],
        5,
    )
    rec.add(
        "honor",
        comp,
        day,
        day + _lag(rng, n, 0, 10.0, 30),
        severity=rec.severity("honor", ("municipal", "provincial", "national"))[
            _pick(rng, n, (0.70, 0.25, 0.05))
        ],
        dept="gov",
        fields={"title": _jstr(titles, title)},
    )

    comp, day = w.events(rng, w.by_kind((0.006, 0.0, 0.004, 0.0, 0.0)), -1.0)
    n = len(comp)
    recorded = day + _lag(rng, n, 0, 10.0, 30)
    listname = _jconst("contract_abiding", n)
    rows = rec.add(
        "red_list", comp, day, recorded, severity="listed", dept="samr", fields={"list": listname}
    )
    _removals(
        rng,
        rec,
        "red_list",
        rows,
        comp,
        recorded,
        _sigmoid(-2.0 + 1.0 * w.z_at(comp, day)),
        (90, 300.0, 1000),
        dept="samr",
        extra={"list": listname},
    )

    outlets = ("河南日报", "大河报", "郑州晚报", "大象新闻", "顶端新闻", "映象网")
    for tone, rates, beta in (
        ("negative", (0.004, 0.001, 0.001, 0.002, 0.002), 1.4),
        ("positive", (0.004, 0.001, 0.004, 0.004, 0.004), -0.6),
        ("neutral", (0.006, 0.001, 0.002, 0.003, 0.003), 0.0),
    ):
        comp, day = w.events(rng, w.by_kind(rates), beta)
        n = len(comp)
        rec.add(
            "news",
            comp,
            day,
            day + _lag(rng, n, 0, 0.5, 2),
            severity=tone,
            dept="media",
            fields={"outlet": _jstr(outlets, _pick(rng, n, (2, 3, 2, 2, 2, 1)))},
        )

    consumer = (w.by_industry("consumer") >= 1.5).astype(np.float32)
    for name, rates, beta, consumer_only in _SIGNALS:
        rate = w.by_kind(rates) * (consumer if consumer_only else np.float32(1.0))
        comp, day = w.events(rng, rate, beta)
        n = len(comp)
        z = w.z_at(comp, day)
        if name == "utility_arrears_months":
            value = 1.0 + rng.poisson(1.5 * np.exp(0.4 * z))
        elif name == "supplier_payment_delay_days":
            value = np.round(rng.exponential(12.0 * np.exp(0.5 * z)))
        elif name == "ecommerce_rating":
            value = np.round(np.clip(4.6 - 0.3 * z + rng.normal(0, 0.3, n), 1, 5), 1)
        else:
            value = np.round(np.clip(60 - 12 * z + rng.normal(0, 10, n), 0, 100), 1)
        rec.add(
            "third_party_signal",
            comp,
            day,
            day + _lag(rng, n, 0, 2.0, 7),
            amount=value,
            dept="third_party",
            fields={"name": _jconst(name, n)},
        )

    # many companies at one registered address (shell-company clusters)
    flagged = np.flatnonzero(
        (w.kind == ENT) & (rng.random(w.n) < _sigmoid(-4.5 + 1.2 * (w.base - CENTER)))
    )
    n = len(flagged)
    day = w.alive_from[flagged] + (
        rng.random(n) * (w.alive_to[flagged] - w.alive_from[flagged] + 1)
    ).astype(np.int32)
    rec.add(
        "shared_address",
        flagged,
        day,
        day + _lag(rng, n, 0, 10.0, 30),
        amount=10 + np.floor(rng.exponential(60.0, n)),
        dept="samr",
    )


def _related_parties(rng: np.random.Generator, w: _World, rec: _Records) -> None:
    """Enterprises sharing a legal representative or shareholder with dishonest or listed ones."""
    enterprises = np.flatnonzero(w.kind == ENT)
    if len(enterprises) < 2:
        return
    weight = np.exp(0.8 * (w.base[enterprises] - CENTER)).astype(np.float64)
    src = [rec.listings("dishonest_judgment_debtor"), rec.listings("serious_dishonest_list")]
    other = np.concatenate([s[0] for s in src])
    known = np.concatenate([s[1] for s in src])
    sel = rng.random(len(other)) < 0.5
    other, known = other[sel], known[sel]
    n = len(other)
    comp: Ints = rng.choice(enterprises, size=n, p=weight / weight.sum()).astype(np.int32)
    day = known + 1 + _lag(rng, n, 0, 20.0, 120)
    relation = _pick(rng, n, (1, 1))
    _add_related(rng, w, rec, comp, other, day, relation, "dishonest_party", 5.0)
    big = enterprises[w.capital[enterprises] >= 2e7]
    if len(big) < 2:
        return
    comp = big[rng.random(len(big)) < 0.1]
    n = len(comp)
    other = big[rng.integers(0, len(big), n)]
    day = w.alive_from[comp] + (rng.random(n) * (w.alive_to[comp] - w.alive_from[comp] + 1)).astype(
        np.int32
    )
    relation = _pick(rng, n, (1, 2))
    _add_related(rng, w, rec, comp, other, day, relation, "listed_company", 10.0)


def _add_related(
    rng: np.random.Generator,
    w: _World,
    rec: _Records,
    comp: Ints,
    other: Ints,
    day: Ints,
    relation: Ints,
    severity: str,
    mean_lag: float,
) -> None:
    """related_party records of `comp` pointing at `other` (never at itself)."""
    ok = comp != other
    rel_uscc = pc.binary_join_element_wise('"', w.uscc.take(pa.array(other)), '"', "")
    rec.add(
        "related_party",
        comp[ok],
        day[ok],
        day[ok] + _lag(rng, int(ok.sum()), 0, mean_lag, 30),
        severity=severity,
        dept="samr",
        fields={
            "related_uscc": rel_uscc.filter(pa.array(ok)),
            "relation": _jstr(("legal_representative", "shareholder"), relation[ok]),
        },
    )


def _count_between(keys: Ints, company: Ints, lo: Ints, hi: Ints) -> Ints:
    base = np.asarray(company, dtype=np.int64) * 100_000
    return np.searchsorted(keys, base + hi, side="left") - np.searchsorted(
        keys, base + lo, side="left"
    )


def _spot_checks(
    rng: np.random.Generator, w: _World, rec: _Records
) -> tuple[list[Ints], list[Floats]]:
    """One double-random plan a year, stratified by observable risk; returns (rows, true p)."""
    items_of = []
    for ind in INDUSTRIES:
        ids = ["SC-GS-01", "SC-DJ-02", *ind.items]
        items_of.append([1.0 if item[0] in ids else 0.0 for item in CHECK_ITEMS])
    item_weights = np.array(items_of)
    item_effect = np.array([item[2] for item in CHECK_ITEMS], dtype=np.float32)
    item_domain = np.array([DOMAINS.index(item[1]) for item in CHECK_ITEMS])
    rates = np.array(INSPECTION_RATES)
    out_rows, out_p = [], []
    for k in range(w.years):
        draw = int(w.bounds[k]) + 75
        if draw > w.end:
            continue
        eligible = (w.kind <= COOP) & (w.established <= draw) & (w.alive_to >= draw)
        band = np.minimum(rec.negative_counts(draw - 365, draw), 2)
        incl = rates[band]
        company = np.flatnonzero(eligible & (rng.random(w.n) < incl)).astype(np.int32)
        n = len(company)
        day = draw + 14 + (rng.random(n) * 200).astype(np.int32)
        item = _pick_rows(rng, item_weights[w.industry[company]])
        pen = _count_between(rec.event_keys("admin_penalty"), company, day - 365, day)
        aol = _count_between(
            rec.event_keys("abnormal_operation_list", "listed"), company, day - 365, day
        )
        logit = (
            w.logit_at(company, day)
            + 0.7 * np.minimum(pen, 3)
            + 0.4 * (aol > 0)
            + item_effect[item]
        )
        p = _sigmoid(logit)
        z = w.z_at(company, day)
        problem = rng.random(n) < p
        serious = problem & (rng.random(n) < _sigmoid(-2.0 + 0.8 * z + 0.5 * np.minimum(pen, 2)))
        n_serious = np.where(serious, 1 + rng.poisson(0.2, n), 0)
        n_major = np.where(problem, rng.poisson(0.5 * np.exp(0.4 * z)), 0)
        n_minor = np.where(problem, rng.poisson(1.2, n), 0)
        n_minor = np.where(problem & (n_serious + n_major + n_minor == 0), 1, n_minor)
        severity = np.where(n_serious > 0, 2, np.where(n_major + n_minor > 0, 1, 0))
        recorded = day + _lag(rng, n, 1, 7.0, 28)
        plan = f"HN-SJ-{_date(draw).year}-{k + 1:02d}"
        rows = rec.add(
            "spot_check",
            company,
            day,
            recorded,
            severity=rec.severity("spot_check", ("pass", "problem", "serious"))[severity],
            dept="samr",
            fields={
                "check_item": _jstr([i[0] for i in CHECK_ITEMS], item),
                "plan_id": _jconst(plan, n),
                "inclusion_prob": _jnum(incl[company]),
                "findings_minor": _jint(n_minor),
                "findings_major": _jint(n_major),
                "findings_serious": _jint(n_serious),
            },
        )
        kept = rows >= 0
        out_rows.append(rows[kept])
        out_p.append(p[kept])

        # consequences, visible to the following plans
        to_pen = kept & (
            ((severity == 2) & (rng.random(n) < 0.7)) | ((n_major > 0) & (rng.random(n) < 0.3))
        )
        level = np.where(
            severity == 2, 1 + (rng.random(n) < 0.3), (rng.random(n) < 0.5).astype(int)
        )
        pday = recorded + _lag(rng, n, 15, 30.0, 120)
        _penalties(
            rng, w, rec, company[to_pen], pday[to_pen], level[to_pen], item_domain[item][to_pen]
        )
        talk = kept & (severity > 0) & (rng.random(n) < 0.25)
        _warning_talks(
            rng, w, rec, company[talk], recorded[talk] + _lag(rng, int(talk.sum()), 3, 10.0, 60)
        )
        false = kept & (severity > 0) & (item == 0) & (rng.random(n) < 0.25)
        fday = recorded + _lag(rng, n, 5, 15.0, 60)
        _abnormal(
            rng, w, rec, company[false], fday[false], "false_disclosure", 0.6, (30, 90.0, 600)
        )
    return out_rows, out_p


# ---- entry points -----------------------------------------------------------------------------


def simulate(config: SimulationConfig, progress: Callable[[str], None] | None = None) -> Simulation:
    """Simulate the province for `config`; the same config always gives identical tables."""

    def step(message: str) -> None:
        if progress is not None:
            progress(message)

    rng = np.random.default_rng(config.seed)
    step("companies")
    world = _world(rng, config)
    entities = _entities(rng, world)
    rec = _Records(default_catalogue(), world)
    step("annual reports")
    _annual_reports(rng, world, rec)
    step("taxes")
    _taxes(rng, world, rec)
    step("supervision")
    _supervision(rng, world, rec)
    step("courts and social insurance")
    _operations(rng, world, rec)
    step("social evaluation")
    _social(rng, world, rec)
    step("spot checks")
    check_rows, check_p = _spot_checks(rng, world, rec)
    _related_parties(rng, world, rec)
    step("assembling records")
    records, ids = rec.table()

    truth_cols: dict[str, Any] = {
        "uscc": world.uscc,
        "base_propensity": pa.array(_sigmoid(world.base).astype(np.float64)),
    }
    for k in range(world.years):
        year = _date(int(world.bounds[k + 1]) - 1).year
        truth_cols[f"propensity_{year}"] = pa.array(_sigmoid(world.logit[:, k]).astype(np.float64))
    exit_day = np.where(world.exit_day == _NEVER, 0, world.exit_day).astype(np.int32)
    truth_cols["status_date"] = pa.array(exit_day, mask=world.exit_day == _NEVER).cast(pa.date32())
    truth = pa.table(truth_cols)

    rows = np.concatenate(check_rows) if check_rows else np.zeros(0, np.int64)
    p = np.concatenate(check_p) if check_p else np.zeros(0, np.float32)
    if len(rows):
        pos, text = ids["spot_check"]
        order = np.argsort(pos[rows], kind="stable")
        comp = _spot_check_companies(rec)
        check_truth = pa.table(
            {
                "record_id": text.take(pa.array(pos[rows][order])),
                "uscc": world.uscc.take(pa.array(comp[rows][order])),
                "true_problem_probability": pa.array(p[order].astype(np.float64)),
            }
        )
    else:
        check_truth = pa.table(
            {
                "record_id": pa.array([], pa.string()),
                "uscc": pa.array([], pa.string()),
                "true_problem_probability": pa.array([], pa.float64()),
            }
        )
    step("done")
    return Simulation(
        entities=entities.select([*ENTITY_COLUMNS, "recorded_date"]),
        records=records.select(list(RECORD_COLUMNS)),
        truth=truth,
        check_truth=check_truth,
        end=config.end,
    )


def _spot_check_companies(rec: _Records) -> Ints:
    return np.concatenate([c.company for c in rec.chunks["spot_check"]])


def write_simulation(
    sim: Simulation, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write entities and records as `fmt`, and the hidden truth as Parquet under `truth/`."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, got {fmt!r}")
    out_dir = Path(out_dir)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    paths = {
        "entities": out_dir / f"entities.{fmt}",
        "records": out_dir / f"records.{fmt}",
        "truth": out_dir / "truth" / "companies.parquet",
        "check_truth": out_dir / "truth" / "spot_checks.parquet",
    }
    for name, table in (("entities", sim.entities), ("records", sim.records)):
        if fmt == "parquet":
            pq.write_table(table, paths[name])
        else:
            pacsv.write_csv(table, paths[name])
    # the window's last day: propensity_<Y> covers the 12 months ending on its anniversary in Y
    truth = sim.truth.replace_schema_metadata({"end": str(sim.end)}) if sim.end else sim.truth
    pq.write_table(truth, paths["truth"])
    pq.write_table(sim.check_truth, paths["check_truth"])
    return paths
