"""The registered pyfunc model loads and predicts without this project installed: the code it
unpickles travels inside the artifact (`code_paths`) and its requirements name what that code
imports, pinned to the installed versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from datetime import date
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.builder import build_features
from models.published import MODEL_NAME
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.registry import Registry
from training.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
END = date(2026, 6, 30)
PROJECT = ("records", "features", "models", "training", "serving", "cli")

# Run in a fresh interpreter that cannot see this project: `-S` skips the `site` module, so no
# `.pth` file of the virtualenv runs (the editable install's finder is installed by one) and the
# user site is not added; `-P` keeps the script's folder off `sys.path`; PYTHONPATH then names
# only the virtualenv's site-packages, and the working directory is an empty folder. The script
# first proves that none of the project's packages can be found, then loads the model from the
# registry and reports where the project's modules came from.
LOADER = textwrap.dedent(
    """
    import ast, importlib.util, json, sys
    from importlib import metadata
    from pathlib import Path

    project, uri, features, result = json.loads(sys.argv[1]), *sys.argv[2:5]
    visible = [p for p in project if importlib.util.find_spec(p) is not None]
    if visible:
        sys.exit(f"not isolated: {visible} importable from {sys.path}")

    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(uri)
    scored = model.predict(pd.read_parquet(features))
    scored[["probability", "tier"]].to_parquet(result)

    # every third-party distribution that the bundled code imported
    code = {n: m for n, m in sys.modules.items() if n.split(".")[0] in project}
    imported = set()
    for module in code.values():
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(
        n for n in imported
        if n in sys.modules and n not in sys.stdlib_module_names and n not in project
    )
    distributions = metadata.packages_distributions()
    print(json.dumps({
        "files": sorted({m.__file__ for m in code.values()}),
        "imports": {n: distributions.get(n, [n]) for n in third_party},
    }))
    """
)


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, str, pd.DataFrame]:
    """A small province, one model registered in a fresh local store, a few feature rows."""
    root = tmp_path_factory.mktemp("standalone")
    store = Store(root / "store", memory_limit="2GB", threads=2)
    sim = simulate(SimulationConfig(companies=1500, years=4, seed=3, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, sim.records, "records", "sim", today=END, history=True)
    config = TrainConfig(n_estimators=40)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry = Registry(root / "data")
        version = registry.log_training(train(store, config), config, plots=False).version
    features = build_features(store, END).to_pandas().head(25)
    return registry, version, features


def test_the_registered_model_loads_without_the_project_installed(
    registered: tuple[Registry, str, pd.DataFrame], tmp_path: Path
) -> None:
    registry, version, features = registered
    features_path, result_path = tmp_path / "features.parquet", tmp_path / "scored.parquet"
    features.to_parquet(features_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "load.py"
    script.write_text(LOADER)
    site_packages = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(site_packages),
        "MLFLOW_TRACKING_URI": registry.uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # MLflow loads a local store's artifacts in place: leave them as logged
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-P", str(script), json.dumps(PROJECT),
         f"models:/{MODEL_NAME}/{version}", str(features_path), str(result_path)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    # the project's code came from the model's artifact, never from this checkout
    files = [Path(f).resolve() for f in found["files"]]
    assert files and not any(f.is_relative_to(REPO.resolve()) for f in files)
    roots = {f.relative_to(next(p for p in f.parents if p.name == "code")).parts[0] for f in files}
    assert roots == {"records", "features", "models"}

    # ... and scores exactly as the model loaded here
    _, model = registry.load(version)
    direct = model.score(features, reasons=3)
    served = pd.read_parquet(result_path)
    np.testing.assert_array_equal(served["probability"], direct["probability"])
    assert served["tier"].tolist() == direct["tier"].tolist()

    # the logged requirements name every distribution that code imported, pinned as installed
    logged = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}/requirements.txt",
            dst_path=str(tmp_path / "requirements"),
            tracking_uri=registry.uri,
        )
    ).read_text()
    pins = dict(line.split("==") for line in logged.split() if "==" in line)
    pinned = {_normalised(name): v for name, v in pins.items()}
    assert {"duckdb", "pyarrow"} <= pinned.keys()
    assert {"duckdb", "pyarrow", "lightgbm", "sklearn"} <= found["imports"].keys()
    for module, distributions in found["imports"].items():  # `mlflow` is in three
        assert {_normalised(d) for d in distributions} & pinned.keys(), (module, logged)
    for name, version_pin in pinned.items():
        assert version_pin == metadata.version(name), name


def test_only_the_packages_the_model_needs_are_logged(
    registered: tuple[Registry, str, pd.DataFrame], tmp_path: Path
) -> None:
    registry, version, _ = registered
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}",
            dst_path=str(tmp_path),
            tracking_uri=registry.uri,
        )
    )
    code = local / "code"
    assert sorted(p.name for p in code.iterdir()) == ["features", "models", "records"]
    assert not list(code.rglob("__pycache__"))
    assert (code / "records" / "catalogue" / "catalogue-v1.yaml").is_file()  # package data too
