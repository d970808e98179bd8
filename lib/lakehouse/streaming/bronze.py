"""Kafka -> bronze: every record of a topic appended to a Delta table exactly once.

A bronze table whose ``source.format`` is ``kafka`` holds what the topic delivered: the value
parsed like a JSON line of the file landing zone (the declared fields, ``_rescued_data`` for
unknown fields, ``_corrupt_record`` for a value that is not JSON, so silver treats both paths
alike), and ``_kafka``: the record as delivered (key, value, topic, partition, offset, timestamp).
``_source_file`` reads ``kafka://<topic>/<partition>/<offset>`` and ``_arrival_date`` is the
record's Kafka timestamp's date (UTC).

Exactly once: Spark's Kafka source records the offsets of each micro-batch in the query's
checkpoint before the batch runs; the batch's append carries the checkpoint's stream id and the
batch id as Delta's transaction id (``txnAppId``/``txnVersion``), so a batch replayed after a
crash between the append and the checkpoint's commit is skipped by Delta, not written twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.faults import crash_point
from lakehouse.io import delta, fs
from lakehouse.io.delta_log import Stamp
from lakehouse.io.raw import parse_json_lines
from lakehouse.runlog import TableRun
from lakehouse.streaming.produce import kafka_bootstrap
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

KAFKA_RECORD = "key string, value string, topic string, partition int, offset bigint, timestamp timestamp"
"""``_kafka``: the record as the topic delivered it."""


def kafka_reader(spark: SparkSession, bootstrap: str, topic: str, options: Mapping[str, str] | None = None) -> DataFrame:
    """A streaming read of ``topic`` from its earliest offsets (a new checkpoint starts there)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        # records gone from the topic before they were read (retention) stop the query, named
        .option("failOnDataLoss", "true")
    )
    return reader.options(**dict(options or {})).load()


def as_bronze(records: DataFrame, spec: TableSpec, run_id: str) -> DataFrame:
    """Kafka records (the source's columns) as rows of the bronze table ``spec``."""
    names = [c for c, _ in spec.columns]
    assert spec.source is not None
    limit = spec.source.max_record_bytes
    size = F.octet_length(F.col("value"))
    lines = records.select(
        # a value over the limit is not parsed: a corrupt record naming its size (kept whole in _kafka)
        F.when(size <= limit, F.col("value").cast("string")).alias("value"),
        F.when(
            size > limit,
            F.format_string(f"record of %d bytes, over the limit of {limit}: %s", size, F.substring(F.col("value").cast("string"), 1, 200)),
        ).alias("_oversize"),
        F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset").alias("_source_file"),
        F.struct(
            F.col("key").cast("string").alias("key"),
            F.col("value").cast("string").alias("value"),
            "topic",
            "partition",
            "offset",
            "timestamp",
        ).alias("_kafka"),
    )
    parsed = parse_json_lines(lines, spec.schema, names, blank="corrupt")
    return parsed.select(
        *names,
        "_rescued_data",
        F.coalesce("_oversize", "_corrupt_record").alias("_corrupt_record"),
        "_source_file",
        F.to_date(F.col("_kafka.timestamp")).alias("_arrival_date"),
        F.current_timestamp().alias("_ingested_at"),
        F.current_date().alias("_ingest_date"),
        F.lit(run_id).alias("_run_id"),
        "_kafka",
    )


def append_batch(spark: SparkSession, lake: Lake, spec: TableSpec, batch: DataFrame, batch_id: int, tr: TableRun, run_id: str) -> int:
    """Append one micro-batch to the bronze table, exactly once; the number of records."""
    path = lake.path(spec.name)
    batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = batch.count()
        if rows:
            app_id = f"lakehouse-bronze-{fs.stream_id(spark, lake.checkpoint('bronze', spec.name))}"
            delta.append(batch, path, stamp=Stamp(spec.name, run_id, app_id, batch_id), partition_by=spec.partition_by)
            crash_point("bronze.after_append", spec.name)
        tr.rows_read += rows
        tr.rows_written += rows
        tr.rows_inserted += rows
        return rows
    finally:
        batch.unpersist()


def bootstrap_of(lake: Lake, spec: TableSpec) -> str:
    """The bootstrap servers of the table's source (``endpoints.<source.endpoint>``)."""
    assert spec.source is not None
    return kafka_bootstrap(lake.env, spec.source.endpoint)
