"""The one scoring function, and batch scoring of the payments not scored yet.

:func:`score` takes model inputs (:func:`lakehouse.features.payments.transaction_features`) and
a :class:`LoadedModel` and adds ``score`` (a calibrated fraud probability) and ``decision``. It
serves both flavours a registry holds:

* a Spark MLlib model (our training job): ``mlflow.spark.load_model`` then ``transform``;
* any pyfunc model (a data scientist's scikit-learn model from a notebook): scored with
  ``mapInPandas``, the model loaded once per Python worker, in Arrow batches. (Not
  ``mlflow.pyfunc.spark_udf``: for a Spark-flavour model it starts a JVM per Python worker.)

Batch scoring (:func:`score_new`) reads the payments silver added or changed since the last
scoring run (change data feed), leaves out those already in the predictions table, scores the
rest with the champion and inserts them (MERGE, insert only): running it again scores nothing
twice, even after a crash between the write and the run log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from lakehouse.errors import PipelineError
from lakehouse.faults import crash_point
from lakehouse.features.payments import transaction_features
from lakehouse.io import delta, delta_log
from lakehouse.ml import registry
from lakehouse.ml.dataset import read_pinned
from lakehouse.ml.spec import ModelSpec
from lakehouse.pipeline.gold import changes_since
from lakehouse.runlog import RunLog
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

PREDICTIONS_SCHEMA = (
    "transaction_id string, customer_id string, merchant_id string, event_time timestamp, event_date date, "
    "score double, decision string, threshold double, model_name string, model_version string, "
    "feature_versions map<string,bigint>, scored_at timestamp"
)
SCORING_INPUTS = ("silver.chargebacks", "silver.customers", "gold.customer_features", "gold.merchant_features")


@dataclass
class LoadedModel:
    """A model ready to score: the MLlib PipelineModel or the pyfunc model's URI."""

    name: str
    version: str
    flavor: str  # "spark" or "pyfunc"
    features: tuple[str, ...]
    threshold: float
    odds_factor: float = 1.0
    spark_model: object | None = None
    uri: str = ""
    tracking_uri: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


def probability(p: Column, odds_factor: float) -> Column:
    """Undo class weighting: a model trained with positives weighted ``odds_factor`` times the
    negatives learned odds that many times too high."""
    if odds_factor == 1.0:
        return p
    return p / (p + (F.lit(1.0) - p) * F.lit(odds_factor))


def load(spec: ModelSpec, alias: str = registry.CHAMPION, version: str | None = None) -> LoadedModel:
    """Load ``models:/<name>@<alias>`` (or a version) in the flavour it was logged in."""
    import mlflow

    if version is None:
        mv = registry.version_of(spec.name, alias)
        if mv is None:
            raise PipelineError(f"model {spec.name} has no {alias} yet: train one (./spark-submit.sh train) or promote a version")
    else:
        mv = registry.client().get_model_version(spec.name, str(version))
    uri = f"models:/{spec.name}/{mv.version}"
    info = mlflow.models.get_model_info(uri)
    tags = dict(mv.tags or {})
    features = tuple(tags["features"].split(",")) if tags.get("features") else spec.features
    common = dict(
        name=spec.name,
        version=str(mv.version),
        features=features,
        threshold=spec.threshold,
        odds_factor=float(tags.get("odds_factor", 1.0)),
        uri=uri,
        tracking_uri=mlflow.get_tracking_uri(),
        tags=tags,
    )
    if "spark" in info.flavors:
        return LoadedModel(flavor="spark", spark_model=mlflow.spark.load_model(uri), **common)
    if "python_function" in info.flavors:
        return LoadedModel(flavor="pyfunc", **common)
    raise PipelineError(f"{uri}: flavours {', '.join(info.flavors)}; the scorer needs spark or python_function")


_PYFUNC_CACHE: dict[str, object] = {}


def _pyfunc_scores(uri: str, tracking_uri: str, features: tuple[str, ...]):  # noqa: ANN202 - a mapInPandas function
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import mlflow.pyfunc
        import numpy as np

        model = _PYFUNC_CACHE.get(uri)
        if model is None:  # once per Python worker (workers are reused across tasks)
            mlflow.set_tracking_uri(tracking_uri)
            model = _PYFUNC_CACHE.setdefault(uri, mlflow.pyfunc.load_model(uri))
        for pdf in batches:
            out = model.predict(pdf[list(features)])
            arr = np.asarray(out.values if hasattr(out, "values") else out, dtype="float64")
            pdf["__p"] = arr[:, -1] if arr.ndim == 2 else arr  # predict_proba: the fraud class is the last column
            yield pdf

    return run


