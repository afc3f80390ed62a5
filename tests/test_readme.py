"""The README's example files are valid canonical input."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from records.ingest import ingest_file
from records.store import Store
from tests.conftest import REPO

TODAY = date(2026, 11, 22)


def test_readme_examples_ingest_cleanly(store: Store, tmp_path: Path) -> None:
    blocks = re.findall(r"```csv\n(.*?)```", (REPO / "README.md").read_text("utf-8"), re.S)
    records, entities = blocks
    (tmp_path / "records.csv").write_text(records, encoding="utf-8")
    (tmp_path / "entities.csv").write_text(entities, encoding="utf-8")
    ent = ingest_file(store, tmp_path / "entities.csv", "entities", "samr", today=TODAY)
    rec = ingest_file(store, tmp_path / "records.csv", "records", "samr", today=TODAY)
    assert (ent.stored, ent.quarantined) == (2, 0), store.read("quarantine").to_pylist()
    assert (rec.stored, rec.quarantined) == (3, 0), store.read("quarantine").to_pylist()
