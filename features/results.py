"""Stored feature and score results, kept per as-of date with their spec and method versions.

Layout under ``<data_dir>/results``::

    features/as_of=YYYY-MM-DD/<spec_version>.parquet
    scores/as_of=YYYY-MM-DD/<method_version>.parquet
    methods/<method_version>.json       the scorecard configuration a method version names

Where one date holds scores of several methods (`credsup score --scale …` run twice), the one
published for it is the one `credsup load` loads: the file written last.

A result for another date never replaces an earlier one, so "what was this company's grade on
2026-03-31" is answered by the latest score as of that day. Files are written to a temporary name
and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SERVED_FLAGS = (
    "objection_open", "on_serious_dishonest_list", "on_abnormal_list", "on_dishonest_debtor_list",
    "on_focus_list", "on_red_list",
)  # fmt: skip
"""The features `credsup load` serves with a day's scores and tiers (the objection and list
flags every consumer sees)."""

PUBLISHED = {
    "scores": ("score", "grade"), "tiers": ("tier", "probability"), "features": SERVED_FLAGS,
}  # fmt: skip
"""The columns of each published kind whose change is a restatement."""


class Restatement(Exception):
    """A past day's published results would change (records arrived since, recorded as of that
    day or before): refused unless restated knowingly, with a reason."""

    def __init__(
        self, kind: str, as_of: date, published: str, changed: int, version: str | None = None
    ) -> None:
        why = (
            "records recorded by that day arrived since"
            if version in (None, published)
            else f"{version} would replace it"
        )
        super().__init__(
            f"the {kind} as of {as_of} ({published}) are published, and the "
            f"{' or '.join(PUBLISHED[kind])} of {changed:,} companies would change ({why}): "
            "what was published for a past day is not silently rewritten; restate it "
            "knowingly with --restate 'the reason'"
        )
        self.changed = changed


class Results:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "results"

    def _path(self, kind: str, as_of: date, version: str) -> Path:
        return self.root / kind / f"as_of={as_of.isoformat()}" / f"{version}.parquet"

    def write(self, kind: str, table: pa.Table, as_of: date, version: str) -> Path:
        path = self._path(kind, as_of, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        return path

    def write_published(
        self,
        kind: str,
        table: pa.Table,
        as_of: date,
        version: str,
        *,
        today: date,
        restate: str | None = None,
    ) -> Path:
        """Write scores, tiers or features of a date. A past day's (today's may still grow)
        published results are not changed unless `restate` gives the reason: for tiers, those of
        the same model version; for scores and features, the date's published ones, whatever
        their method or spec version (the file written last: another written now would replace
        it); for features, the flags served with the scores and tiers. A past day's results
        equal to the published ones are not rewritten (the file and its time stay). A restated
        file is set aside (`<version>.parquet.superseded-<UTC time>`, no longer read) and the
        restatement logged in `restatements.jsonl` of the kind's folder. `check_published`
        says beforehand whether this would be refused."""
        changed, published = self._change(kind, table, as_of, version, today, restate)
        own = self._path(kind, as_of, version)
        if published is None:
            return self.write(kind, table, as_of, version)
        if not changed and published == own:
            return own
        if changed:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            if own.exists():
                os.replace(own, own.with_name(f"{own.name}.superseded-{stamp}"))
            line = {"at": stamp, "kind": kind, "as_of": as_of.isoformat(),
                    "published": published.stem, "version": version, "changed": changed,
                    "reason": restate}  # fmt: skip
            with (self.root / kind / "restatements.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        return self.write(kind, table, as_of, version)

    def check_published(
        self, kind: str, table: pa.Table, as_of: date, version: str, *, today: date,
        restate: str | None = None,
    ) -> None:  # fmt: skip
        """Raises `Restatement` where `write_published` would refuse; writes nothing (a run
        that publishes several kinds checks them all before it writes any)."""
        self._change(kind, table, as_of, version, today, restate)

    def _change(
        self, kind: str, table: pa.Table, as_of: date, version: str, today: date,
        restate: str | None,
    ) -> tuple[int, Path | None]:  # fmt: skip
        """(companies whose published columns would change, the published file; None: nothing
        published to protect), raising `Restatement` when a change is not restated."""
        if as_of >= today:
            return 0, None
        own = self._path(kind, as_of, version)
        published = own if kind == "tiers" else self.published_file(kind, as_of)
        if published is None or not published.exists():
            return 0, None
        before, after = set(pq.read_schema(published).names), set(table.column_names)
        columns = tuple(c for c in PUBLISHED[kind] if c in before & after)
        old = pq.read_table(published, columns=["uscc", *columns])  # not the reasons
        if any(c in before ^ after for c in PUBLISHED[kind]):  # a published column comes or goes
            changed = max(old.num_rows, table.num_rows)
        else:
            changed = changed_companies(old, table, columns)
        if changed and not (restate or "").strip():
            raise Restatement(kind, as_of, published.stem, changed, version)
        return changed, published

    def published_file(self, kind: str, as_of: date) -> Path | None:
        """The file of a date `credsup load` loads when no version is named: written last."""
        return written_last(self.root / kind / f"as_of={as_of.isoformat()}")

    def write_method(self, version: str, config: dict[str, Any]) -> None:
        """Keep the configuration a method version stands for (re-scoring one company later
        applies it again); written once, since the version is a hash of it."""
        path = self.root / "methods" / f"{version}.json"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def method(self, version: str) -> dict[str, Any] | None:
        path = self.root / "methods" / f"{version}.json"
        if not path.exists():
            return None
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return config

    def read(self, kind: str, as_of: date, version: str) -> pa.Table | None:
        path = self._path(kind, as_of, version)
        return pq.read_table(path) if path.exists() else None

    def _files(self, kind: str, version: str | None) -> list[str]:
        base = self.root / kind
        if not base.exists():
            return []
        pattern = f"{version}.parquet" if version else "*.parquet"
        return sorted(str(p) for p in base.glob(f"as_of=*/{pattern}"))

    def history(self, uscc: str, version: str | None = None) -> list[dict[str, Any]]:
        """Every stored score of a company, oldest first (one per as-of date and method; the
        methods of one date in the order their files were written, the published one last)."""
        files = self._files("scores", version)
        if not files:
            return []
        written = {f: os.stat(f).st_mtime_ns for f in files}
        with duckdb.connect() as con:
            cursor = con.execute(
                "SELECT * FROM read_parquet(?, union_by_name = true, filename = '_file') "
                "WHERE uscc = ?",
                [files, uscc],
            )
            names = [d[0] for d in cursor.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        rows.sort(key=lambda r: (r["as_of"], written.get(r["_file"], 0), r["_file"]))
        for r in rows:
            del r["_file"]
        return rows

    def score_on(self, uscc: str, on: date, version: str | None = None) -> dict[str, Any] | None:
        """The company's score as published on day `on`: the latest as-of date not after it,
        and of its methods the one published (`credsup load` loads the file written last)."""
        earlier = [r for r in self.history(uscc, version) if r["as_of"] <= on]
        return earlier[-1] if earlier else None


def written_last(folder: Path) -> Path | None:
    """Of a date's result files, the one written last (ties by name): the published one."""
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return files[-1] if files else None


def changed_companies(old: pa.Table, new: pa.Table, columns: tuple[str, ...]) -> int:
    """Companies in one table and not the other, or whose `columns` differ (nulls equal)."""
    with duckdb.connect() as con:
        con.register("o", old.select(["uscc", *columns]))
        con.register("n", new.select(["uscc", *columns]))
        differs = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in columns) or "false"
        (count,) = con.execute(
            f"SELECT count(*) FROM o FULL JOIN n USING (uscc) "
            f"WHERE o.uscc IS NULL OR n.uscc IS NULL OR {differs}"
        ).fetchone() or (0,)
    return int(count)
