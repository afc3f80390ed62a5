"""Feature specifications, declared once.

Each feature says what it reads (categories, severities, an attribute filter), over which window,
how it aggregates, which way it moves risk (+1 more risk, -1 less, 0 neither), and how to say it
to a company in Chinese and English. The point-in-time builder (`features.builder`), LightGBM's
monotone constraints, the public score (`features.scorecard`) and reason codes all derive from
this list. The spec set's version is a hash of its content, so any change to a definition gives a
new version and results of different definitions are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from records.catalogue import Catalogue, Dimension, default_catalogue
from records.schema import ENTITY_TYPES
from records.uscc import MARKET_ENTITY_TYPES

Aggregation = Literal[
    "count",  # number of counting records
    "decayed_count",  # records weighted 1 / 0.6 / 0.3 / 0.15 by age ≤1, ≤2, ≤3, >3 years
    "sum_amount",  # sum of amount
    "max_amount",  # largest amount
    "sum_attribute",  # sum of a numeric attribute (e.g. findings_serious)
    "latest_amount",  # amount of the latest record (by event date, then record_id)
    "latest_value",  # value of the latest record's severity (`values`)
    "worst_value",  # highest value of the records' severities (`values`): the worst in the window
    "days_since_last",  # days from the latest record's event date to as_of
    "open_listing",  # 1 if a `listed` record has no counting removal referring to it, else 0
    "honoured_commitments",  # commitments due by as_of and not breached
    "breach_share",  # breaches / commitments (null without commitments)
]
Direction = Literal[-1, 0, 1]

WINDOW_ALL: int | None = None
YEAR = 12
"""Windows are calendar months: "in the last 12 months" on `as_of` holds the records whose date
plus 12 months is after `as_of`, as a publicity period of the same length ends (`records.spans`)."""

MONOTONE_AGGREGATIONS = frozenset(
    {"count", "decayed_count", "sum_amount", "max_amount", "sum_attribute", "open_listing",
     "honoured_commitments"}
)  # fmt: skip
"""Aggregations that can only grow when a matching record is added: safe for the public score."""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dimension: Dimension
    categories: tuple[str, ...]
    aggregation: Aggregation
    direction: Direction
    reason_zh: str
    reason_en: str
    severities: tuple[str, ...] | None = None  # None: any severity
    window_months: int | None = WINDOW_ALL
    attribute: str | None = None  # for sum_attribute
    attribute_equals: tuple[str, str] | None = None  # (attribute, value) filter
    amount_equals: float | None = None  # only records of this amount (0: nil tax returns)
    later_than: tuple[str, int] | None = None
    """(date attribute, grace days): only records dated more than the grace days after that
    attribute's date (a return for a period ending on `period_end` filed after its due day);
    the date must be ISO `YYYY-MM-DD` (records without such a date do not match)."""
    period_at_most: tuple[str, str, int] | None = None
    """(start attribute, end attribute, days): records whose period, from the start to the end
    date (both ISO `YYYY-MM-DD`), is longer than the days do not match (an annual tax return
    has another deadline than a quarterly one); records without both dates match."""
    values: tuple[tuple[str, float], ...] = ()  # severity → value, for latest/worst_value
    model_missing: float | None = None
    """What the risk model reads when the feature is null (no matching record); None: missing.
    Set where "no record" has a natural place on the feature's risk scale, so that a first
    negative record moves the model's input in its risk direction."""
    applies_to: tuple[str, ...] | None = None
    """The entity types (`records.schema.ENTITY_TYPES`) the feature applies to; None: all. For
    any other entity it is null (not applicable), never 0, whatever its records: a social
    organisation files no annual report with market regulation, so "0 reports filed on time"
    is not a fact about it. The risk model reads the null as missing, the public score gives it
    no points, and a reason never names it. The type is the entity version's in force, else the
    one its code says (`records.uscc.entity_type_of_code`)."""
    description: str = ""

    @property
    def kind(self) -> str:
        return "record"