def score(model: LoadedModel, inputs: DataFrame) -> DataFrame:
    """``inputs`` with ``score`` (fraud probability) and ``decision`` ('decline' at or above the
    threshold, else 'approve'). The same function serves batch and real-time scoring."""
    missing = [f for f in model.features if f not in inputs.columns]
    if missing:
        raise PipelineError(f"model {model.name} v{model.version} needs feature column(s) {', '.join(missing)}")
    if model.flavor == "spark":
        out = model.spark_model.transform(inputs)  # type: ignore[union-attr]
        p = vector_to_array(F.col("probability")).getItem(1)
        out = out.select(*inputs.columns, probability(p, model.odds_factor).alias("score"))
    else:
        # the rows travel through the pandas function whole (no join back on a generated id,
        # which Spark may number differently when it evaluates the input twice)
        fn = _pyfunc_scores(model.uri, model.tracking_uri, model.features)
        schema = StructType([*inputs.schema.fields, StructField("__p", DoubleType())])
        out = inputs.mapInPandas(fn, schema).select(*inputs.columns, probability(F.col("__p"), model.odds_factor).alias("score"))
    decision = F.when(F.col("score") >= F.lit(model.threshold), F.lit("decline")).otherwise(F.lit("approve"))
    return out.withColumn("decision", decision)


def predictions_path(lake: Lake, spec: ModelSpec) -> str:
    return f"{lake.env.paths.tables}/ml/{spec.name}_predictions"


@dataclass
class ScoringResult:
    model: str
    version: str
    candidates: int
    scored: int
    declined: int
    seconds: float
    table_version: int | None


def score_new(spark: SparkSession, lake: Lake, spec: ModelSpec, runlog: RunLog, model: LoadedModel | None = None) -> ScoringResult:
    """Score every payment silver holds that the predictions table does not."""
    import time

    t0 = time.monotonic()
    model = model or load(spec)
    path = predictions_path(lake, spec)
    name = f"ml.{spec.name}_predictions"
    delta.ensure_table(spark, path, delta.schema_of(spark, PREDICTIONS_SCHEMA), partition_by=["event_date"])
    with runlog.track(name) as tr:
        tx_path = lake.path("silver.transactions")
        current = delta.version(spark, tx_path)
        if current is None:
            raise PipelineError(f"silver.transactions has no Delta table at {tx_path} (run the pipeline first)")
        # what the table has absorbed is in its own commits (the run log only records it)
        absorbed, stamp = delta_log.next_stamp(
            spark, path, name, runlog.run_id, f"lakehouse-score-{name}", {"silver.transactions": current}
        )
        last = (absorbed or {}).get("silver.transactions")
        tr.inputs = {"silver.transactions": current}
        if last is None:
            candidates = spark.read.format("delta").option("versionAsOf", current).load(tx_path)
        else:
            changes = changes_since(spark, tx_path, last, current)
            if changes is None:
                log.info("%s: silver.transactions unchanged since the last scoring run", name)
                tr.output_version = delta.version(spark, path)
                return ScoringResult(spec.name, model.version, 0, 0, 0, time.monotonic() - t0, tr.output_version)
            candidates = changes.where(F.col("_change_type").isin("insert", "update_postimage")).drop(
                "_change_type", "_commit_version", "_commit_timestamp"
            )
        candidates = candidates.dropDuplicates(["transaction_id"])
        done = spark.read.format("delta").load(path).select("transaction_id")
        todo = candidates.join(done, "transaction_id", "left_anti").persist()
        try:
            n = todo.count()
            tr.rows_read = n
            if n:
                frames, versions = read_pinned(spark, lake, SCORING_INPUTS)
                versions["silver.transactions"] = current
                inputs = transaction_features(
                    todo, frames["gold.customer_features"], frames["gold.merchant_features"], frames["silver.customers"]
                )
                now = datetime.now(timezone.utc)
                out = score(model, inputs).select(
                    "transaction_id",
                    "customer_id",
                    "merchant_id",
                    "event_time",
                    "event_date",
                    "score",
                    "decision",
                    F.lit(model.threshold).alias("threshold"),
                    F.lit(model.name).alias("model_name"),
                    F.lit(model.version).alias("model_version"),
                    F.create_map(*[x for k, v in sorted(versions.items()) for x in (F.lit(k), F.lit(v).cast("bigint"))]).alias(
                        "feature_versions"
                    ),
                    F.lit(now).alias("scored_at"),
                )
                days = sorted(r[0] for r in todo.select("event_date").distinct().collect() if r[0] is not None)
                with delta.stamped(spark, stamp):
                    m = delta.merge_insert_only(spark, path, out, ["transaction_id"], prune={"event_date": days})
                crash_point("score.after_write", name)
                tr.rows_inserted = tr.rows_written = m.get("numTargetRowsInserted", 0)
        finally:
            todo.unpersist()
        tr.output_version = delta.version(spark, path)
    declined = 0
    if tr.rows_inserted:
        # exact (a concurrent run may have inserted some of ours), and cheap: only the days just
        # scored are read, and of them only files written now (scored_at's statistics)
        declined = (
            spark.read.format("delta")
            .option("versionAsOf", tr.output_version)
            .load(path)
            .where(F.col("event_date").isin(days))
            .where(F.col("model_version") == model.version)
            .where(F.col("scored_at") == F.lit(now))
            .where("decision = 'decline'")
            .count()
        )
    return ScoringResult(
        spec.name, model.version, tr.rows_read or 0, tr.rows_inserted or 0, declined, time.monotonic() - t0, tr.output_version
    )
