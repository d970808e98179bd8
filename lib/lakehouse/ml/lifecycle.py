"""Train, evaluate, log, register and (maybe) promote: what ``./spark-submit.sh train`` runs.

Example (a notebook)::

    report = train_and_register(spark, lake, load_model_spec(lake.env.conf_dir))
    print(report.metrics["roc_auc"], report.oracle_auc)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from lakehouse.errors import PipelineError
from lakehouse.ml import registry
from lakehouse.ml.dataset import TrainingSet, oracle_scores, training_set
from lakehouse.ml.monitor import fairness, profile
from lakehouse.ml.monitoring import BASELINE_ARTIFACT
from lakehouse.ml.score import LoadedModel, load, score
from lakehouse.ml.spec import ModelSpec
from lakehouse.ml.train import Fitted, auc, calibration, evaluate, fit
from lakehouse.runlog import git_commit
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["pyspark==4.2.0"]


@dataclass
class TrainReport:
    name: str
    version: str
    run_id: str
    window: dict[str, str]
    counts: dict[str, int]
    metrics: dict[str, float]
    oracle_auc: float | None
    model_auc_on_oracle_rows: float | None
    champion_before: str | None
    champion_auc: float | None
    promoted: bool
    seconds: dict[str, float] = field(default_factory=dict)
    calibration: list[dict[str, float]] = field(default_factory=list)
    fairness: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    reweighed: tuple[str, ...] = ()
    tradeoff: dict[str, dict[str, float | None]] | None = None
    fairness_bound: float = 0.8

    def summary(self) -> str:
        m = self.metrics
        lines = [
            f"model {self.name} version {self.version} (run {self.run_id[:8]}), trained on {self.window['start']} .. "
            f"{self.window['split']}, validated on .. {self.window['end']} (labels as of {self.window['as_of']})",
            f"  rows: train {self.counts.get('train', 0):,} ({self.counts.get('train_positives', 0):,} fraud), "
            f"validate {self.counts.get('validate', 0):,} ({self.counts.get('validate_positives', 0):,} fraud)",
            f"  ROC AUC {m['roc_auc']:.4f}  PR AUC {m['pr_auc']:.4f}  precision {m['precision']:.3f} recall {m['recall']:.3f} "
            f"at {m['threshold']:.2f}  Brier {m['brier']:.5f}  ECE {m['ece']:.5f}",
        ]
        if self.oracle_auc is not None and self.model_auc_on_oracle_rows is not None:
            lines.append(
                f"  oracle ROC AUC {self.oracle_auc:.4f} (the generator's true fraud probability on the same rows): "
                f"model / oracle = {self.model_auc_on_oracle_rows / self.oracle_auc:.1%}"
            )
        for g, table in self.fairness.items():
            low = min_ratio(table)
            worst = min(table, key=lambda t: _low(t), default=None)
            if worst is not None and low is not None:
                lines.append(
                    f"  fairness by {g}: lowest ratio to the best-treated group {low:.2f} ({worst['group']}; bound "
                    f"{self.fairness_bound}){'  ALERT' if low < self.fairness_bound else ''}"
                )
            else:
                lines.append(f"  fairness by {g}: not compared (fewer than two groups with enough payments for any rate)")
        if self.tradeoff:
            lines.append(f"  reweighing ({', '.join(self.reweighed)}) trade-off on the validation rows:")
            for variant, vals in self.tradeoff.items():
                fair = ", ".join(f"{k} {v:.2f}" for k, v in vals.items() if k != "roc_auc" and v is not None)
                lines.append(f"    {variant:<17} ROC AUC {vals['roc_auc']:.4f}; lowest fairness ratio: {fair}")
        if self.champion_before is None:
            lines.append("  no champion before: this version is the champion")
        else:
            verdict = "promoted to champion" if self.promoted else "stays challenger"
            lines.append(f"  champion was version {self.champion_before} (ROC AUC {self.champion_auc:.4f} on the same rows): {verdict}")
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _low(t: dict[str, object]) -> float:
    vals = [t[k] for k in ("approval_ratio", "tnr_ratio", "tpr_ratio") if t.get(k) is not None]
    return float(min(vals)) if vals else float("inf")  # type: ignore[type-var]


def min_ratio(table: list[dict[str, object]]) -> float | None:
    """The lowest ratio to the best-treated group (decline rate, FPR or TPR) of a fairness table."""
    low = min((_low(t) for t in table), default=float("inf"))
    return None if low == float("inf") else low


def _validation_auc(model: LoadedModel, validate: DataFrame) -> float | None:
    return auc(score(model, validate), "score")


def _candidate(spec: ModelSpec, fitted: Fitted) -> LoadedModel:
    return LoadedModel(
        name=spec.name,
        version="candidate",
        flavor="spark",
        features=spec.features,
        threshold=spec.threshold,
        odds_factor=fitted.odds_factor,
        spark_model=fitted.model,
    )


def _fairness(scored: DataFrame, spec: ModelSpec) -> dict[str, list[dict[str, object]]]:
    return {g: fairness(scored, g, bound=spec.fairness_min_ratio) for g in spec.fairness_groups}


def log_and_register(spec: ModelSpec, fitted: Fitted, run_id: str) -> Any:
    """Log the fitted MLlib pipeline in the active MLflow run, register it as a new version of the
    spec's model with the tags the scorer reads (features, odds factor), and make it the
    challenger; the model version."""
    import mlflow

    info = mlflow.spark.log_model(fitted.model, artifact_path="model", pip_requirements=PIP_REQUIREMENTS)
    mv = mlflow.register_model(info.model_uri, spec.name)
    client = registry.client()
    for k, v in {"odds_factor": repr(fitted.odds_factor), "features": ",".join(spec.features), "run_id": run_id}.items():
        client.set_model_version_tag(spec.name, mv.version, k, v)
    registry.set_alias(spec.name, registry.CHALLENGER, mv.version)
    return mv


def train_and_register(
    spark: SparkSession,
    lake: Lake,
    spec: ModelSpec,
    as_of: datetime | None = None,
    reweigh: tuple[str, ...] | None = None,
    auto_promote: bool = True,
    pins: Mapping[str, int] | None = None,
) -> TrainReport:
    """Build the training set (from the tables as they are now, or at the versions ``pins``
    names), fit, evaluate on the later validation days, log it all to MLflow, register the model
    as a new version aliased ``challenger``, and promote it when the rule says."""
    import mlflow

    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    tracking, artifacts = registry.configure(lake.env)
    ts: TrainingSet = training_set(spark, lake, spec, as_of, pins)
    frame = ts.frame.persist()
    try:
        counts_rows = frame.groupBy("split", "label").count().collect()
        counts: dict[str, int] = {}
        for r in counts_rows:
            counts[r["split"]] = counts.get(r["split"], 0) + r["count"]
            if r["label"] == 1:
                counts[f"{r['split']}_positives"] = r["count"]
        if not counts.get("train") or not counts.get("validate"):
            raise PipelineError(
                f"training window {ts.window.start} .. {ts.window.end} (labels as of {ts.window.as_of}, maturity "
                f"{spec.maturity_days} d) holds {counts.get('train', 0)} training and {counts.get('validate', 0)} validation rows: "
                "the lake needs more days of payments"
            )
        seconds["training set"] = time.monotonic() - t0
        log.info("training set: %s", counts)
        train, validate = frame.where("split = 'train'"), frame.where("split = 'validate'")
        t1 = time.monotonic()
        fitted = fit(train, spec, reweigh)
        seconds["fit"] = time.monotonic() - t1
        t2 = time.monotonic()
        candidate = _candidate(spec, fitted)
        scored = score(candidate, validate).persist()
        metrics = evaluate(scored, spec.threshold)
        metrics["threshold"] = spec.threshold
        reliability = calibration(scored)
        fair = _fairness(scored, spec)
        # what the monitoring job compares each day with: the training rows' features and scores
        baseline = profile(score(candidate, train), [*spec.features, "score"])
        oracle = oracle_scores(spark, lake)
        oracle_auc = model_on_oracle = None
        if oracle is not None:
            both = scored.join(oracle, "transaction_id")
            oracle_auc = auc(both, "oracle_score")
            model_on_oracle = auc(both, "score")
        scored.unpersist()
        seconds["evaluate"] = time.monotonic() - t2
        groups = spec.reweigh if reweigh is None else tuple(reweigh)
        tradeoff = None
        if groups:  # the same model without reweighing, so the trade-off is on record
            t5 = time.monotonic()
            plain_scored = score(_candidate(spec, fit(train, spec, ())), validate).persist()
            plain_fair = _fairness(plain_scored, spec)
            tradeoff = {
                "with reweighing": {"roc_auc": metrics["roc_auc"], **{g: min_ratio(t) for g, t in fair.items()}},
                "without": {"roc_auc": auc(plain_scored, "score") or float("nan"), **{g: min_ratio(t) for g, t in plain_fair.items()}},
            }
            plain_scored.unpersist()
            seconds["fit without reweighing"] = time.monotonic() - t5
        t3 = time.monotonic()
        exp = registry.experiment_id(spec.name, artifacts)
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_params(
                {
                    "classifier": spec.classifier,
                    **{f"param.{k}": v for k, v in spec.params.items()},
                    "features": ",".join(spec.features),
                    "maturity_days": spec.maturity_days,
                    "threshold": spec.threshold,
                    "reweigh": ",".join(groups) or "none",
                    "odds_factor": round(fitted.odds_factor, 6),
                    **{f"window.{k}": v for k, v in ts.window.as_dict().items()},
                }
            )
            mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN-free
            mlflow.log_metrics({f"rows.{k}": float(v) for k, v in counts.items()})
            if oracle_auc is not None and model_on_oracle is not None:
                mlflow.log_metrics({"oracle_roc_auc": oracle_auc, "roc_auc_on_oracle_rows": model_on_oracle})
            mlflow.set_tags({"git_commit": git_commit(), **{f"table_version.{k}": str(v) for k, v in ts.versions.items()}})
            mlflow.log_dict({"bins": reliability}, "calibration.json")
            mlflow.log_dict({"bound": spec.fairness_min_ratio, "groups": fair}, "fairness.json")
            mlflow.log_dict(baseline, BASELINE_ARTIFACT)
            mlflow.log_metrics({f"fairness.{g}.min_ratio": v for g, t in fair.items() if (v := min_ratio(t)) is not None})
            if tradeoff:
                mlflow.log_dict(tradeoff, "reweighing_tradeoff.json")
                without = tradeoff["without"]
                mlflow.log_metrics({f"without_reweighing.{k}": v for k, v in without.items() if v is not None and v == v})
            mv = log_and_register(spec, fitted, run.info.run_id)
        seconds["log and register"] = time.monotonic() - t3
        t4 = time.monotonic()
        champ = registry.version_of(spec.name, registry.CHAMPION)
        champ_auc = None
        if champ is not None:
            champ_auc = _validation_auc(load(spec, version=champ.version), validate)
        promoted = auto_promote and registry.should_promote(metrics["roc_auc"], champ_auc, spec.promotion_margin)
        if promoted:
            registry.set_alias(spec.name, registry.CHAMPION, mv.version)
        seconds["compare with champion"] = time.monotonic() - t4
    finally:
        frame.unpersist()
    seconds["total"] = time.monotonic() - t0
    return TrainReport(
        name=spec.name,
        version=str(mv.version),
        run_id=run.info.run_id,
        window=ts.window.as_dict(),
        counts=counts,
        metrics=metrics,
        oracle_auc=oracle_auc,
        model_auc_on_oracle_rows=model_on_oracle,
        champion_before=None if champ is None else str(champ.version),
        champion_auc=champ_auc,
        promoted=promoted,
        seconds=seconds,
        calibration=reliability,
        fairness=fair,
        reweighed=tuple(groups),
        tradeoff=tradeoff,
        fairness_bound=spec.fairness_min_ratio,
    )