@dataclass(frozen=True)
class EntitySpec:
    """A fact of the entity version in force on the as-of date."""

    name: str
    expression: Literal["age_years", "log_capital", "industry", "region", "entity_type",
                        "individual_business", "active"]  # fmt: skip
    direction: Direction
    reason_zh: str
    reason_en: str
    categorical: bool = False
    dimension: Dimension = "basic"
    categories: tuple[str, ...] = field(default=("registration",))
    in_model: bool = True
    """False: computed and reported, but not a risk-model input."""

    @property
    def kind(self) -> str:
        return "entity"


@dataclass(frozen=True)
class FlagSpec:
    """A flag from record events: an objection open on the as-of date. Served with the scores,
    never a model input: objecting to a record is a right (DOMAIN §10), and a model that learnt
    from it could raise the tier of a company for exercising it."""

    name: str
    event: Literal["objection_open"]
    direction: Direction
    reason_zh: str
    reason_en: str
    dimension: Dimension = "supervision"
    categories: tuple[str, ...] = ()
    in_model: bool = False

    @property
    def kind(self) -> str:
        return "flag"


Spec = FeatureSpec | EntitySpec | FlagSpec

_3Y = 3 * YEAR
_NEG = ("listed",)

ANNUAL_REPORT_FILERS = MARKET_ENTITY_TYPES
"""Who files an annual report with market regulation (by 30 June, for the year before):
enterprises (企业信息公示暂行条例), individual businesses (个体工商户年度报告办法) and farmers'
cooperatives (农民专业合作社年度报告公示办法), i.e. the entities it registers (codes 91, 92, 93).
Social organisations, public institutions, organs and others report to their own registrars."""

