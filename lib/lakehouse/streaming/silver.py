"""Stream bronze -> silver: the batch path's transform, rules and quarantine, per micro-batch.

A silver table whose YAML names ``streamed_from: <stream table>`` is fed twice: by the
``pipeline`` job from its first upstream table (the file landing zone), and by the ``stream``
job from the stream table (the Kafka topic). Both call :func:`lakehouse.pipeline.silver.process_batch`,
so a record is typed, checked, quarantined and upserted the same way whichever path brought it,
and a payment that came both ways is one row (the MERGE on the table's keys: the highest
``version_column`` wins, an exact re-send is a duplicate).

The stream's query reads the stream table as a Delta stream from its first version, with its own
checkpoint (``<checkpoints>/silver-stream/<table>``): its id keys the batches' commits, so the
stream's batches and the pipeline's never take each other's transaction ids. Each micro-batch
holds the table's lease while it writes: a pipeline run writing the same table waits for the
batch to finish, and the batch waits for a pipeline run that holds the table (up to
``LEASE_WAIT`` seconds, logging whom it waits for). The other tables a batch reads (the
transform's upstream tables, the rules' lookups) are held in memory between micro-batches, read
again when a new version is committed (:class:`lakehouse.io.cached.CachedTables`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError
from lakehouse.io import delta, fs
from lakehouse.io.cached import CachedTables
from lakehouse.leases import leased
from lakehouse.pipeline.silver import ensure_silver, process_batch, stream_feed
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.runlog import TableRun
from lakehouse.streaming.handlers import keep_errors
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

LEASE_WAIT = 1800.0
"""Seconds a micro-batch waits for a pipeline run that holds its silver table."""


def start_silver(
    spark: SparkSession, lake: Lake, spec: TableSpec, tr: TableRun, run_id: str, trigger: dict[str, Any], lease_wait: float = LEASE_WAIT
) -> StreamingQuery:
    """Start the query that upserts the stream table's records into the silver table ``spec``."""
    feed = stream_feed(lake, spec)
    for u in spec.upstream[1:]:
        if not delta.is_delta(spark, lake.path(u)):
            raise PipelineError(
                f"{spec.name}: upstream {u} has no Delta table at {lake.path(u)}; the stream needs it "
                f"(build it first: ./spark-submit.sh pipeline --layers bronze,silver --tables {lake.spec(u).upstream[0]},{u})"
            )
    ensure_silver(spark, lake, spec)
    metrics = QualityMetrics(spark, lake)
    tables = CachedTables(spark, lake.path)  # the upstream and lookup tables, read once per version

    def each_batch(df: DataFrame, batch_id: int) -> None:
        with leased(spark, lake, run_id, "stream", [spec.name], wait=lease_wait):
            # in the query's own session: the MERGE's stamp is a session setting (delta.stamped)
            process_batch(df.sparkSession, lake, spec, df, batch_id, run_id, tr, metrics, feed, tables.read)

    records = (
        spark.readStream.format("delta")
        # every commit, one after another (not a first snapshot): offsets stay on commit
        # boundaries, which the reconciliation reads (absorbed_rows)
        .option("startingVersion", "0")
        .load(lake.path(feed.driver))
    )
    return (
        records.writeStream.queryName(f"silver_{spec.short_name}_stream")
        .foreachBatch(keep_errors(spec.name, each_batch))
        .option("checkpointLocation", feed.checkpoint)
        .trigger(**trigger)
        .start()
    )


def absorbed_rows(spark: SparkSession, lake: Lake, spec: TableSpec, batch_log: DataFrame | None) -> int:
    """Rows of the stream table that the silver table's stream has absorbed.

    The highest micro-batch of the stream's checkpoint that ``ops.batch_log`` records (a batch
    writes its row there inside the batch, after its data) ends at an offset of the form
    ``{"reservoirVersion": v, "index": -1}``: every commit before ``v`` absorbed; the stream
    table's rows at version ``v - 1`` are those. An offset of another form (a commit split over
    batches) falls back to the rows the logged batches read.
    """
    feed = stream_feed(lake, spec)
    if batch_log is None or "metadata" not in fs.list_names(spark, feed.checkpoint):
        return 0
    prefix = fs.stream_id(spark, feed.checkpoint)[:13] + "-"
    mine = batch_log.where((F.col("table") == spec.name) & F.col("batch_key").startswith(prefix))
    got = mine.agg(F.max(F.substring_index("batch_key", "-", -1).cast("long")).alias("b"), F.sum("rows_read").alias("r")).first()
    if got is None or got["b"] is None:
        return 0
    lines = fs.read_text(spark, f"{feed.checkpoint}/offsets/{got['b']}").splitlines()
    try:
        offset = json.loads(lines[2])
    except (IndexError, ValueError):
        offset = {}
    if offset.get("index") == -1 and offset.get("isStartingVersion") is False and isinstance(offset.get("reservoirVersion"), int):
        version = offset["reservoirVersion"] - 1
        return spark.read.format("delta").option("versionAsOf", version).load(lake.path(feed.driver)).count()
    log.warning("%s: the stream's last batch ends inside a commit of %s; reconciled with the rows its batches read", spec.name, feed.driver)
    return int(got["r"] or 0)


def bronze_schema_ddl(records_schema: Any) -> str:
    """A DDL string of a DataFrame's schema, every column nullable (as a table is created)."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in records_schema.fields)


def ensure_stream_table(spark: SparkSession, lake: Lake, spec: TableSpec, rows: DataFrame) -> None:
    """Create the stream table (empty) before any query starts, so the silver query can read it
    while the bronze query has not committed yet."""
    delta.ensure_table(
        spark, lake.path(spec.name), delta.schema_of(spark, bronze_schema_ddl(rows.schema)), spec.partition_by, None, spec.description
    )
