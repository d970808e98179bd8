"""A model's declaration: ``conf/models/<name>.yaml`` -> :class:`ModelSpec`, checked strictly.

Example::

    spec = load_model_spec("conf", "fraud")
    spec.name, spec.threshold      # ('payments_fraud', 0.3)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lakehouse.config import _check_keys, _read_yaml
from lakehouse.errors import ConfigError
from lakehouse.features.payments import FEATURES

CLASSIFIERS = ("gbt", "logistic")
GROUP_COLUMNS = ("age_band", "home_country")


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    Attributes:
        name: the registered model's name in MLflow.
        features: the input columns (a subset of :data:`lakehouse.features.payments.FEATURES`).
        maturity_days, fraud_reasons: how labels are made (:func:`lakehouse.features.labels.fraud_labels`).
        training_days, validation_days: the time range trained on and its latest part validated on.
        warmup_days: payments of a lake's first days are not trained on (their 30-day features
            lack history the model will always have later).
        classifier, params: ``gbt`` or ``logistic`` and the MLlib estimator's parameters.
        reweigh: groups whose examples are reweighed per group and label (empty: off).
        threshold: the score from which a payment is declined / reviewed.
        promotion_margin: ROC AUC a challenger must gain over the champion to replace it.
        fairness_groups, fairness_min_ratio: groups fairness is measured over, the bound on the
            ratio of a group's rate to the best-treated group's.
        psi_alert, ks_alert: drift bounds per feature and day.
        auc_drop: how far the realized ROC AUC over matured days may fall below the validation
            AUC before it is an alert.
    """

    name: str
    description: str
    owner: str
    features: tuple[str, ...]
    maturity_days: int
    fraud_reasons: tuple[str, ...]
    training_days: int
    validation_days: int
    classifier: str
    params: Mapping[str, Any]
    threshold: float
    promotion_margin: float
    fairness_groups: tuple[str, ...]
    fairness_min_ratio: float
    psi_alert: float
    ks_alert: float
    reweigh: tuple[str, ...] = ()
    warmup_days: int = 30
    auc_drop: float = 0.05
    decisions_topic: str = "fraud-decisions"
    """The Kafka topic real-time decisions go to (the stream job's scoring query)."""
    file: str = ""


_KEYS = {
    "name": str,
    "description": str,
    "owner": str,
    "features": list,
    "label": dict,
    "training": dict,
    "decision": dict,
    "fairness": dict,
    "monitoring": dict,
}


def _number(data: Mapping[str, Any], key: str, file: str, where: str, low: float, high: float, whole: bool = False) -> Any:
    v = data.get(key)
    ok = isinstance(v, int) if whole else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not (low <= v <= high):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(file, f"{where}.{key}", f"expected {kind} in [{low}, {high}], got {v!r}")
    return v


def _groups(values: Any, file: str, key: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise ConfigError(file, key, "expected a list of group columns")
    for i, g in enumerate(values):
        if g not in GROUP_COLUMNS:
            raise ConfigError(file, f"{key}[{i}]", f"{g!r} is not a group column (known: {', '.join(GROUP_COLUMNS)})")
    return tuple(values)


def parse_model_spec(data: Mapping[str, Any], file: str) -> ModelSpec:
    _check_keys(data, _KEYS, tuple(_KEYS), file)
    features = data["features"]
    for i, f in enumerate(features):
        if f not in FEATURES:
            raise ConfigError(file, f"features[{i}]", f"{f!r} is not a computed feature (known: {', '.join(FEATURES)})")
    if len(set(features)) != len(features) or not features:
        raise ConfigError(file, "features", "list each feature once, at least one")
    label, training, decision, fairness, monitoring = (data[k] for k in ("label", "training", "decision", "fairness", "monitoring"))
    _check_keys(label, {"maturity_days": int, "fraud_reasons": list}, ("maturity_days", "fraud_reasons"), file, "label.")
    _check_keys(
        training,
        {"days": int, "validation_days": int, "warmup_days": int, "classifier": str, "params": dict, "reweigh": list},
        ("days", "validation_days", "classifier"),
        file,
        "training.",
    )
    _check_keys(
        decision,
        {"threshold": (int, float), "promotion_margin": (int, float), "topic": str},
        ("threshold", "promotion_margin"),
        file,
        "decision.",
    )
    _check_keys(fairness, {"groups": list, "min_ratio": (int, float)}, ("groups", "min_ratio"), file, "fairness.")
    _check_keys(
        monitoring,
        {"psi_alert": (int, float), "ks_alert": (int, float), "auc_drop": (int, float)},
        ("psi_alert", "ks_alert"),
        file,
        "monitoring.",
    )
    if training["classifier"] not in CLASSIFIERS:
        raise ConfigError(file, "training.classifier", f"{training['classifier']!r} is not one of {', '.join(CLASSIFIERS)}")
    days = _number(training, "days", file, "training", 2, 3650, whole=True)
    validation = _number(training, "validation_days", file, "training", 1, days - 1, whole=True)
    return ModelSpec(
        name=data["name"],
        description=" ".join(str(data["description"]).split()),
        owner=data["owner"],
        features=tuple(features),
        maturity_days=_number(label, "maturity_days", file, "label", 1, 365, whole=True),
        fraud_reasons=tuple(str(r) for r in label["fraud_reasons"]),
        training_days=days,
        validation_days=validation,
        classifier=training["classifier"],
        params=MappingProxyType(dict(training.get("params") or {})),
        threshold=float(_number(decision, "threshold", file, "decision", 0, 1)),
        promotion_margin=float(_number(decision, "promotion_margin", file, "decision", 0, 1)),
        fairness_groups=_groups(fairness["groups"], file, "fairness.groups"),
        fairness_min_ratio=float(_number(fairness, "min_ratio", file, "fairness", 0, 1)),
        psi_alert=float(_number(monitoring, "psi_alert", file, "monitoring", 0, 10)),
        ks_alert=float(_number(monitoring, "ks_alert", file, "monitoring", 0, 1)),
        auc_drop=float(_number({"auc_drop": monitoring.get("auc_drop", 0.05)}, "auc_drop", file, "monitoring", 0, 1)),
        reweigh=_groups(training.get("reweigh") or [], file, "training.reweigh"),
        warmup_days=_number({"warmup_days": training.get("warmup_days", 30)}, "warmup_days", file, "training", 0, 365, whole=True),
        decisions_topic=decision.get("topic", "fraud-decisions"),
        file=file,
    )


def load_model_spec(conf_dir: str | Path, model: str = "fraud") -> ModelSpec:
    """Read ``<conf_dir>/models/<model>.yaml``."""
    path = Path(conf_dir) / "models" / f"{model}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(conf_dir) / "models").glob("*.yaml"))
        raise ConfigError(str(path), None, f"no such model declaration (known: {', '.join(known) or 'none'})")
    return parse_model_spec(_read_yaml(path), str(path))
