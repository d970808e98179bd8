"""Training sets: labelled payments with point-in-time features, split by time.

The lake has its own clock: the latest payment it holds (a replayed or generated lake is not at
today's date). Labels are taken as known at ``as_of``; only payments old enough for a negative to
be final (``maturity_days``) are trained on, the latest ``validation_days`` of them validate.

Example::

    ts = training_set(spark, lake, load_model_spec("conf"))
    ts.frame.groupBy("split", "label").count().show()
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError
from lakehouse.features.labels import fraud_labels
from lakehouse.features.payments import transaction_features
from lakehouse.instants import utc
from lakehouse.io import delta, fs
from lakehouse.ml.spec import ModelSpec
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

INPUTS = ("silver.transactions", "silver.chargebacks", "silver.customers", "gold.customer_features", "gold.merchant_features")


@dataclass(frozen=True)
class Window:
    """The time range of a training set: train on [start, split), validate on [split, end)."""

    as_of: datetime
    start: datetime
    split: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat(sep=" ") for k in ("as_of", "start", "split", "end")}


@dataclass
class TrainingSet:
    frame: DataFrame
    window: Window
    versions: Mapping[str, int]


def lake_span(spark: SparkSession, lake: Lake, tx: DataFrame | None = None) -> tuple[datetime, datetime]:
    """The earliest and latest payment instants in silver (or in ``tx``, silver.transactions as
    read at some version), aware in UTC; the latest is "now" for a lake that may be replayed or
    generated."""
    tx = tx if tx is not None else spark.read.format("delta").load(lake.path("silver.transactions"))
    row = tx.agg(F.min("event_time"), F.max("event_time")).first()
    if row is None or row[1] is None:
        raise PipelineError(f"silver.transactions at {lake.path('silver.transactions')} holds no payments: nothing to train on")
    return utc(row[0]), utc(row[1])


def lake_clock(spark: SparkSession, lake: Lake) -> datetime:
    return lake_span(spark, lake)[1]


def _day(ts: datetime) -> datetime:
    """Midnight UTC of the UTC day of ``ts``."""
    d = utc(ts)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def training_window(as_of: datetime, spec: ModelSpec, first: datetime | None = None) -> Window:
    """Train on [start, split), validate on [split, end): ``end`` is the maturity line (labels of
    older payments are final), ``start`` at most ``training_days`` before it and not within the
    lake's first ``warmup_days`` (from ``first``, its earliest payment)."""
    as_of = utc(as_of)
    end = _day(as_of - timedelta(days=spec.maturity_days))
    start = end - timedelta(days=spec.training_days)
    if first is not None:
        start = max(start, _day(first) + timedelta(days=spec.warmup_days))
    return Window(as_of=as_of, start=start, split=end - timedelta(days=spec.validation_days), end=end)


def read_pinned(
    spark: SparkSession, lake: Lake, names: tuple[str, ...] = INPUTS, pins: Mapping[str, int] | None = None
) -> tuple[dict[str, DataFrame], dict[str, int]]:
    """The tables pinned (time travel) at their current versions, or at the versions ``pins``
    names (to rebuild what an earlier run read), and those versions.

    Raises:
        PipelineError: a table has no Delta table yet, or a pin names a table not read here or a
            version the table does not have yet.
    """
    pins = dict(pins or {})
    unknown = sorted(set(pins) - set(names))
    if unknown:
        raise PipelineError(f"--pin names {', '.join(unknown)}: not an input here (inputs: {', '.join(names)})")
    frames, versions = {}, {}
    for name in names:
        path = lake.path(name)
        v = delta.version(spark, path)
        if v is None:
            raise PipelineError(f"{name}: no Delta table at {path} (run the pipeline first: ./spark-submit.sh pipeline)")
        if name in pins:
            if not 0 <= pins[name] <= v:
                raise PipelineError(f"{name}: pinned at version {pins[name]}, but the table at {path} is at version {v}")
            v = pins[name]
        versions[name] = v
        frames[name] = spark.read.format("delta").option("versionAsOf", v).load(path)
    return frames, versions


def labelled_features(t: Mapping[str, DataFrame], spec: ModelSpec, as_of: datetime, start: datetime, end: datetime) -> DataFrame:
    """Payments of [start, end) with their labels known at ``as_of`` and their features."""
    tx = t["silver.transactions"].where(
        (F.col("event_date") >= F.lit(start.date()))
        & (F.col("event_date") <= F.lit(end.date()))
        & (F.col("event_time") >= F.lit(start))
        & (F.col("event_time") < F.lit(end))
    )
    labelled = fraud_labels(tx, t["silver.chargebacks"], as_of, spec.maturity_days, spec.fraud_reasons)
    return transaction_features(labelled, t["gold.customer_features"], t["gold.merchant_features"], t["silver.customers"])


def training_set(
    spark: SparkSession, lake: Lake, spec: ModelSpec, as_of: datetime | None = None, pins: Mapping[str, int] | None = None
) -> TrainingSet:
    """Labelled payments of the training window with their features and ``split`` (train/validate),
    from the tables as they are now or at the versions ``pins`` names (see :func:`read_pinned`).

    Raises:
        PipelineError: the window holds no labelled payment, or only one class.
    """
    frames, versions = read_pinned(spark, lake, pins=pins)
    first, last = lake_span(spark, lake, frames["silver.transactions"])
    as_of = utc(as_of) if as_of else last
    w = training_window(as_of, spec, first)
    if w.start >= w.split:
        raise PipelineError(
            f"no training days: labels mature {spec.maturity_days} d after a payment (as of {as_of}), the first "
            f"{spec.warmup_days} d of the lake (from {first}) lack history, {spec.validation_days} d validate: "
            f"the lake needs at least {spec.warmup_days + spec.validation_days + spec.maturity_days + 1} days of payments"
        )
    df = labelled_features(frames, spec, as_of, w.start, w.end)
    df = df.withColumn("split", F.when(F.col("event_time") < F.lit(w.split), F.lit("train")).otherwise(F.lit("validate")))
    return TrainingSet(df, w, versions)


def oracle_scores(spark: SparkSession, lake: Lake) -> DataFrame | None:
    """The generator's true fraud probability per payment (``truth/fraud_labels``), if present."""
    path = f"{lake.env.paths.truth}/fraud_labels"
    if not fs.exists(spark, path):  # a lake not made by the generator has no truth
        log.info("no generator truth at %s: the oracle's AUC is not reported", path)
        return None
    return spark.read.parquet(path).select("transaction_id", F.col("fraud_probability").alias("oracle_score"))


def export_sample(
    spark: SparkSession, lake: Lake, spec: ModelSpec, out: str, fraction: float = 0.2, as_of: datetime | None = None, seed: int = 7
) -> tuple[int, Window]:
    """Write a training sample as Parquet for a data scientist's notebook: every fraud and
    ``fraction`` of the other payments of the training window, with ``split``, ``label``, the
    model's features and the fairness groups. Returns (rows written, window)."""
    ts = training_set(spark, lake, spec, as_of)
    cols = ["transaction_id", "event_time", "split", "label", *spec.features, "home_country", "age_band"]
    sample = ts.frame.select(*cols).sampleBy("label", {0: fraction, 1: 1.0}, seed)
    sample.coalesce(1).write.mode("overwrite").parquet(out)
    rows = spark.read.parquet(out).count()
    return rows, ts.window
