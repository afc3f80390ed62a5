"""The README's example files are the files in examples/, and they are valid canonical input."""

from __future__ import annotations

import re
from datetime import date

from records.ingest import ingest_file
from records.store import Store
from tests.conftest import REPO

TODAY = date(2026, 11, 22)


def test_readme_examples_are_the_example_files_and_ingest_cleanly(store: Store) -> None:
    blocks = re.findall(r"```csv\n(.*?)```", (REPO / "README.md").read_text("utf-8"), re.S)
    records, entities = REPO / "examples" / "records.csv", REPO / "examples" / "entities.csv"
    assert blocks == [records.read_text("utf-8"), entities.read_text("utf-8")]
    ent = ingest_file(store, entities, "entities", "samr", today=TODAY)
    rec = ingest_file(store, records, "records", "samr", today=TODAY)
    assert (ent.stored, ent.quarantined) == (2, 0), store.read("quarantine").to_pylist()
    assert (rec.stored, rec.quarantined) == (3, 0), store.read("quarantine").to_pylist()
