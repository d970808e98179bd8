"""Bronze: ingest each raw file exactly once into an append-only Delta table.

Spark's file-source bookkeeping does the "exactly once": a streaming read of the landing folders
with ``trigger(availableNow=True)`` and a checkpoint per table processes every file not seen by an
earlier run, then stops. Each micro-batch is checked for schema drift (the source's policy:
rescue, evolve or fail; see :mod:`lakehouse.quality.drift`) and appended in one Delta commit
carrying the batch's id (``txnAppId``/``txnVersion``), so a batch retried after a crash is not
appended twice.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.errors import SchemaDriftError, SourceError
from lakehouse.faults import crash_point
from lakehouse.io import delta, fs
from lakehouse.io.delta_log import Stamp
from lakehouse.io.raw import arrival_date_of, check_landing_folder, delivered, raw_stream
from lakehouse.io.stream import drain
from lakehouse.pipeline.parallel import build_all
from lakehouse.quality import drift
from lakehouse.quality.drift import evolved_columns
from lakehouse.quality.expectations import RuleResult
from lakehouse.runlog import RunLog, TableRun
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


def ingest_batch(spark: SparkSession, lake: Lake, spec: TableSpec, batch: DataFrame, batch_id: int, tr: TableRun, run_id: str) -> None:
    """Check one micro-batch for schema drift (per the source's policy) and append it."""
    source = spec.source
    assert source is not None
    path = lake.path(spec.name)
    batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        evolved = evolved_columns(spark.read.format("delta").load(path).columns, spec) if delta.is_delta(spark, path) else []
        if source.format == "json":
            found = drift.detect_json(batch, set(evolved) if source.schema_drift == "evolve" else set())
        else:
            files = {r[0]: int(r[1]) for r in batch.groupBy("_source_file").count().collect()}
            found = drift.detect_csv(spark, spec, files)
        rows = batch.count()
        result = RuleResult("schema_drift", "fail" if source.schema_drift == "fail" else "warn", f"drift:{source.schema_drift}", "table")
        result.evaluated, result.failed, result.ok = 1, int(bool(found)), not found
        result.observed, result.threshold = float(len(found.fields) + len(found.missing)), "no unexpected or missing fields"
        tr.add_quality([result])
        if found and source.schema_drift == "fail":
            raise SchemaDriftError(
                f"{spec.name}: schema drift in {lake.raw_path(spec.name)}: {found.describe()}; source policy is fail, nothing was written"
            )
        if found and source.schema_drift == "evolve":
            log.warning(
                "%s: schema evolves: adding column(s) %s to bronze (%s)", spec.name, ", ".join(sorted(found.fields)), found.describe()
            )
        elif found:
            log.warning("%s: schema drift, kept in %s (policy rescue): %s", spec.name, drift.RESCUED, found.describe())
        out = batch
        if source.schema_drift == "evolve":
            out = drift.evolve(batch, sorted({*evolved, *found.fields}))
        app_id = f"lakehouse-bronze-{fs.stream_id(spark, lake.checkpoint('bronze', spec.name))}"
        stamp = Stamp(spec.name, run_id, app_id, batch_id)
        delta.append(out, path, stamp=stamp, partition_by=spec.partition_by, merge_schema=source.schema_drift == "evolve")
        crash_point("bronze.after_append", spec.name)
        tr.rows_read += rows
    finally:
        batch.unpersist()


def ingest_table(spark: SparkSession, lake: Lake, spec: TableSpec, runlog: RunLog) -> int:
    """Ingest the new raw files of one bronze table; return the number of records added."""
    path = lake.path(spec.name)
    with runlog.track(spec.name) as tr:
        raw = lake.raw_path(spec.name)
        check_landing_folder(spark, raw, spec.name)
        before = delta.version(spark, path)
        stream = raw_stream(spark, spec, raw).transform(with_ingest_metadata, runlog.run_id)
        drain(
            stream,
            f"bronze_{spec.short_name}",
            lake.checkpoint("bronze", spec.name),
            lambda df, batch_id: ingest_batch(spark, lake, spec, df, batch_id, tr, runlog.run_id),
        )
        rows = tr.rows_read
        tr.rows_written = tr.rows_inserted = rows
        tr.inputs = {f"raw:{spec.source.path if spec.source else ''}": None}
        tr.output_version = delta.version(spark, path)
        if tr.output_version == before:
            log.info("%s: no new raw files", spec.name)
        else:
            log.info("%s: %d new records (version %s)", spec.name, rows, tr.output_version)
    return rows


def undelivered(spark: SparkSession, lake: Lake, tables: list[str] | None = None) -> list[str]:
    """The bronze tables (of ``tables``) whose source has delivered nothing yet and that have no
    Delta table: a run reports and skips them (and what reads them). Checked before anything is
    written, so a bad delivery stops the run before any table changes.

    Raises:
        SourceError: a source marked ``required`` has delivered nothing, or an arrival folder
            holds no data file; names the table and folder.
    """
    out = []
    for spec in lake.select("bronze", tables):
        raw = lake.raw_path(spec.name)
        if delivered(spark, raw, spec.name) or delta.is_delta(spark, lake.path(spec.name)):
            continue
        if spec.source is not None and spec.source.required:
            raise SourceError(f"{spec.name}: nothing delivered to {raw} yet and the source is required; no table was written")
        log.warning("%s: nothing delivered to %s yet: skipped, with the tables that read it", spec.name, raw)
        out.append(spec.name)
    return out


def run(spark: SparkSession, lake: Lake, runlog: RunLog, tables: list[str] | None = None) -> dict[str, int]:
    """Ingest every bronze table (or the named ones), in order."""
    specs = lake.select("bronze", tables)
    return build_all(spark, specs, lambda session, spec: ingest_table(session, lake, spec, runlog), lake.env.pipeline.parallel_tables)