SPECS: tuple[Spec, ...] = (
    # ---- supervision --------------------------------------------------------------------------
    FeatureSpec("penalties_12m", "supervision", ("admin_penalty",), "count", 1,
                "近12个月行政处罚{value}次", "{value} administrative penalties in the last 12 months",
                window_months=YEAR),
    FeatureSpec("penalties_3y", "supervision", ("admin_penalty",), "count", 1,
                "近3年行政处罚{value}次", "{value} administrative penalties in the last 3 years",
                window_months=_3Y),
    FeatureSpec("serious_penalties_3y", "supervision", ("admin_penalty",), "count", 1,
                "近3年严重行政处罚{value}次", "{value} serious administrative penalties in the last 3 years",
                severities=("serious",), window_months=_3Y),
    FeatureSpec("general_penalties_decayed", "supervision", ("admin_penalty",), "decayed_count", 1,
                "一般及以上行政处罚（按时间衰减）{value}", "general or serious penalties, time-weighted: {value}",
                severities=("general", "serious")),
    FeatureSpec("minor_penalties_decayed", "supervision", ("admin_penalty",), "decayed_count", 1,
                "轻微行政处罚（按时间衰减）{value}", "minor penalties, time-weighted: {value}",
                severities=("minor",)),
    FeatureSpec("fines_3y", "supervision", ("admin_penalty",), "sum_amount", 1,
                "近3年罚款合计{value}元", "fines of CNY {value} in the last 3 years", window_months=_3Y),
    FeatureSpec("max_fine_3y", "supervision", ("admin_penalty",), "max_amount", 1,
                "近3年单笔最高罚款{value}元", "largest fine in the last 3 years: CNY {value}",
                window_months=_3Y),
    FeatureSpec("days_since_penalty", "supervision", ("admin_penalty",), "days_since_last", -1,
                "距最近一次行政处罚{value}天", "{value} days since the last administrative penalty",
                model_missing=36500.0),  # never penalised: as if a century ago
    FeatureSpec("coercions_3y", "supervision", ("admin_coercion",), "count", 1,
                "近3年行政强制{value}次", "{value} administrative coercive measures in the last 3 years",
                window_months=_3Y),
    FeatureSpec("spot_check_problems_3y", "supervision", ("spot_check",), "count", 1,
                "近3年抽查发现问题{value}次", "problems found in {value} spot checks in the last 3 years",
                severities=("problem", "serious"), window_months=_3Y),
    FeatureSpec("spot_check_serious_3y", "supervision", ("spot_check",), "count", 1,
                "近3年抽查发现严重问题{value}次", "serious problems found in {value} spot checks in the last 3 years",
                severities=("serious",), window_months=_3Y),
    FeatureSpec("spot_check_passes_3y", "supervision", ("spot_check",), "count", -1,
                "近3年抽查合格{value}次", "{value} spot checks passed in the last 3 years",
                severities=("pass",), window_months=_3Y),
    FeatureSpec("spot_check_serious_findings_3y", "supervision", ("spot_check",), "sum_attribute", 1,
                "近3年抽查严重问题项{value}个", "{value} serious findings in spot checks in the last 3 years",
                severities=("problem", "serious"), window_months=_3Y, attribute="findings_serious"),
    FeatureSpec("days_since_problem_check", "supervision", ("spot_check",), "days_since_last", -1,
                "距最近一次抽查发现问题{value}天", "{value} days since a spot check last found a problem",
                severities=("problem", "serious"), model_missing=36500.0),
    FeatureSpec("days_since_passed_check", "supervision", ("spot_check",), "days_since_last", 0,
                "距最近一次抽查合格{value}天", "{value} days since the last passed spot check",
                severities=("pass",)),
    FeatureSpec("spot_check_problems_all", "supervision", ("spot_check",), "count", 1,
                "抽查发现问题共{value}次（公示期内）", "problems found in {value} spot checks still on record",
                severities=("problem", "serious")),
    FeatureSpec("on_abnormal_list", "supervision", ("abnormal_operation_list",), "open_listing", 1,
                "列入经营异常名录", "on the abnormal-operation list", severities=_NEG),
    FeatureSpec("abnormal_listings_3y", "supervision", ("abnormal_operation_list",), "count", 1,
                "近3年列入经营异常名录{value}次", "listed as abnormal {value} times in the last 3 years",
                severities=_NEG, window_months=_3Y),
    FeatureSpec("on_serious_dishonest_list", "supervision", ("serious_dishonest_list",), "open_listing", 1,
                "列入严重违法失信名单", "on the serious illegal and dishonest list", severities=_NEG),
    FeatureSpec("serious_dishonest_listings", "supervision", ("serious_dishonest_list",), "count", 1,
                "曾列入严重违法失信名单{value}次", "listed as seriously dishonest {value} times",
                severities=_NEG),
    FeatureSpec("on_focus_list", "supervision", ("focus_attention_list",), "open_listing", 1,
                "列入重点关注名单", "on the focus-attention list", severities=_NEG),
    FeatureSpec("commitments_3y", "supervision", ("credit_commitment",), "count", 0,
                "近3年作出信用承诺{value}项", "{value} credit commitments in the last 3 years",
                window_months=_3Y),
    FeatureSpec("commitment_breaches_3y", "supervision", ("commitment_breach",), "count", 1,
                "近3年违背信用承诺{value}次", "{value} broken credit commitments in the last 3 years",
                window_months=_3Y),
    FeatureSpec("commitment_breach_share_3y", "supervision", ("credit_commitment", "commitment_breach"),
                "breach_share", 1,
                "近3年信用承诺违诺比例{value}", "share of the last 3 years' credit commitments that were broken: {value}",
                window_months=_3Y, model_missing=0.0),
    FeatureSpec("honoured_commitments_3y", "supervision", ("credit_commitment", "commitment_breach"),
                "honoured_commitments", -1,
                "近3年信用承诺践诺{value}项", "{value} credit commitments honoured in the last 3 years",
                window_months=_3Y),
    FeatureSpec("warning_talks_12m", "supervision", ("warning_talk",), "count", 1,
                "近12个月被约谈{value}次", "{value} warning talks in the last 12 months",
                severities=("talk",), window_months=YEAR),
    FeatureSpec("licences_revoked_3y", "supervision", ("admin_license",), "count", 1,
                "近3年被吊销许可{value}项", "{value} licences revoked in the last 3 years",
                severities=("revoked",), window_months=_3Y),
    FeatureSpec("licences_granted_3y", "supervision", ("admin_license",), "count", 0,
                "近3年取得行政许可{value}项", "{value} licences granted or renewed in the last 3 years",
                severities=("granted", "renewed"), window_months=_3Y),
    # ---- operations ---------------------------------------------------------------------------
    FeatureSpec("annual_reports_missing_3y", "operations", ("annual_report",), "count", 1,
                "近3年未按时报送年报{value}次", "{value} annual reports missing in the last 3 years",
                severities=("missing",), window_months=_3Y, applies_to=ANNUAL_REPORT_FILERS),
    FeatureSpec("annual_reports_late_3y", "operations", ("annual_report",), "count", 1,
                "近3年年报迟报{value}次", "{value} annual reports filed late in the last 3 years",
                severities=("late",), window_months=_3Y, applies_to=ANNUAL_REPORT_FILERS),
    FeatureSpec("annual_reports_on_time_3y", "operations", ("annual_report",), "count", -1,
                "近3年按时报送年报{value}次", "{value} annual reports filed on time in the last 3 years",
                severities=("on_time",), window_months=_3Y, applies_to=ANNUAL_REPORT_FILERS),
    # the worst grade, not the latest: a C given after a D is a negative record too, and the
    # latest grade would fall with it (adding a negative record must never lower risk)
    FeatureSpec("tax_grade_worst_2y", "operations", ("tax_credit_grade",), "worst_value", 1,
                "近2年最低纳税信用等级{value}（1=A … 4=D）",
                "worst tax credit grade in the last 2 years {value} (1 = A … 4 = D)",
                window_months=2 * YEAR, values=(("A", 1.0), ("B", 2.0), ("M", 2.5), ("C", 3.0), ("D", 4.0)),
                model_missing=2.5),  # not graded reads as M
    FeatureSpec("tax_grade_cd_3y", "operations", ("tax_credit_grade",), "count", 1,
                "近3年纳税信用评为C或D级{value}次", "{value} tax credit grades C or D in the last 3 years",
                severities=("C", "D"), window_months=_3Y),
    FeatureSpec("tax_grade_a_3y", "operations", ("tax_credit_grade",), "count", -1,
                "近3年纳税信用A级{value}次", "{value} tax credit grades A in the last 3 years",
                severities=("A",), window_months=_3Y),
    FeatureSpec("annual_reports_missing_all", "operations", ("annual_report",), "count", 1,
                "未按时报送年报共{value}次", "{value} annual reports missing in all the years on record",
                severities=("missing",), applies_to=ANNUAL_REPORT_FILERS),
    # due on the 15th of the month after the period, moved by weekends, holidays and yearly
    # announced extensions (never past the 25th so far): counted late only after the 25th, so
    # that no return filed within an extended deadline counts
    FeatureSpec("tax_declarations_late_3y", "operations", ("tax_declaration",), "count", 1,
                "近3年纳税申报在所属期满次月25日后报送{value}次",
                "{value} tax returns filed after the 25th of the month after their period in the last 3 years",
                window_months=_3Y, later_than=("period_end", 25),
                period_at_most=("period_start", "period_end", 92)),  # annual returns: due 31 May
    FeatureSpec("tax_nil_declarations_3y", "operations", ("tax_declaration",), "count", 1,
                "近3年零申报{value}次", "{value} nil tax returns in the last 3 years",
                window_months=_3Y, amount_equals=0.0),
    FeatureSpec("tax_declarations_3y", "operations", ("tax_declaration",), "count", 0,
                "近3年纳税申报{value}次", "{value} tax declarations in the last 3 years",
                window_months=_3Y),
    FeatureSpec("tax_declarations_12m", "operations", ("tax_declaration",), "count", 0,
                "近12个月纳税申报{value}次", "{value} tax declarations in the last 12 months",
                window_months=YEAR),
    FeatureSpec("tax_declared_12m", "operations", ("tax_declaration",), "sum_amount", 0,
                "近12个月申报税额{value}元", "CNY {value} tax declared in the last 12 months",
                window_months=YEAR),
    FeatureSpec("social_insurance_arrears_3y", "operations", ("social_insurance_arrears",), "count", 1,
                "近3年社会保险欠缴{value}次", "{value} social insurance arrears in the last 3 years",
                window_months=_3Y),
    FeatureSpec("social_insurance_arrears_amount_3y", "operations", ("social_insurance_arrears",),
                "sum_amount", 1,
                "近3年社会保险欠缴金额{value}元", "CNY {value} social insurance arrears in the last 3 years",
                window_months=_3Y),
    FeatureSpec("on_dishonest_debtor_list", "operations", ("dishonest_judgment_debtor",), "open_listing", 1,
                "列为失信被执行人", "a dishonest judgment debtor", severities=_NEG),
    FeatureSpec("court_defendant_3y", "operations", ("court_judgment",), "count", 1,
                "近3年作为被告的判决{value}件", "{value} judgments as defendant in the last 3 years",
                severities=("defendant",), window_months=_3Y),
    FeatureSpec("court_defendant_amount_3y", "operations", ("court_judgment",), "sum_amount", 1,
                "近3年作为被告的涉案金额{value}元", "CNY {value} in dispute as defendant in the last 3 years",
                severities=("defendant",), window_months=_3Y),
    FeatureSpec("court_other_judgments_3y", "operations", ("court_judgment",), "count", 0,
                "近3年作为原告或第三人的司法判决{value}件", "{value} court judgments as plaintiff or third party in the last 3 years",
                severities=("plaintiff", "third_party"), window_months=_3Y),
    # ---- basic --------------------------------------------------------------------------------
    FeatureSpec("registration_changes_12m", "basic", ("registration_change",), "count", 1,
                "近12个月登记事项变更{value}次", "{value} registration changes in the last 12 months",
                window_months=YEAR),
    FeatureSpec("legal_rep_changes_3y", "basic", ("registration_change",), "count", 1,
                "近3年法定代表人变更{value}次", "{value} changes of legal representative in the last 3 years",
                severities=("legal_representative",), window_months=_3Y),
    # facts of legal form and size, not conduct: as reasons they say so (the risk observed among
    # like entities), so that no company reads its legal form as held against it
    EntitySpec("entity_age_years", "age_years", -1,
               "成立年限{value}年（同等成立年限主体的总体风险统计，非失信记录）",
               "{value} years since establishment (the risk observed among entities of that age, "
               "not a record of misconduct)"),
    EntitySpec("registered_capital_log", "log_capital", -1,
               "注册资本规模（对数）{value}（同等规模主体的总体风险统计，非失信记录）",
               "registered capital (log10 CNY) {value} (the risk observed among entities of that "
               "size, not a record of misconduct)"),
    EntitySpec("industry", "industry", 0, "行业{value}", "industry {value}", categorical=True),
    # the district is not a model input: about 160 levels overfit (validation AUC 0.680 without it
    # against 0.670 with it on a 200,000-company province), and where a company is located is
    # not a reason to inspect it more often
    EntitySpec("region", "region", 0, "地区{value}", "region {value}", categorical=True, in_model=False),
    EntitySpec("entity_type", "entity_type", 0,
               "主体类型{value}（同类主体的总体风险统计，非失信记录）",
               "entity type {value} (the risk observed among entities of that type, not a record "
               "of misconduct)", categorical=True),
    EntitySpec("individual_business", "individual_business", 0, "个体工商户", "an individual business"),
    EntitySpec("active", "active", 0, "存续", "active"),
    # ---- relations ----------------------------------------------------------------------------
    FeatureSpec("shared_address_companies", "relations", ("shared_address",), "max_amount", 1,
                "同一登记地址有{value}家主体", "{value} companies registered at the same address"),
    FeatureSpec("related_dishonest_parties_3y", "relations", ("related_party",), "count", 1,
                "近3年关联失信主体{value}个", "{value} related dishonest parties in the last 3 years",
                severities=("dishonest_party",), window_months=_3Y),
    FeatureSpec("related_listed_companies", "relations", ("related_party",), "count", 0,
                "关联上市公司{value}家", "{value} related listed companies", severities=("listed_company",)),
    # ---- social -------------------------------------------------------------------------------
    FeatureSpec("complaints_12m", "social", ("complaint",), "count", 1,
                "近12个月投诉举报{value}次", "{value} complaints in the last 12 months",
                severities=("unverified", "verified"), window_months=YEAR),
    FeatureSpec("verified_complaints_3y", "social", ("complaint",), "count", 1,
                "近3年查实的投诉举报{value}次", "{value} verified complaints in the last 3 years",
                severities=("verified",), window_months=_3Y),
    FeatureSpec("honours_3y", "social", ("honor",), "count", -1,
                "近3年获得表彰{value}次", "{value} honours in the last 3 years", window_months=_3Y),
    FeatureSpec("on_red_list", "social", ("red_list",), "open_listing", -1,
                "列入守信红名单", "on a red list", severities=_NEG),
    FeatureSpec("negative_news_12m", "social", ("news",), "count", 1,
                "近12个月负面舆情{value}条", "{value} negative news items in the last 12 months",
                severities=("negative",), window_months=YEAR),
    FeatureSpec("positive_news_12m", "social", ("news",), "count", -1,
                "近12个月正面报道{value}条", "{value} positive news items in the last 12 months",
                severities=("positive",), window_months=YEAR),
    FeatureSpec("supplier_payment_delay_days", "social", ("third_party_signal",), "latest_amount", 1,
                "第三方数据：供应商付款平均延迟{value}天", "third-party data: supplier payments {value} days late",
                window_months=YEAR, attribute_equals=("name", "supplier_payment_delay_days")),
    FeatureSpec("utility_arrears_months", "social", ("third_party_signal",), "latest_amount", 1,
                "第三方数据：水电费欠缴{value}个月", "third-party data: utility bills {value} months in arrears",
                window_months=YEAR, attribute_equals=("name", "utility_arrears_months")),
    FeatureSpec("ecommerce_rating", "social", ("third_party_signal",), "latest_amount", -1,
                "第三方数据：电商评分{value}", "third-party data: e-commerce rating {value}",
                window_months=YEAR, attribute_equals=("name", "ecommerce_rating")),
    FeatureSpec("public_opinion_index", "social", ("third_party_signal",), "latest_amount", 1,
                "第三方数据：舆情风险指数{value}", "third-party data: public-opinion risk index {value}",
                window_months=YEAR, attribute_equals=("name", "public_opinion_index")),
    FeatureSpec("third_party_signals_12m", "social", ("third_party_signal",), "count", 0,
                "近12个月第三方信号{value}条", "{value} third-party signals in the last 12 months",
                window_months=YEAR),
    FlagSpec("objection_open", "objection_open", 0, "有异议处理中的记录", "a record under objection"),
)  # fmt: skip


