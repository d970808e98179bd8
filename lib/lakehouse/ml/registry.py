"""MLflow as tracking store and model registry.

By default a SQLite database and an artifact folder under the lake root (``_mlflow/``); on a
cluster ``ml.tracking_uri`` names a tracking server. A trained model is registered as a new
version with the alias ``challenger``; ``champion`` moves only when a challenger beats the
champion on the same validation window by the configured margin, or by an explicit command
(``./spark-submit.sh promote --version N``).

Example (a notebook)::

    configure(env)
    mv = version_of("payments_fraud", "champion")
    model = mlflow.spark.load_model(f"models:/payments_fraud@champion")
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from lakehouse.config import EnvConfig
from lakehouse.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


def _local_dir(uri: str) -> str | None:
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri):
        return None
    return uri


def configure(env: EnvConfig) -> tuple[str, str]:
    """Point MLflow at the environment's tracking store; return (tracking URI, artifact location)."""
    import mlflow

    root = _local_dir(env.lake_root)
    tracking = env.ml.tracking_uri
    if tracking is None:
        if root is None:
            raise ConfigError(env.files[-1], "ml.tracking_uri", f"the lake root {env.lake_root} is not local: name a tracking server")
        Path(root, "_mlflow").mkdir(parents=True, exist_ok=True)
        tracking = f"sqlite:///{Path(root, '_mlflow', 'mlflow.db').resolve()}"
    artifacts = env.ml.artifact_location or f"{env.lake_root}/_mlflow/artifacts"
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    return tracking, artifacts


def experiment_id(name: str, artifact_location: str) -> str:
    """The experiment named after the model, created with an explicit artifact location (else
    MLflow puts artifacts in ./mlruns of whatever directory the job ran from)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=f"{artifact_location.rstrip('/')}/{name}")


def client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def version_of(name: str, alias: str) -> Any | None:
    """The model version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        model = client().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such model registered yet
            return None
        raise
    version = (model.aliases or {}).get(alias)
    return None if version is None else client().get_model_version(name, version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    client().set_registered_model_alias(name, alias, str(version))
    log.info("%s: %s -> version %s", name, alias, version)


def promote(name: str, version: str | int) -> None:
    """Make ``version`` the champion (the explicit command)."""
    from mlflow.exceptions import MlflowException

    try:
        client().get_model_version(name, str(version))
    except MlflowException:
        raise PipelineError(f"model {name} has no version {version}") from None
    set_alias(name, CHAMPION, version)


def should_promote(challenger_auc: float, champion_auc: float | None, margin: float) -> bool:
    """The promotion rule: no champion yet, or the challenger's ROC AUC on the same validation
    window beats the champion's by at least ``margin``."""
    if champion_auc is None:
        return True
    return challenger_auc >= champion_auc + margin
