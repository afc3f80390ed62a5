"""The real data sets of ../shared/data go through the packaged mappings (skip when absent).

Expected counts are computed independently with pandas from the raw files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from records import uscc
from records.ingest import IngestResult, ingest_file
from records.store import Store

pytestmark = pytest.mark.real_data
TODAY = pd.Timestamp("2026-11-22").date()


def _balanced(r: IngestResult) -> None:
    assert r.rows_mapped == r.stored + r.already_stored + r.duplicates_in_file + r.quarantined


def test_bdci_tables(store: Store, shared_data: Path) -> None:
    base = shared_data / "bdci2020-illegal-fundraising"
    companies = pd.read_csv(base / "entprise_info.csv")
    ent = ingest_file(store, base / "entprise_info.csv", "entities", "bdci", "bdci-entities", TODAY)
    assert ent.stored == companies["id"].nunique() == 14_865

    reports = pd.read_csv(base / "annual_report_info.csv", dtype=str)
    ar = ingest_file(
        store, base / "annual_report_info.csv", "records", "bdci", "bdci-annual-report", TODAY
    )
    _balanced(ar)
    same_key = reports.duplicated(["id", "ANCHEYEAR"], keep=False)
    conflicting = (
        reports[same_key]
        .groupby(["id", "ANCHEYEAR"])
        .filter(lambda g: len(g.drop_duplicates()) > 1)
    )
    assert ar.by_reason == {"duplicate_conflict": len(conflicting)}
    assert (
        ar.stored == reports.drop(conflicting.index).drop_duplicates(["id", "ANCHEYEAR"]).shape[0]
    )

    tax = pd.read_csv(base / "tax_info.csv", dtype=str)
    tx = ingest_file(store, base / "tax_info.csv", "records", "bdci", "bdci-tax", TODAY)
    _balanced(tx)
    assert tx.stored == len(tax.drop_duplicates()) and tx.quarantined == 0

    news = pd.read_csv(base / "news_info.csv", dtype=str)
    nw = ingest_file(store, base / "news_info.csv", "records", "bdci", "bdci-news", TODAY)
    _balanced(nw)
    relative = ~news["public_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    assert nw.by_reason == {"invalid_date": int(relative.sum())}  # e.g. "14小时前"
    assert nw.stored == len(news[~relative].drop_duplicates())

    other = pd.read_csv(base / "other_info.csv", dtype=str)
    ot = ingest_file(store, base / "other_info.csv", "records", "bdci", "bdci-other", TODAY)
    _balanced(ot)
    signals = other.melt(
        id_vars="id", value_vars=["legal_judgment_num", "brand_num", "patent_num"]
    ).dropna()
    assert ot.stored + ot.duplicates_in_file + ot.quarantined == len(signals) + ot.by_reason.get(
        "empty_row", 0
    )

    stored = store.read("records").to_pandas()
    assert set(stored["category"]) == {
        "annual_report",
        "tax_declaration",
        "news",
        "third_party_signal",
    }
    assert uscc.valid_mask(store.read("records").column("uscc")).all()
    # the same id gets the same code in every table, so records join to their entity
    ids = (
        set(companies["id"])
        | set(reports["id"])
        | set(tax["id"])
        | set(news["id"])
        | set(other["id"])
    )
    assert set(stored["uscc"]) <= {uscc.derive(i, "bdci2020") for i in ids}
    both = sorted(set(companies["id"]) & set(news["id"]))
    entity_codes = set(store.read("entities").column("uscc").to_pylist())
    assert both and all(uscc.derive(i, "bdci2020") in entity_codes for i in both)
    assert {uscc.derive(i, "bdci2020") for i in both} <= set(stored["uscc"])
    # the original id is kept, and the label is not
    one = json.loads(stored[stored["category"] == "news"]["attributes"].iloc[0])
    assert len(one["source_id"]) == 48
    assert "label" not in " ".join(stored["attributes"].head(1000))

    # idempotent on real data too
    again = ingest_file(store, base / "news_info.csv", "records", "bdci", "bdci-news", TODAY)
    assert again.stored == 0 and again.already_stored == nw.stored


def test_boston_inspections(store: Store, shared_data: Path) -> None:
    path = shared_data / "boston-restaurant-inspections" / "AllViolations.csv"
    raw = pd.read_csv(path)
    res = ingest_file(store, path, "records", "boston", "boston-inspections", TODAY)
    assert (res.stored, res.quarantined) == (len(raw), 0) == (34_879, 0)
    ent = ingest_file(store, path, "entities", "boston", "boston-entities", TODAY)
    assert ent.stored == raw["restaurant_id"].nunique() == 1_867
    checks = store.read("records").to_pandas()
    assert checks["uscc"].nunique() == 1_867
    attrs = pd.DataFrame([json.loads(a) for a in checks["attributes"]])
    assert attrs["findings_minor"].sum() == raw["*"].sum()
    assert attrs["findings_major"].sum() == raw["**"].sum()
    assert attrs["findings_serious"].sum() == raw["***"].sum()
    severe = (raw["***"] > 0).sum()
    assert (checks["severity"] == "serious").sum() == severe
    clean = ((raw["*"] == 0) & (raw["**"] == 0) & (raw["***"] == 0)).sum()
    assert (checks["severity"] == "pass").sum() == clean