COUNTING_RULES_REVISION = 4
"""Bumped whenever the builder's counting rules change meaning (2: the breach share is the share
of the window's commitments that were breached; 3: records count for the period of the
publicity rule, `records.publicity`, and in their corrected form; 4: periods and windows are
calendar months and years, `records.spans`), so that the version changes with them."""


def spec_version(specs: tuple[Spec, ...] = SPECS) -> str:
    """A short hash of the specs' content and the counting rules' revision."""
    payload = json.dumps(
        [COUNTING_RULES_REVISION, [(type(s).__name__, asdict(s)) for s in specs]],
        ensure_ascii=False,
        sort_keys=True,
    )
    return "fs-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def by_name(specs: tuple[Spec, ...] = SPECS) -> dict[str, Spec]:
    return {s.name: s for s in specs}


def monotone_constraints(names: list[str], specs: tuple[Spec, ...] = SPECS) -> list[int]:
    """LightGBM's monotone_constraints for these feature columns, from the declared directions."""
    index = by_name(specs)
    return [
        int(index[n].direction) if not getattr(index[n], "categorical", False) else 0 for n in names
    ]


NO_RECORD_DAYS = 36_500
"""At least what "days since the latest record" must read as without a record and without a
window: older than any record (100 years)."""


def _negative_severities(spec: FeatureSpec, cat: Catalogue) -> list[tuple[str, str]]:
    """The (category, severity) pairs of negative records the spec reads ("*": any)."""
    return [
        (code, sev)
        for code in spec.categories
        for sev in spec.severities or cat[code].severities or ("*",)
        if cat[code].polarity_of(sev) == "negative"
    ]


