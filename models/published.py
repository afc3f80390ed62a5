"""Read-only access to registered tier models: what the service and batch jobs load.

`training.registry` writes (logs, registers, promotes); this module only reads, so that
`serving` can load the champion without importing `training`. The tracking store follows
`MLFLOW_TRACKING_URI` and defaults to `sqlite:///<data_dir>/mlflow/mlflow.db`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.bundle import BUNDLE_FILE, TierModel

MODEL_NAME = "credit-tier"
CHAMPION = "champion"


class ModelNotFound(LookupError):
    pass


def tracking_uri(data_dir: Path) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = (Path(data_dir) / "mlflow" / "mlflow.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class PublishedModels:
    """Versions and aliases of one registered model, read-only."""

    def __init__(self, data_dir: Path, name: str = MODEL_NAME, uri: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.data_dir = Path(data_dir)
        self.name = name
        self.uri = uri or tracking_uri(self.data_dir)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def open_store(self) -> None:
        """Opens the tracking store once, which creates its tables where they do not exist:
        before several workers start, each of which would otherwise create them at once."""
        self.client.search_registered_models(max_results=1)

    def _activate(self) -> None:
        # `models:/` URIs are resolved through the global registry URI
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)

    def _version(self, ref: str) -> ModelVersion:
        try:
            if ref.isdigit():
                return self.client.get_model_version(self.name, ref)
            return self.client.get_model_version_by_alias(self.name, ref)
        except MlflowException as e:
            raise ModelNotFound(f"no version '{ref}' of model {self.name} at {self.uri}") from e

    def load(self, ref: str = CHAMPION) -> tuple[str, TierModel]:
        """(version, model) for a version number or an alias; the bundle is read from the
        registered pyfunc's artifacts (no code runs but unpickling our own classes)."""
        mv = self._version(ref)
        self._activate()
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.name}/{mv.version}", dst_path=tmp,
                tracking_uri=self.uri,
            )  # fmt: skip
            bundle = next(Path(local).rglob(BUNDLE_FILE), None)
            if bundle is None:
                raise ModelNotFound(f"version {mv.version} of {self.name} has no {BUNDLE_FILE}")
            return str(mv.version), TierModel.load(bundle)

    def version(self, ref: str) -> str:
        """The version number an alias (or number) names, without loading the model."""
        return str(self._version(ref).version)

    def champion(self) -> tuple[str, TierModel] | None:
        try:
            return self.load(CHAMPION)
        except ModelNotFound:
            return None
