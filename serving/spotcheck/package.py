"""A draw's audit package: everything an outside auditor needs to replay a plan without the
service (DOMAIN §7, "anyone can re-run it and get the identical list").

One zip, a folder `<plan id>-audit/` holding:
- `manifest.json`: the plan (id, name, dates), the seed with its salt and commitment and who
  chose it, the draw version, the numpy and pandas it was drawn with, the plan's hashes (pool,
  inspectors, list: the ones its public notice shows), each file's SHA-256, and who exported it
  when;
- `params.json`: the parameters exactly as stored with the plan;
- `snapshot/<table>.csv`: the pool and inspector snapshot, each table in the canonical CSV the
  plan's hashes are computed over (so the hashes can be recomputed from the files);
- `list.csv`: the list as stored (canonical CSV, what `list_sha256` covers);
- `code/serving/spotcheck/draw.py` and `items.py`: this release's sampling design, verbatim
  (it replays every draw version in `DRAW_VERSIONS`); `verify.py` (`verify_package`) and
  `requirements.txt` (the libraries to run it with, numpy and pandas as the plan was drawn);
- `README.txt`: what it is and how to run it, in Chinese and English.

The snapshot holds the tier of every company in the plan's pool, so a package is credit
information of all of them: only authorities that manage plans fetch it, with a purpose, and each
of those companies gets a line in the audit log (as a list's companies do).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from serving.spotcheck import draw as draw_module
from serving.spotcheck import items as items_module
from serving.spotcheck import verify_package
from serving.spotcheck.draw import SNAPSHOT_TABLES, _csv_bytes, params_from_json
from serving.spotcheck.plans import _drawn_on, get_plan, snapshot_from_bytes

README = """\
抽查审计包 / Spot-check draw audit package
==========================================

中文
----
本包包含抽查计划 {plan_id}（{name}）的全部抽取依据：随机种子、对象库与执法人员库快照、
抽取参数和抽查名单。任何人可离线重新运行抽取，核对名单是否一致（双随机、一公开）。

  python -m venv venv && venv/bin/pip install -r requirements.txt
  venv/bin/python verify.py                       # 核对本包
  venv/bin/python verify.py --notice notice.json  # 并与公示的哈希值比对

退出码 0 表示全部一致，1 表示有不一致项，2 表示包无法读取。
本包含对象库中每家企业的信用风险分类，属于信用信息，须按规定保管，不得公开。

English
-------
This package holds everything plan {plan_id} ({name}) was drawn from: the seed, the snapshot of
the company and inspector pools, the parameters, and the list. Anyone can re-run the draw offline
and check that it gives the identical list.

  python -m venv venv && venv/bin/pip install -r requirements.txt
  venv/bin/python verify.py                       # check this package
  venv/bin/python verify.py --notice notice.json  # and compare with the published notice

Exit status 0: everything holds; 1: a check failed; 2: the package cannot be read.
The snapshot holds the supervision tier of every company in the pool: it is credit information,
to be kept as such and never published.

Files: manifest.json (seed, hashes, each file's SHA-256), params.json, snapshot/*.csv, list.csv,
code/serving/spotcheck/draw.py and items.py (the sampling design that replays it), verify.py.
"""

_REQUIREMENTS = ("pyarrow", "pydantic", "PyYAML")
"""Libraries the verifier needs besides numpy and pandas (pinned to this release's)."""

_INIT = '"""The sampling design, as shipped in a draw\'s audit package."""\n'


@dataclass
class AuditPackage:
    plan_id: str
    data: bytes
    companies: list[str]
    """The companies in the snapshot (each one's tier is in the package)."""
    manifest: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"{self.plan_id}-audit.zip"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _requirements(drawn_with: dict[str, str]) -> str:
    pins = {"numpy": drawn_with.get("numpy") or metadata.version("numpy"),
            "pandas": drawn_with.get("pandas") or metadata.version("pandas")}  # fmt: skip
    pins.update({name: metadata.version(name) for name in _REQUIREMENTS})
    return "".join(f"{name}=={version}\n" for name, version in pins.items())


def audit_package(engine: Engine, plan_id: str, exported_by: str) -> AuditPackage:
    """The plan's audit package (LookupError: no such plan; PlanError: a draw version this
    release does not replay)."""
    with engine.connect() as con:
        plan = get_plan(con, plan_id)
    # refuses a draw version this release's code cannot replay
    draw_version = params_from_json(plan["params"]).draw_version
    summary = json.loads(plan["summary"])
    snapshot = snapshot_from_bytes(plan["snapshot_blob"])
    listing = zlib.decompress(plan["list_blob"])
    committed = summary.get("seed") or {}
    files: dict[str, bytes] = {
        verify_package.PARAMS_FILE: plan["params"].encode("utf-8"),
        verify_package.LIST_FILE: listing,
        **{
            f"{verify_package.SNAPSHOT_DIR}/{name}.csv": _csv_bytes(snapshot.tables[name])
            for name in SNAPSHOT_TABLES
        },
        "code/serving/__init__.py": _INIT.encode(),
        "code/serving/spotcheck/__init__.py": _INIT.encode(),
        "code/serving/spotcheck/draw.py": Path(draw_module.__file__).read_bytes(),
        "code/serving/spotcheck/items.py": Path(items_module.__file__).read_bytes(),
        "verify.py": Path(verify_package.__file__).read_bytes(),
        "requirements.txt": _requirements(summary.get("drawn_with") or {}).encode(),
        "README.txt": README.format(plan_id=plan["id"], name=plan["name"]).encode("utf-8"),
    }
    manifest = {
        "format": verify_package.FORMAT,
        "plan_id": plan["id"],
        "name": plan["name"],
        "drawn_on": _drawn_on(plan, summary),
        "snapshot_date": _iso(plan["snapshot_date"]),
        "start_date": _iso(plan["start_date"]),
        "due_date": _iso(plan["due_date"]),
        "tasks": int(plan["tasks"]),
        "companies_in_pool": len(snapshot.tables["companies"]),
        "draw_version": draw_version,
        "seed": {
            "value": str(plan["seed"]),
            "salt": committed.get("salt"),
            "sha256": committed.get("sha256"),
            "source": committed.get("source", "not recorded"),
        },
        "hashes": {
            "pool_hash": plan["pool_hash"],
            "inspector_hash": plan["inspector_hash"],
            "list_sha256": plan["list_sha256"],
        },
        "drawn_with": summary.get("drawn_with") or {},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_by": exported_by,
        "files": {path: _sha256(data) for path, data in sorted(files.items())},
    }
    files[verify_package.MANIFEST_FILE] = json.dumps(manifest, ensure_ascii=False, indent=2).encode(
        "utf-8"
    )
    sink = io.BytesIO()
    top = f"{plan['id']}-audit"
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path, data in files.items():
            archive.writestr(f"{top}/{path}", data)
    return AuditPackage(
        plan_id=plan["id"],
        data=sink.getvalue(),
        companies=snapshot.tables["companies"]["uscc"].astype(str).tolist(),
        manifest=manifest,
    )


def _iso(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)