def _check_rises_with_negative_records(spec: FeatureSpec, cat: Catalogue) -> None:
    """A feature with a risk direction that reads negative records must move only towards risk
    when one is added, whatever the company's other records (the risk model is monotone in each
    feature in its direction, so it then never falls). Counts and sums grow (their direction is
    checked against polarity above); the latest date gets nearer (direction -1, with no record
    reading as at least the window); the worst value grows (direction +1, with no record reading
    as at most every negative value); a share of breaches grows. A latest value can fall."""
    negative = _negative_severities(spec, cat)
    if spec.direction == 0 or not negative:
        return
    a = spec.aggregation
    named = ", ".join(f"{c}/{s}" for c, s in negative)
    if a in ("sum_amount", "max_amount"):
        signed = sorted({c for c, _ in negative if cat[c].negative_amount_allowed})
        if signed:
            raise ValueError(
                f"{spec.name}: {a} of negative records of {', '.join(signed)}, whose amounts may "
                "be negative: such a record would lower it"
            )
    if a == "honoured_commitments" and spec.direction != -1:
        raise ValueError(
            f"{spec.name}: a breach ({named}) takes a commitment from the honoured ones, so "
            "more honoured commitments must mean less risk (direction -1)"
        )
    if a in MONOTONE_AGGREGATIONS:
        return
    if a == "breach_share" and spec.direction == 1:
        return
    if a == "days_since_last":
        if spec.direction != -1:
            raise ValueError(
                f"{spec.name}: days since negative records {named} must have direction -1"
            )
        longest = NO_RECORD_DAYS if spec.window_months is None else 31 * spec.window_months
        if spec.model_missing is None or spec.model_missing < longest:
            raise ValueError(
                f"{spec.name}: without a record it must read as at least its window "
                f"(model_missing), else a first negative record {named} can lower risk"
            )
        return
    if a == "worst_value":
        if spec.direction != 1:
            raise ValueError(
                f"{spec.name}: the worst of negative records {named} must have direction 1"
            )
        values = dict(spec.values)
        if spec.model_missing is None:
            raise ValueError(
                f"{spec.name}: set model_missing, else a first negative record {named} makes a "
                "missing value present, and the model's side for missing values is learned"
            )
        low = [
            f"{s} ({values[s]})"
            for _, s in negative
            if s in values and values[s] < spec.model_missing
        ]
        if low:
            raise ValueError(
                f"{spec.name}: negative severities {', '.join(low)} are valued below "
                f"model_missing {spec.model_missing}: a first such record would lower risk"
            )
        return
    raise ValueError(
        f"{spec.name}: {a} reads negative records {named}, and a later one can lower it "
        "(a better but still negative grade, a smaller amount): use worst_value or max_amount, "
        "or restrict its severities"
    )


