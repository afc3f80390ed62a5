"""Check a draw's audit package outside the service (shipped in the package as `verify.py`).

DOMAIN §7: "a draw must be replayable: its seed, the pool snapshot and the parameters are stored
so that anyone can re-run it and get the identical list". An auditor unpacks the package made by
`credsup plan audit-package` (or `GET /v1/spot-check-plans/{id}/audit-package`) and runs

    python verify.py [--notice notice.json] [--json]

with Python ≥ 3.11 and the libraries of `requirements.txt`. Nothing here reads a database or a
network: the sampling design is the package's own copy (`code/serving/spotcheck/draw.py` and
`items.py`, the release's source), so the auditor can read what was run.

What is checked, each a line of the report:
1. every file's SHA-256 is the manifest's (the package arrived whole);
2. the pool and inspector hashes recomputed from the snapshot files are the plan's;
3. sha256("seed:salt") is the commitment the public notice showed before the checks;
4. the draw replayed from parameters, snapshot and seed gives the stored list byte for byte,
   and its SHA-256 is the plan's;
5. with `--notice` (the plan's public notice as JSON, fetched from the service's
   `/notice` or a published copy): the package's hashes are the published ones, so the package
   is the draw the public was told of.
Exit status: 0 all hold, 1 one does not, 2 the package cannot be read.

`credsup plan verify-package FILE` unpacks a package and runs its `verify.py` in a process of its
own with the release's Python, as an auditor would.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

FORMAT = "credsup-draw-audit-package/1"
"""The manifest's `format`: a change to the package's layout must change it."""

SNAPSHOT_DIR = "snapshot"
CODE_DIR = "code"
LIST_FILE = "list.csv"
PARAMS_FILE = "params.json"
MANIFEST_FILE = "manifest.json"


class PackageError(Exception):
    """The package cannot be read (exit status 2)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _draw_module(root: Path) -> ModuleType:
    """The package's own copy of the sampling design (never an installed one)."""
    code = (root / CODE_DIR).resolve()
    if not (code / "serving" / "spotcheck" / "draw.py").is_file():
        raise PackageError(f"{code}/serving/spotcheck/draw.py is missing")
    if any(m == "serving" or m.startswith("serving.") for m in sys.modules):
        raise PackageError("run it in a process of its own: `serving` is imported already")
    sys.path.insert(0, str(code))
    module = importlib.import_module("serving.spotcheck.draw")
    if not Path(module.__file__ or "").resolve().is_relative_to(code):
        raise PackageError(f"the draw was imported from {module.__file__}, not from {code}")
    return module


def _read_snapshot(root: Path, draw: ModuleType) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    tables = {}
    for name, columns in draw.SNAPSHOT_TABLES.items():
        path = root / SNAPSHOT_DIR / f"{name}.csv"
        if not path.is_file():
            raise PackageError(f"{SNAPSHOT_DIR}/{name}.csv is missing")
        types = {c: pa.int64() if c == "n" else pa.bool_() if c == "active" else pa.string()
                 for c in columns}  # fmt: skip
        try:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True,
                    quoted_strings_can_be_null=False, include_columns=list(columns),
                ),
            )  # fmt: skip
        except (pa.ArrowInvalid, KeyError) as exc:
            raise PackageError(f"{SNAPSHOT_DIR}/{name}.csv: {exc}") from None
        tables[name] = table.to_pandas()
    try:
        return draw.Snapshot(tables)
    except ValueError as exc:
        raise PackageError(f"snapshot: {exc}") from None


