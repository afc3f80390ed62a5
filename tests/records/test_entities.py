"""Entity (registration) ingestion: validation, versions, idempotency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from records import uscc
from records.ingest import ingest_file
from records.store import Store
from tests.records.factory import TODAY, write_entities_csv

RNG = np.random.default_rng(11)
ENT, IND = uscc.generate_many(RNG, ["91", "92"], ["410102", "410105"])


def _row(code: str, **kw: str) -> dict[str, str]:
    base = {"uscc": code, "name": "郑州市金水区某某商贸有限公司", "industry": "F52",
            "registered_capital": "1000000", "established_date": "2015-04-01",
            "recorded_date": "2015-04-02"}  # fmt: skip
    return {**base, **kw}


def test_entities_defaults_come_from_the_code(store: Store, tmp_path: Path) -> None:
    path = write_entities_csv(
        tmp_path / "e.csv", [_row(ENT), _row(IND, name="金水区王记小吃店", industry="H62")]
    )
    result = ingest_file(store, path, "entities", "samr", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 0)
    got = {r["uscc"]: r for r in store.read("entities").to_pylist()}
    assert got[ENT]["entity_type"] == "enterprise" and got[ENT]["region"] == "410102"
    assert got[IND]["entity_type"] == "individual_business" and got[IND]["status"] == "active"


def test_invalid_entities_are_quarantined(store: Store, tmp_path: Path) -> None:
    rows = [
        _row(ENT[:-1] + ("0" if ENT[-1] != "0" else "1")),
        _row(ENT, entity_type="individual_business"),
        _row(IND, industry="Z99"),
        _row(IND, region="12345"),
        _row(IND, status="alive"),
        _row(IND, registered_capital="-1"),
        _row(IND, established_date="2030-01-01"),
        _row(IND, name=""),
    ]
    result = ingest_file(
        store, write_entities_csv(tmp_path / "e.csv", rows), "entities", "samr", today=TODAY
    )
    assert result.stored == 0
    assert result.by_reason == {
        "invalid_uscc": 1, "invalid_entity_type": 1, "invalid_industry": 1, "invalid_region": 1,
        "invalid_status": 1, "negative_amount": 1, "future_date": 1, "missing_field": 1,
    }  # fmt: skip


def test_only_a_market_regulation_code_is_an_enterprise_business_or_cooperative(
    store: Store, tmp_path: Path
) -> None:
    """Codes 91-93 alone belong to the entities market regulation registers, which file annual
    reports with it (`features.specs.ANNUAL_REPORT_FILERS`): another code declared one of
    them is refused, and may be declared any other type."""
    social, institution, organ = uscc.generate_many(
        np.random.default_rng(12), ["51", "12", "11"], ["410102"] * 3
    )
    rows = [
        _row(social, entity_type="enterprise"),
        _row(institution, entity_type="cooperative"),
        _row(organ, entity_type="individual_business"),
        _row(organ, entity_type="public_institution", recorded_date="2015-04-03"),
        _row(social),
    ]
    result = ingest_file(
        store, write_entities_csv(tmp_path / "e.csv", rows), "entities", "samr", today=TODAY
    )
    assert result.by_reason == {"invalid_entity_type": 3}
    got = {r["uscc"]: r["entity_type"] for r in store.read("entities").to_pylist()}
    assert got == {organ: "public_institution", social: "social_organisation"}


def test_changes_become_new_versions_and_repeats_change_nothing(
    store: Store, tmp_path: Path
) -> None:
    v1 = write_entities_csv(tmp_path / "v1.csv", [_row(ENT), _row(IND)])
    ingest_file(store, v1, "entities", "samr", today=TODAY)
    again = ingest_file(store, v1, "entities", "samr", today=TODAY)
    assert (again.stored, again.already_stored) == (0, 2)
    v2 = write_entities_csv(
        tmp_path / "v2.csv",
        [_row(ENT, status="deregistered", recorded_date="2024-06-01"), _row(IND)],
    )
    changed = ingest_file(store, v2, "entities", "samr", today=TODAY)
    assert (changed.stored, changed.already_stored) == (1, 1)
    versions = [r for r in store.read("entities").to_pylist() if r["uscc"] == ENT]
    assert sorted(r["status"] for r in versions) == ["active", "deregistered"]
    # the same code twice in one file with different content is a conflict, not a guess
    clash = write_entities_csv(tmp_path / "v3.csv", [_row(IND, name="甲"), _row(IND, name="乙")])
    res = ingest_file(store, clash, "entities", "samr", today=TODAY)
    assert res.by_reason == {"duplicate_conflict": 2} and res.stored == 0


def test_versions_in_one_file_are_history_and_stay_idempotent(store: Store, tmp_path: Path) -> None:
    rows = [
        _row(ENT, recorded_date="2015-04-02"),
        _row(ENT, status="deregistered", recorded_date="2025-01-10"),
        _row(IND, recorded_date="2015-04-02"),
    ]
    path = write_entities_csv(tmp_path / "h.csv", rows)
    first = ingest_file(store, path, "entities", "samr", today=TODAY, history=True)
    assert (first.stored, first.quarantined) == (3, 0)
    again = ingest_file(store, path, "entities", "samr", today=TODAY, history=True)
    assert (again.stored, again.already_stored) == (0, 3)
    # an unchanged registration sent again without a date is no new version either
    undated = write_entities_csv(tmp_path / "u.csv", [{**_row(IND), "recorded_date": ""}])
    assert (
        ingest_file(store, undated, "entities", "samr", today=TODAY, history=True).already_stored
        == 1
    )
    # a late-arriving older version is history, stored, when the file back-fills history
    older = write_entities_csv(
        tmp_path / "o.csv", [_row(ENT, name="旧名称", recorded_date="2010-01-01")]
    )
    assert ingest_file(store, older, "entities", "samr", today=TODAY, history=True).stored == 1


def test_batch_ids_sort_in_commit_order_so_the_later_same_day_version_wins(
    tmp_path: Path,
) -> None:
    for attempt in range(5):  # commits within one second used to tie at random
        store = Store(tmp_path / f"s{attempt}")
        v1 = write_entities_csv(tmp_path / "v1.csv", [_row(ENT, recorded_date="2024-06-01")])
        v2 = write_entities_csv(
            tmp_path / "v2.csv", [_row(ENT, status="revoked", recorded_date="2024-06-01")]
        )
        ingest_file(store, v1, "entities", "samr", today=TODAY)
        ingest_file(store, v2, "entities", "samr", today=TODAY)
        with store.connect() as con:
            latest = con.execute(
                "SELECT arg_max(status, batch_id) FROM entities WHERE uscc = ?", [ENT]
            ).fetchall()[0][0]
        assert latest == "revoked"
        assert [e["seq"] for e in store.log()] == [1, 2]
        assert store.log()[0]["batch_id"] < store.log()[1]["batch_id"]


def test_a_natural_person_s_identity_number_is_not_registered_as_a_company(
    store: Store, tmp_path: Path
) -> None:
    """An identity number that passes the credit-code checks was stored as a social
    organisation and then scored and published; it is quarantined, saying what it is."""
    person = "511302198506121181"
    path = write_entities_csv(tmp_path / "e.csv", [_row(person, name="王五"), _row(ENT)])
    result = ingest_file(store, path, "entities", "samr", today=TODAY)
    assert (result.stored, result.quarantined) == (1, 1)
    assert [r["uscc"] for r in store.read("entities").to_pylist()] == [ENT]
    (held,) = store.read("quarantine").to_pylist()
    assert held["reason"] == "invalid_uscc" and "resident identity card number" in held["message"]