def _check_applicability(spec: FeatureSpec) -> None:
    """Null must mean "not applicable" and nothing else: the feature gives 0, not null, to an
    entity it applies to without records (so a reason can tell the two apart by the value), and
    the model reads the null as missing, not as "no record" (`model_missing`)."""
    kinds = spec.applies_to or ()
    unknown = sorted(set(kinds) - set(ENTITY_TYPES))
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"{spec.name}: applies_to must name distinct entity types of "
            f"{', '.join(ENTITY_TYPES)}; got {list(kinds)}"
        )
    if spec.aggregation not in MONOTONE_AGGREGATIONS:
        raise ValueError(
            f"{spec.name}: {spec.aggregation} is null without a record, so a null would not "
            "say that the feature does not apply: only counts, sums, maxima and listings may "
            "have applies_to"
        )
    if spec.model_missing is not None:
        raise ValueError(
            f"{spec.name}: model_missing would make it read, where it does not apply, as "
            "without records: not with applies_to"
        )


def validate_specs(specs: tuple[Spec, ...] = SPECS, catalogue: Catalogue | None = None) -> None:
    """Names unique, categories and severities known, directions agree with record polarity,
    features without a direction read no negative records, and features with one move only
    towards risk when a negative record is added (so that adding a negative record never lowers
    the risk of a model monotone in its inputs), features with `applies_to` are null only where
    they do not apply, and every catalogue category is read by some feature."""
    cat = catalogue or default_catalogue()
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate feature names {duplicates}")
    read: set[str] = set()
    for s in specs:
        read.update(s.categories)
        if not isinstance(s, FeatureSpec):
            continue
        for code in s.categories:
            if code not in cat:
                raise ValueError(f"{s.name}: unknown category {code!r}")
            allowed = set(cat[code].severities)
            for sev in s.severities or ():
                if sev not in allowed and s.aggregation != "open_listing":
                    raise ValueError(f"{s.name}: severity {sev!r} not in {code}")
            counts = (
                s.aggregation in MONOTONE_AGGREGATIONS and s.aggregation != "honoured_commitments"
            )
            if s.direction != 0 and counts:  # more of these records must mean more (less) risk
                wrong = "positive" if s.direction == 1 else "negative"
                for sev in s.severities or cat[code].severities or ("*",):
                    if cat[code].polarity_of(sev) == wrong:
                        raise ValueError(
                            f"{s.name}: direction {s.direction} but {code}/{sev} is {wrong}"
                        )
            if s.direction == 0:  # a negative record must move features only towards risk
                negative = [sev for c, sev in _negative_severities(s, cat) if c == code]
                if negative:
                    raise ValueError(
                        f"{s.name}: no risk direction, but reads negative records "
                        f"{code}/{', '.join(negative)}: restrict its severities or give it one"
                    )
        if s.applies_to is not None:
            _check_applicability(s)
        if s.aggregation == "sum_attribute" and not s.attribute:
            raise ValueError(f"{s.name}: sum_attribute needs `attribute`")
        if s.aggregation in ("latest_value", "worst_value") and not s.values:
            raise ValueError(f"{s.name}: {s.aggregation} needs `values`")
        keys = [k for k, _ in s.values]
        known = {sev for code in s.categories for sev in cat[code].severities}
        if len(set(keys)) != len(keys) or set(keys) - known:
            raise ValueError(
                f"{s.name}: `values` must name each severity of {', '.join(s.categories)} at most "
                f"once; repeated or unknown: {sorted({k for k in keys if keys.count(k) > 1 or k not in known})}"
            )
        _check_rises_with_negative_records(s, cat)
    unread = sorted(set(cat.codes) - read)
    if unread:
        raise ValueError(f"catalogue categories read by no feature: {unread}")
