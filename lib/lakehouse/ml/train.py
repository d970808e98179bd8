"""Fit the fraud model (Spark MLlib) and evaluate it.

Fraud is about 1% of payments. Examples are weighted so both classes weigh the same in the loss
(``class_weights``); that inflates the odds the model learns by ``odds_factor`` = w(fraud) /
w(not fraud), and :func:`lakehouse.ml.score.probability` divides it back out, so the score is a
calibrated probability again (the evaluation reports how well: Brier score, expected calibration
error, and a reliability table).

Reweighing (Kamiran & Calders, 2012), when groups are named: each (group, label) cell gets the
weight P(group) P(label) / P(group, label), which makes label and group independent in the
weighted training data; it multiplies the class weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError
from lakehouse.ml.spec import ModelSpec


@dataclass
class Fitted:
    model: PipelineModel
    odds_factor: float
    counts: Mapping[str, int] = field(default_factory=dict)


def class_weights(df: DataFrame, label: str = "label") -> tuple[float, float, dict[str, int]]:
    """(weight of a positive, weight of a negative, counts): each class weighs half in total."""
    counts = {int(r[label]): int(r["count"]) for r in df.groupBy(label).count().collect()}
    pos, neg = counts.get(1, 0), counts.get(0, 0)
    if pos == 0 or neg == 0:
        raise PipelineError(f"the training data holds {pos} fraud and {neg} other labelled payments: both classes are needed")
    total = pos + neg
    return total / (2 * pos), total / (2 * neg), {"positives": pos, "negatives": neg}


def reweighing(df: DataFrame, groups: Sequence[str], label: str = "label") -> Column:
    """Kamiran & Calders' weight per (group, label): P(group) P(label) / P(group, label)."""
    key = F.concat_ws("|", *[F.coalesce(F.col(g).cast("string"), F.lit("?")) for g in groups])
    cells = df.select(key.alias("g"), F.col(label).alias("y")).groupBy("g", "y").count().collect()
    n = sum(r["count"] for r in cells)
    p_g: dict[str, int] = {}
    p_y: dict[int, int] = {}
    for r in cells:
        p_g[r["g"]] = p_g.get(r["g"], 0) + r["count"]
        p_y[r["y"]] = p_y.get(r["y"], 0) + r["count"]
    weight = F.lit(1.0)
    for r in cells:
        w = (p_g[r["g"]] / n) * (p_y[r["y"]] / n) / (r["count"] / n)
        weight = F.when((key == F.lit(r["g"])) & (F.col(label) == F.lit(r["y"])), F.lit(w)).otherwise(weight)
    return weight


def estimator(spec: ModelSpec) -> Pipeline:
    assemble = VectorAssembler(inputCols=list(spec.features), outputCol="features_raw", handleInvalid="keep")
    params: dict[str, Any] = dict(spec.params)
    if spec.classifier == "gbt":
        clf = GBTClassifier(featuresCol="features_raw", labelCol="label", weightCol="weight", **params)
        return Pipeline(stages=[assemble, clf])
    scale = StandardScaler(inputCol="features_raw", outputCol="features", withMean=True, withStd=True)
    clf = LogisticRegression(featuresCol="features", labelCol="label", weightCol="weight", **params)
    return Pipeline(stages=[assemble, scale, clf])


def fit(train: DataFrame, spec: ModelSpec, reweigh: Sequence[str] | None = None) -> Fitted:
    """Fit on ``train`` (labelled rows with the spec's features); ``reweigh`` overrides the spec's groups."""
    w_pos, w_neg, counts = class_weights(train)
    groups = spec.reweigh if reweigh is None else tuple(reweigh)
    weight = F.when(F.col("label") == 1, F.lit(w_pos)).otherwise(F.lit(w_neg))
    if groups:
        weight = weight * reweighing(train, groups)
    data = train.select(*spec.features, F.col("label").cast("double").alias("label"), weight.alias("weight"))
    model = estimator(spec).fit(data)
    return Fitted(model, w_pos / w_neg, counts)


def auc(df: DataFrame, score: str, label: str = "label", metric: str = "areaUnderROC") -> float | None:
    """ROC AUC (or ``areaUnderPR``) of a score column; None with a single class."""
    if df.select(label).distinct().count() < 2:
        return None
    ev = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=label, metricName=metric)
    return float(ev.evaluate(df.select(F.col(score).cast("double").alias(score), F.col(label).cast("double").alias(label))))


def evaluate(scored: DataFrame, threshold: float, score: str = "score", label: str = "label") -> dict[str, float]:
    """ROC AUC, PR AUC, precision and recall at the threshold, Brier score and expected
    calibration error (10 equal-width bins) of a scored, labelled frame."""
    s, y = F.col(score), F.col(label)
    flagged = s >= F.lit(threshold)
    row = scored.agg(
        F.count("*").alias("rows"),
        F.sum(y).alias("positives"),
        F.sum(F.when(flagged, 1).otherwise(0)).alias("flagged"),
        F.sum(F.when(flagged & (y == 1), 1).otherwise(0)).alias("tp"),
        F.avg((s - y) * (s - y)).alias("brier"),
    ).first()
    bins = calibration(scored, score, label)
    n = max(row["rows"], 1)
    ece = sum(b["rows"] * abs(b["mean_score"] - b["fraud_rate"]) for b in bins) / n
    return {
        "roc_auc": auc(scored, score, label) or float("nan"),
        "pr_auc": auc(scored, score, label, "areaUnderPR") or float("nan"),
        "precision": row["tp"] / row["flagged"] if row["flagged"] else float("nan"),
        "recall": row["tp"] / row["positives"] if row["positives"] else float("nan"),
        "brier": float(row["brier"] or 0.0),
        "ece": ece,
        "rows": float(row["rows"]),
        "positives": float(row["positives"] or 0),
        "flagged": float(row["flagged"]),
    }


def calibration(scored: DataFrame, score: str = "score", label: str = "label", bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: per score bin, rows, mean score and observed fraud rate."""
    b = F.least(F.floor(F.col(score) * bins), F.lit(bins - 1)).cast("int")
    rows = (
        scored.groupBy(b.alias("bin"))
        .agg(F.count("*").alias("rows"), F.avg(score).alias("mean_score"), F.avg(F.col(label).cast("double")).alias("fraud_rate"))
        .orderBy("bin")
        .collect()
    )
    return [{"bin": r["bin"], "rows": r["rows"], "mean_score": float(r["mean_score"]), "fraud_rate": float(r["fraud_rate"])} for r in rows]
