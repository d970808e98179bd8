"""Bronze: ingest each raw file exactly once into an append-only Delta table.

Spark's file-source bookkeeping does the "exactly once": a streaming read of the landing folders
with ``trigger(availableNow=True)`` and a checkpoint per table processes every file not seen by an
earlier run, then stops. The Delta sink commits each micro-batch atomically and idempotently.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.io import delta
from lakehouse.io.raw import arrival_date_of, check_landing_folder, raw_stream
from lakehouse.runlog import RunLog
from lakehouse.tables import Lake

log = logging.getLogger(__name__)


def with_ingest_metadata(df: DataFrame, run_id: str) -> DataFrame:
    """Add ``_arrival_date`` (from the landing folder), ``_ingested_at``, ``_ingest_date``, ``_run_id``."""
    return df.select(
        "*",
        arrival_date_of(F.col("_source_file")).alias("_arrival_date"),
        F.current_timestamp().alias("_ingested_at"),
        F.current_date().alias("_ingest_date"),
        F.lit(run_id).alias("_run_id"),
    )


def ingest_table(spark: SparkSession, lake: Lake, spec: TableSpec, runlog: RunLog) -> int:
    """Ingest the new raw files of one bronze table; return the number of records added."""
    path = lake.path(spec.name)
    with runlog.track(spec.name) as tr:
        raw = lake.raw_path(spec.name)
        check_landing_folder(spark, raw, spec.name)
        before = delta.version(spark, path)
        stream = raw_stream(spark, spec, raw).transform(with_ingest_metadata, runlog.run_id)
        query = (
            stream.writeStream.format("delta")
            .queryName(f"bronze_{spec.short_name}")
            .outputMode("append")
            .partitionBy("_ingest_date")
            .option("checkpointLocation", lake.checkpoint("bronze", spec.name))
            .trigger(availableNow=True)
            .start(path)
        )
        query.awaitTermination()
        rows = sum(int(p.get("numInputRows", 0)) for p in query.recentProgress)
        tr.rows_read = tr.rows_written = tr.rows_inserted = rows
        tr.inputs = {f"raw:{spec.source.path if spec.source else ''}": None}
        tr.output_version = delta.version(spark, path)
        if tr.output_version == before:
            log.info("%s: no new raw files", spec.name)
        else:
            log.info("%s: %d new records (version %s)", spec.name, rows, tr.output_version)
    return rows


def run(spark: SparkSession, lake: Lake, runlog: RunLog, tables: list[str] | None = None) -> dict[str, int]:
    """Ingest every bronze table (or the named ones), in order."""
    return {spec.name: ingest_table(spark, lake, spec, runlog) for spec in lake.select("bronze", tables)}
