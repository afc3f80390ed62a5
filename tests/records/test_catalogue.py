from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from records.catalogue import DIMENSIONS, REQUIRED_CODES, default_catalogue, load_catalogue
from records.spans import Span


def test_default_catalogue_has_every_required_category() -> None:
    cat = default_catalogue()
    assert set(cat.codes) >= REQUIRED_CODES
    assert {c.dimension for c in cat.categories} == set(DIMENSIONS)


def test_meanings_the_service_relies_on() -> None:
    cat = default_catalogue()
    penalty = cat["admin_penalty"]
    assert penalty.severities == ("minor", "general", "serious")
    assert penalty.amount != "none" and penalty.dimension == "supervision"
    assert penalty.publicity_for("minor").max == Span(months=3)
    assert penalty.publicity_for("general").min == Span(months=3)
    assert penalty.publicity_for("general").max == Span(months=12)
    assert (penalty.publicity_for("serious").min, penalty.publicity_for("serious").max) == (
        Span(months=12), Span(months=36))  # fmt: skip
    assert penalty.repairable and "licence_revoked" in penalty.never_repairable_early
    # a check that could not be made is neither a pass nor a problem
    assert cat["spot_check"].severities == ("pass", "problem", "serious", "not_inspected")
    assert cat["spot_check"].polarity_of("not_inspected") == "neutral"
    assert cat["spot_check"].publicity_for("problem").max == Span(months=60)
    assert cat["spot_check"].publicity_natural_person == Span(months=24)
    assert cat["news"].severities == ("positive", "neutral", "negative")
    assert cat["third_party_signal"].required_attributes == ("name",)
    assert cat["tax_credit_grade"].severities == ("A", "B", "M", "C", "D")
    assert cat["honor"].polarity_of("national") == "positive"
    assert cat["serious_dishonest_list"].polarity_of("listed") == "negative"


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _raw() -> dict[str, object]:
    from importlib import resources

    text = resources.files("records.catalogue").joinpath("catalogue-v1.yaml").read_text("utf-8")
    data: dict[str, object] = yaml.safe_load(text)
    return data


def test_a_catalogue_missing_a_required_category_is_rejected(tmp_path: Path) -> None:
    data = _raw()
    data["categories"] = [c for c in data["categories"] if c["code"] != "news"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="lacks required categories \\['news'\\]"):
        load_catalogue(_write(tmp_path, data))


def test_duplicate_codes_and_unknown_severities_are_rejected(tmp_path: Path) -> None:
    data = _raw()
    cats = data["categories"]
    data["categories"] = [*cats, cats[0]]  # type: ignore[misc]
    with pytest.raises(ValidationError, match="duplicate category codes"):
        load_catalogue(_write(tmp_path, data))
    data = _raw()
    penalty = next(c for c in data["categories"] if c["code"] == "admin_penalty")  # type: ignore[attr-defined]
    penalty["publicity"]["huge"] = {"min": "1 day", "max": "2 days"}
    with pytest.raises(ValidationError, match="unknown severities \\['huge'\\]"):
        load_catalogue(_write(tmp_path, data))


def test_publicity_periods_must_be_ordered(tmp_path: Path) -> None:
    data = _raw()
    news = next(c for c in data["categories"] if c["code"] == "news")  # type: ignore[attr-defined]
    news["publicity"] = {"*": {"min": "1 year", "max": "10 months"}}
    with pytest.raises(ValidationError, match="min 1 year exceeds max 10 months"):
        load_catalogue(_write(tmp_path, data))


@pytest.mark.parametrize("text", ["3 weeks", "three months", "-1 days", "1 year and 2 days", ""])
def test_a_period_the_catalogue_cannot_read_is_rejected(tmp_path: Path, text: str) -> None:
    data = _raw()
    news = next(c for c in data["categories"] if c["code"] == "news")  # type: ignore[attr-defined]
    news["publicity"] = {"*": {"min": 0, "max": text}}
    with pytest.raises(ValidationError, match="not a period"):
        load_catalogue(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("field", "value"),
    [("special_domain_period", "90 days"), ("special_domain_period", "1 year 2 days")],
)
def test_a_category_gives_its_periods_in_one_unit(tmp_path: Path, field: str, value: str) -> None:
    """Which of "3 months" and "90 days" is longer depends on the start (89 days from 28
    February, 92 from 1 July): the rule in Python and in SQL could then disagree."""
    data = _raw()
    penalty = next(c for c in data["categories"] if c["code"] == "admin_penalty")  # type: ignore[attr-defined]
    penalty[field] = value
    with pytest.raises(ValidationError, match="admin_penalty: its periods mix months and days"):
        load_catalogue(_write(tmp_path, data))


def test_periods_read_in_months_years_and_days() -> None:
    assert Span.parse("3 months") == Span(3) and Span.parse("1 Year") == Span(12)
    assert Span.parse("1 year 6 months") == Span(18)
    assert Span.parse("2 years 10 days") == Span(24, 10)
    assert Span.parse("90 days") == Span(0, 90) == Span.parse(90) == Span.parse("90")
    assert [str(Span(3)), str(Span(36)), str(Span(13, 1)), str(Span())] == [
        "3 months", "3 years", "1 year 1 month 1 day", "0 days"]  # fmt: skip


def test_a_catalogue_in_days_still_loads(tmp_path: Path) -> None:
    """Catalogues written before 2026.12 give whole days (`min_days`, `max_days`, ...)."""
    data = _raw()
    for c in data["categories"]:  # type: ignore[attr-defined]
        for period in c["publicity"].values():
            period["min_days"] = None if period.pop("min") is None else 30
            period["max_days"] = None if period.pop("max") is None else 400
        for old, new in (("publicity_natural_person_days", "publicity_natural_person"),
                         ("special_domain_days", "special_domain_period")):  # fmt: skip
            if new in c:
                c.pop(new)
                c[old] = 200
    cat = load_catalogue(_write(tmp_path, data))
    assert cat["admin_penalty"].publicity_for("minor").max == Span(0, 400)
    assert cat["admin_penalty"].special_domain_period == Span(0, 200)
    assert cat["spot_check"].publicity_natural_person == Span(0, 200)
    both = _raw()
    news = next(c for c in both["categories"] if c["code"] == "news")  # type: ignore[attr-defined]
    news["publicity"]["*"]["max_days"] = 30
    with pytest.raises(ValidationError, match="give max or max_days, not both"):
        load_catalogue(_write(tmp_path, both))