def verify(root: Path, notice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report: `checks` (name → passed, detail) and `identical` (every check passed)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackageError(f"{MANIFEST_FILE}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{MANIFEST_FILE}: format {manifest.get('format')!r}, expected {FORMAT}")
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, passed: bool, detail: str) -> None:
        checks[name] = {"passed": bool(passed), "detail": detail}

    files = manifest.get("files") or {}
    altered = sorted(p for p, h in files.items()
                     if not (root / p).is_file() or sha256_file(root / p) != h)  # fmt: skip
    check("files", not altered and bool(files),
          f"{len(files)} files as the manifest lists them" if not altered
          else f"missing or altered: {', '.join(altered)}")  # fmt: skip

    draw = _draw_module(root)
    snapshot = _read_snapshot(root, draw)
    for what, got in (("pool_hash", snapshot.pool_hash),
                      ("inspector_hash", snapshot.inspector_hash)):  # fmt: skip
        want = manifest["hashes"][what]
        check(what, got == want, f"recomputed {got}" + ("" if got == want else f", plan {want}"))

    seed, salt = str(manifest["seed"]["value"]), manifest["seed"].get("salt")
    committed = manifest["seed"].get("sha256")
    if committed and salt:
        got = draw.seed_commitment(seed, salt)
        check(
            "seed_commitment",
            got == committed,
            f"sha256(seed:salt) {got}" + ("" if got == committed else f", notice {committed}"),
        )
    else:  # plans drawn before the commitment was kept
        check("seed_commitment", True, "the plan was drawn before seeds were committed to")

    params = draw.params_from_json((root / PARAMS_FILE).read_text(encoding="utf-8"))
    replayed = draw.canonical_list(draw.draw_plan(params, snapshot, int(seed)).tasks)
    stored = (root / LIST_FILE).read_bytes()
    listed = manifest["hashes"]["list_sha256"]
    replayed_sha = draw.list_sha256(replayed)
    same = replayed == stored and replayed_sha == listed
    tasks = max(replayed.count(b"\n") - 1, 0)
    check("replay", same,
          f"{tasks} tasks, sha256 {replayed_sha}" if same
          else f"replayed sha256 {replayed_sha} ({tasks} tasks), stored list "
               f"{draw.list_sha256(stored)}, plan {listed}")  # fmt: skip

    if notice is not None:
        keys = ("pool_hash", "inspector_hash", "list_sha256")
        wrong = [k for k in keys if notice.get(k) != manifest["hashes"][k]]
        if notice.get("plan_id") != manifest["plan_id"]:
            wrong.insert(0, "plan_id")
        if committed and notice.get("seed_sha256") not in (None, committed):
            wrong.append("seed_sha256")
        check("notice", not wrong,
              "the published hashes are the package's" if not wrong
              else f"differ from the published notice: {', '.join(wrong)}")  # fmt: skip

    import numpy as np
    import pandas as pd

    used = {"numpy": np.__version__, "pandas": pd.__version__}
    drawn_with = manifest.get("drawn_with") or {}
    return {
        "plan_id": manifest["plan_id"],
        "identical": all(c["passed"] for c in checks.values()),
        "checks": checks,
        "drawn_with": drawn_with,
        "replayed_with": used,
        "library_note": None if not drawn_with or drawn_with == used
        else "replayed with other numpy/pandas than the draw: if the replay differs, install "
             "the versions it was drawn with (requirements.txt) and run again",
    }  # fmt: skip


def report_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"plan {report['plan_id']}"]
    for name, c in report["checks"].items():
        lines.append(f"  {'ok  ' if c['passed'] else 'FAIL'} {name}: {c['detail']}")
    if report.get("library_note"):
        lines.append(f"  note: {report['library_note']}")
    lines.append(
        "identical: the draw replays to the stored list (抽查名单可复现)"
        if report["identical"]
        else "NOT identical: see the failed checks above (抽查名单无法复现)"
    )
    return lines


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a spot-check draw from its audit package.")
    parser.add_argument("package", nargs="?", type=Path, default=root,
                        help="the unpacked package (default: this file's directory)")  # fmt: skip
    parser.add_argument("--notice", type=Path, help="the plan's public notice (JSON) to compare")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    where = args.package or Path(__file__).resolve().parent
    try:
        notice = None
        if args.notice is not None:
            try:
                notice = json.loads(args.notice.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PackageError(f"--notice {args.notice}: {exc}") from None
        report = verify(where, notice)
    except PackageError as exc:
        print(f"cannot read the package: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
