"""Real-time gold: windowed tables kept up to date from silver's new rows.

A gold table with a ``stream:`` block (:class:`lakehouse.config.WindowSpec`) is built by the
``stream`` job: a streaming read of its silver table's change data feed from its first version,
the inserts only (one row per key: the silver MERGE already made a payment that came twice, or
both ways, one row), watermarked on the event-time column, aggregated by the table's transform
(a stateful streaming aggregation in update mode), and each micro-batch's changed windows MERGEd
on the table's keys in one commit that carries the batch's transaction id (a batch replayed after
a crash is skipped by Delta). A row later than the watermark is dropped by the aggregation and
counted from the query's progress (``late_events``); it stays in bronze and silver, and the
batch gold tables stay the reference.
"""

from __future__ import annotations

import logging
from typing import Any

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError
from lakehouse.io import delta, fs
from lakehouse.io.delta_log import Stamp
from lakehouse.runlog import TableRun
from lakehouse.streaming.handlers import keep_errors
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


def query_name(spec: TableSpec) -> str:
    return f"gold_{spec.short_name}_stream"


def events(spark: SparkSession, lake: Lake, spec: TableSpec) -> DataFrame:
    """The silver table's new rows as a stream (its change data feed's inserts), watermarked."""
    assert spec.window is not None
    feed = (
        spark.readStream.format("delta").option("readChangeFeed", "true").option("startingVersion", "0").load(lake.path(spec.upstream[0]))
    )
    return feed.where(F.col("_change_type") == "insert").drop(*CDF_COLUMNS).withWatermark(spec.window.time, spec.window.watermark)


def windows(spec: TableSpec, rows: DataFrame) -> DataFrame:
    """The table's transform over ``rows`` (a stream or, for a recomputation, a batch)."""
    fn = spec.transform_fn()
    return delta.check_schema(fn(rows), delta.schema_of(rows.sparkSession, spec.schema), spec.name)


def merge_windows(spark: SparkSession, path: str, spec: TableSpec, changed: DataFrame, stamp: Stamp) -> None:
    """Upsert the windows a micro-batch changed (their whole new values) in one stamped commit."""
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
    merge = DeltaTable.forPath(spark, path).alias("t").merge(changed.alias("s"), cond).whenMatchedUpdateAll().whenNotMatchedInsertAll()
    with delta.stamped(spark, stamp):
        delta.retry_on_conflict(merge.execute, f"{spec.name}: MERGE")


def start_windows(spark: SparkSession, lake: Lake, spec: TableSpec, tr: TableRun, run_id: str, trigger: dict[str, Any]) -> StreamingQuery:
    """Start the query that keeps the windowed table ``spec`` up to date."""
    source = spec.upstream[0]
    if not delta.is_delta(spark, lake.path(source)):
        raise PipelineError(f"{spec.name}: upstream {source} has no Delta table at {lake.path(source)} (stream or run silver first)")
    path = lake.path(spec.name)
    delta.ensure_table(spark, path, delta.schema_of(spark, spec.schema), spec.partition_by, dict(spec.properties), spec.description)
    checkpoint = lake.checkpoint("gold-stream", spec.name)

    def each_batch(changed: DataFrame, batch_id: int) -> None:
        changed = changed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n = changed.count()
            if n:
                stamp = Stamp(spec.name, run_id, f"lakehouse-window-{fs.stream_id(spark, checkpoint)}", batch_id)
                merge_windows(changed.sparkSession, path, spec, changed, stamp)  # the query's own session
            tr.rows_written += n
            log.info("%s: batch %d: %d window(s) changed", spec.name, batch_id, n)
        finally:
            changed.unpersist()

    return (
        windows(spec, events(spark, lake, spec))
        .writeStream.queryName(query_name(spec))
        .outputMode("update")
        .foreachBatch(keep_errors(spec.name, each_batch))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
