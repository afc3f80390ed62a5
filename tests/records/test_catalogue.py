from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from records.catalogue import DIMENSIONS, REQUIRED_CODES, default_catalogue, load_catalogue


def test_default_catalogue_has_every_required_category() -> None:
    cat = default_catalogue()
    assert set(cat.codes) >= REQUIRED_CODES
    assert {c.dimension for c in cat.categories} == set(DIMENSIONS)


def test_meanings_the_service_relies_on() -> None:
    cat = default_catalogue()
    penalty = cat["admin_penalty"]
    assert penalty.severities == ("minor", "general", "serious")
    assert penalty.amount != "none" and penalty.dimension == "supervision"
    assert penalty.publicity_for("minor").max_days == 90
    assert penalty.publicity_for("general").min_days == 90
    assert penalty.publicity_for("general").max_days == 365
    assert (
        penalty.publicity_for("serious").min_days,
        penalty.publicity_for("serious").max_days,
    ) == (
        365,
        1095,
    )
    assert penalty.repairable and "licence_revoked" in penalty.never_repairable_early
    assert cat["spot_check"].severities == ("pass", "problem", "serious")
    assert cat["spot_check"].publicity_for("problem").max_days == 5 * 365
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
    penalty["publicity"]["huge"] = {"min_days": 1, "max_days": 2}
    with pytest.raises(ValidationError, match="unknown severities \\['huge'\\]"):
        load_catalogue(_write(tmp_path, data))


def test_publicity_periods_must_be_ordered(tmp_path: Path) -> None:
    data = _raw()
    news = next(c for c in data["categories"] if c["code"] == "news")  # type: ignore[attr-defined]
    news["publicity"] = {"*": {"min_days": 400, "max_days": 10}}
    with pytest.raises(ValidationError, match="min_days 400 exceeds max_days 10"):
        load_catalogue(_write(tmp_path, data))
