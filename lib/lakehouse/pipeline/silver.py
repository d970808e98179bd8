"""Silver: read what bronze added since the last run, type and check it, upsert it, quarantine the rest.

The increment is a streaming read of the bronze Delta table with ``trigger(availableNow=True)``
and a checkpoint: each run sees exactly the bronze commits the previous runs did not. Every
micro-batch is handled by :func:`process_batch`:

1. the table's transform (named in its YAML) types and cleans the rows;
2. the table's expectations (also in its YAML) are applied in one pass: a broken ``fail`` rule
   stops the run here, before anything is written; rows breaking ``quarantine`` rules go to the
   table's quarantine table, with the original record and every rule broken;
3. valid rows are deduplicated per key (highest version, then record hash, wins) and MERGEd
   (``merge``) or chained as SCD2 versions (``scd2``) into the silver table.

Accounting per batch: ``read = inserted + quarantined + duplicate`` where ``duplicate`` is every
valid row that did not become a new row of silver (an exact re-send, or an older version of a key).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark import StorageLevel, inheritable_thread_target
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError, QualityError
from lakehouse.faults import crash_point
from lakehouse.io import delta, delta_log, fs
from lakehouse.io.delta_log import Stamp
from lakehouse.io.stream import caught_up, drain
from lakehouse.logs import Laps
from lakehouse.pipeline.parallel import build_all
from lakehouse.quality.constraints import ensure_constrained_table
from lakehouse.quality.context import checker, expectations_of
from lakehouse.quality.drift import evolved_columns
from lakehouse.quality.expectations import apply_expectations
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.quality.quarantine import QUARANTINE_SCHEMA, RECORD_METADATA, quarantine_rows
from lakehouse.runlog import RunLog, TableRun, log_batch
from lakehouse.tables import Lake
from lakehouse.transforms.dedup import latest_per_key, record_hash
from lakehouse.transforms.scd2 import scd2_chain

log = logging.getLogger(__name__)

SCD2_SYSTEM = ("valid_to", "is_current")


@dataclass(frozen=True)
class Feed:
    """Where a silver table's micro-batches come from: the bronze table they read, the stream's
    checkpoint (its id keys the batches' commits), and the job that runs it."""

    driver: str
    checkpoint: str
    job: str = "pipeline"

    @property
    def is_stream(self) -> bool:
        return self.job == "stream"


def batch_feed(lake: Lake, spec: TableSpec) -> Feed:
    """The pipeline's feed: the first upstream table, read incrementally by each run."""
    return Feed(spec.upstream[0], lake.checkpoint("silver", spec.name))


def stream_feed(lake: Lake, spec: TableSpec) -> Feed:
    """The stream job's feed: the stream table of ``streamed_from``, with a checkpoint of its own."""
    assert spec.streamed_from is not None
    return Feed(spec.streamed_from, lake.checkpoint("silver-stream", spec.name), "stream")


def with_input(batch: DataFrame) -> DataFrame:
    """Add the runner's ``__in``: the bronze record as delivered (its source fields, the corrupt
    and rescued data, the source file and arrival date), which the quarantine keeps."""
    raw_cols = [c for c in batch.columns if not c.startswith("_") or c in RECORD_METADATA]
    return batch.select("*", F.struct(*raw_cols).alias("__in"))


def call_transform(spec: TableSpec, batch: DataFrame, others: dict[str, DataFrame], context: dict[str, Any]) -> DataFrame:
    """Call the spec's transform with the increment, the other upstream tables and known settings."""
    fn = spec.transform_fn()
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    for name in list(params)[1:]:
        if name in others:
            kwargs[name] = others[name]
        elif name in context:
            kwargs[name] = context[name]
        elif params[name].default is inspect.Parameter.empty:
            raise PipelineError(f"{spec.name}: transform {spec.transform} wants {name!r}, which is neither an upstream table nor a setting")
    return fn(batch, **kwargs)


def ensure_silver(spark: SparkSession, lake: Lake, spec: TableSpec) -> None:
    ensure_constrained_table(spark, lake.path(spec.name), spec, lake.env.quality.expectations)
    delta.ensure_table(
        spark,
        lake.quarantine_path(spec.name),
        delta.schema_of(spark, QUARANTINE_SCHEMA),
        (),
        None,
        f"Records that could not be made valid for {spec.name}",
    )


def _merge(spark: SparkSession, lake: Lake, spec: TableSpec, valid: DataFrame, extra: Sequence[str] = ()) -> tuple[int, int]:
    path = lake.path(spec.name)
    schema = delta.schema_of(spark, spec.schema)
    for c in extra:  # columns the source gained (schema_drift: evolve), kept as text
        schema = schema.add(c, "string")
    # the highest version wins; a source without versions: the latest arrival folder's record
    latest = latest_per_key(valid, spec.keys, [spec.version_column or "__in._arrival_date", "_record_hash"])
    latest = delta.check_schema(latest, schema, spec.name)
    prune = None
    if spec.partition_by:
        prune = {c: [r[0] for r in latest.select(c).distinct().collect() if r[0] is not None] for c in spec.partition_by}
    m = delta.merge_latest(spark, path, latest, spec.keys, spec.version_column, "_record_hash", prune, evolve=bool(extra))
    return m.get("numTargetRowsInserted", 0), m.get("numTargetRowsUpdated", 0)


def _scd2(spark: SparkSession, lake: Lake, spec: TableSpec, valid: DataFrame) -> tuple[int, int]:
    path = lake.path(spec.name)
    schema = delta.schema_of(spark, spec.schema)
    version = spec.version_column or "valid_from"
    incoming_cols = [f.name for f in schema.fields if f.name not in SCD2_SYSTEM]
    incoming = latest_per_key(valid, [*spec.keys, version], ["_record_hash"]).select(*incoming_cols)
    stored = spark.read.format("delta").load(path)
    history = stored.join(incoming.select(*spec.keys).distinct(), list(spec.keys), "left_semi")
    tracked = [c for c in incoming_cols if c not in (*spec.keys, version) and not c.startswith("_")]
    chain = scd2_chain(history.select(*incoming_cols, *SCD2_SYSTEM), incoming, spec.keys, tracked, version)
    chain = chain.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        changed = chain.select(*[f.name for f in schema.fields], "__is_new")
        cond = F.lit(True)
        for k in (*spec.keys, version):
            cond = cond & (F.col(f"t.{k}") == F.col(f"s.{k}"))
        merge = (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(changed.alias("s"), cond)
            .whenMatchedUpdate(
                condition=~F.col("t.valid_to").eqNullSafe(F.col("s.valid_to")) | (F.col("t.is_current") != F.col("s.is_current")),
                set={"valid_to": "s.valid_to", "is_current": "s.is_current"},
            )
            .whenNotMatchedInsert(values={f.name: F.col(f"s.{f.name}") for f in schema.fields})
        )
        # a conflict here is the maintenance job's OPTIMIZE (same rows, other files): the chain holds
        delta.retry_on_conflict(merge.execute, f"{spec.name}: MERGE")
    finally:
        chain.unpersist()
    m = delta.last_metrics(spark, path)
    return m.get("numTargetRowsInserted", 0), m.get("numTargetRowsUpdated", 0)


def upsert(spark: SparkSession, lake: Lake, spec: TableSpec, valid: DataFrame, extra: Sequence[str] = ()) -> tuple[int, int]:
    """Write valid rows the table's way (``merge`` or ``scd2``); ``(inserted, updated)`` rows.
    ``extra``: columns evolved into the source (merge tables take them as new text columns)."""
    if spec.mode == "scd2":
        return _scd2(spark, lake, spec, valid)
    return _merge(spark, lake, spec, valid, extra)


def upsert_once(
    spark: SparkSession, lake: Lake, spec: TableSpec, valid: DataFrame, stamp: Stamp, extra: Sequence[str] = ()
) -> tuple[int, int, bool]:
    """:func:`upsert` in a commit carrying ``stamp``, unless the table has absorbed it already.

    That is how a step retried after a crash stays exactly-once: if an interrupted attempt's
    upsert landed (the table holds the stamp's transaction id, however many commits came after
    it), it is not repeated and its counts are read from its commit. Returns
    ``(inserted, updated, already_done)``.
    """
    done = delta_log.absorbed(spark, lake.path(spec.name), stamp)
    if done is not None:
        return done.metrics.get("numTargetRowsInserted", 0), done.metrics.get("numTargetRowsUpdated", 0), True
    with delta.stamped(spark, stamp):
        inserted, updated = upsert(spark, lake, spec, valid, extra)
    return inserted, updated, False


def evolved_of(lake: Lake, spec: TableSpec, batch: DataFrame, driver: str | None = None) -> list[str]:
    """Source columns added by schema evolution that this table carries (merge tables only)."""
    bronze = lake.spec(driver or spec.upstream[0])
    if spec.mode != "merge" or bronze.source is None or bronze.source.schema_drift != "evolve":
        return []
    return evolved_columns(batch.columns, bronze)


def completed(spec: TableSpec, typed: DataFrame) -> DataFrame:
    """The transform's result with what the runner supplies when the transform leaves it out:
    ``_record_hash`` (of the declared columns, metadata aside) and the lineage columns (from the
    bronze record, ``__in``).

    Raises:
        PipelineError: the result lost ``__in`` (the record as delivered, which quarantine keeps).
    """
    if "__in" not in typed.columns:
        raise PipelineError(
            f"{spec.name}: transform {spec.transform} returned no __in column (the bronze record as delivered, "
            "which quarantine keeps): pass the input's columns whose names start with __ through"
        )
    add = {}
    if "_record_hash" not in typed.columns:
        add["_record_hash"] = record_hash([c for c in spec.column_names if not c.startswith("_") and c in typed.columns])
    for c in ("_source_file", "_ingested_at"):
        if c not in typed.columns and c in spec.column_names:
            add[c] = F.col(f"__in.{c}")
    return typed.withColumns(add) if add else typed


def transform_batch(
    spark: SparkSession,
    lake: Lake,
    spec: TableSpec,
    batch: DataFrame,
    run_id: str,
    driver: str | None = None,
    read: Callable[[str], DataFrame] | None = None,
) -> tuple[DataFrame, list[str]]:
    """The table's transform over bronze rows (with ``__in``) and the other upstream tables
    (``read(name)``, default a plain read; a stream passes :class:`lakehouse.io.cached.CachedTables`);
    also returns the source columns added by schema evolution that the result carries as text."""
    for u in spec.upstream[1:]:
        if not delta.is_delta(spark, lake.path(u)):
            raise PipelineError(
                f"{spec.name}: upstream {u} has no Delta table at {lake.path(u)} (build it first: --tables {u},{spec.name})"
            )
    read = read or (lambda u: spark.read.format("delta").load(lake.path(u)))
    others = {lake.spec(u).short_name: read(u) for u in spec.upstream[1:]}
    context = {"reporting_currency": lake.env.reporting_currency, "run_id": run_id}
    typed = completed(spec, call_transform(spec, with_input(batch), others, context))
    extra = evolved_of(lake, spec, batch, driver)
    if extra:
        log.info("%s: carrying evolved source column(s) %s", spec.name, ", ".join(extra))
        typed = typed.select("*", *[F.col(f"__in.`{c}`").alias(c) for c in extra])
    return typed, extra


def write_quarantine(
    spark: SparkSession, qpath: str, rejected: DataFrame, count: int, table: str, stamp: Stamp, key: str, redo: bool = False
) -> None:
    """Put one micro-batch's ``count`` rejected rows into the quarantine table, exactly once.

    A first attempt appends them with the batch's stamp (nothing rejected: no commit). A retry
    whose earlier attempt's append landed (``redo``: the table holds the stamp's transaction id)
    replaces that attempt's rows by its own, on the batch key, so no record stays in quarantine
    from an attempt whose verdict was superseded (a transform or rule fixed between attempts: its
    MERGE failed, the quarantine append beside it had landed). The replace carries the stamp's
    metadata but not its transaction id, which Delta would skip as already written; so it is
    made before the batch's MERGE sets its own transaction id on the session.
    """
    rows = quarantine_rows(rejected, table, stamp.run_id, key)
    if redo:
        delta.replace_where_equals(rows, qpath, "batch_key", key, stamp=Stamp(stamp.step, stamp.run_id))
    elif count:
        delta.append(rows, qpath, stamp=stamp)


def process_batch(
    spark: SparkSession,
    lake: Lake,
    spec: TableSpec,
    batch: DataFrame,
    batch_id: int,
    run_id: str,
    tr: TableRun,
    metrics: QualityMetrics,
    feed: Feed | None = None,
    read: Callable[[str], DataFrame] | None = None,
) -> None:
    """Type, check, quarantine and upsert one micro-batch of bronze rows (see module doc).
    ``feed``: where the batch comes from (default: the pipeline's, :func:`batch_feed`);
    ``read``: how other tables are read (the transform's upstream, the rules' lookups)."""
    feed = feed or batch_feed(lake, spec)
    laps = Laps()
    typed, extra = transform_batch(spark, lake, spec, batch, run_id, feed.driver, read)
    rules = expectations_of(lake, spec)
    if feed.is_stream:  # a micro-batch's size is the trigger's: no run-to-run volume comparison
        rules = tuple(e for e in rules if e.check != "row_count")
    try:
        checked = apply_expectations(typed, rules, checker(spark, lake, spec, metrics, read))
    except QualityError as exc:
        tr.add_quality(exc.results)
        raise
    tr.add_quality(checked.results)
    laps.lap("check")
    try:
        read, quarantined = checked.rows, checked.quarantined
        if read == 0:
            return
        valid, rejected = checked.valid(), checked.rejected()
        # The quarantine rows and the MERGE go to two tables, each exactly once per batch (both
        # commits carry the batch's transaction id: a retry finds what an interrupted attempt
        # committed), so they are written side by side; then the batch's accounting row; the
        # batch is done (and the stream moves on) only when all three have landed.
        stream = fs.stream_id(spark, feed.checkpoint)
        key = f"{stream[:13]}-{batch_id}"
        valid_n = read - quarantined
        inserted = updated = 0
        stamp = Stamp(spec.name, run_id, f"lakehouse-silver-{stream}", batch_id)
        qpath, qstamp = (
            lake.quarantine_path(spec.name),
            Stamp(f"quarantine.{spec.short_name}", run_id, f"lakehouse-quarantine-{stream}", batch_id),
        )
        redo = delta_log.absorbed(spark, qpath, qstamp) is not None
        if redo:  # an interrupted attempt's rejects are there: replaced first, alone (see write_quarantine)
            log.info("%s: batch %d's quarantine rows were written by an interrupted run; replaced by this attempt's", spec.name, batch_id)
            write_quarantine(spark, qpath, rejected, quarantined, spec.name, qstamp, key, redo=True)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quarantine") as beside:
            q = None
            if not redo:
                q = beside.submit(
                    inheritable_thread_target(spark)(write_quarantine), spark, qpath, rejected, quarantined, spec.name, qstamp, key
                )
            if valid_n:
                inserted, updated, done = upsert_once(spark, lake, spec, valid, stamp, extra)
                if done:
                    log.info("%s: batch %d was merged by an interrupted run; counted from its commit", spec.name, batch_id)
            if q is not None:
                q.result()
        if valid_n:
            crash_point("silver.after_merge", spec.name)
        log_batch(spark, lake, stamp, feed.job, spec.name, key, read, inserted, updated, quarantined)
        laps.lap("merge and quarantine")
    finally:
        checked.unpersist()
    tr.rows_read += read
    tr.rows_warned += checked.warned
    tr.rows_quarantined += quarantined
    tr.rows_inserted += inserted
    tr.rows_updated += updated
    tr.rows_duplicate += valid_n - inserted
    tr.rows_written += inserted + updated + quarantined
    log.info(
        "%s: batch %d: read %d, inserted %d, updated %d, quarantined %d, duplicates %d (%s)",
        spec.name,
        batch_id,
        read,
        inserted,
        updated,
        quarantined,
        valid_n - inserted,
        laps,
    )


def build_table(spark: SparkSession, lake: Lake, spec: TableSpec, runlog: RunLog) -> TableRun:
    """Process everything bronze added since the last run, for one silver table."""
    with runlog.track(spec.name) as tr:
        laps = Laps()
        ensure_silver(spark, lake, spec)
        laps.lap("tables and constraints ready")
        log.info("%s: %s", spec.name, laps)
        feed = batch_feed(lake, spec)
        driver = feed.driver
        if not delta.is_delta(spark, lake.path(driver)):
            raise PipelineError(f"{spec.name}: upstream {driver} has no Delta table at {lake.path(driver)} (run bronze first)")
        tr.inputs = {u: delta.version(spark, lake.path(u)) for u in spec.upstream}
        if caught_up(spark, feed.checkpoint, lake.path(driver)):
            log.info("%s: no %s commit since the last run: nothing to do", spec.name, driver)
            tr.output_version = delta.version(spark, lake.path(spec.name))
            return tr
        metrics = QualityMetrics(spark, lake)
        drain(
            spark.readStream.format("delta").load(lake.path(driver)),
            f"silver_{spec.short_name}",
            feed.checkpoint,
            lambda df, batch_id: process_batch(spark, lake, spec, df, batch_id, runlog.run_id, tr, metrics, feed),
        )
        tr.output_version = delta.version(spark, lake.path(spec.name))
    return tr


def run(spark: SparkSession, lake: Lake, runlog: RunLog, tables: list[str] | None = None) -> dict[str, TableRun]:
    """Build every silver table (or the named ones), each after the silver tables it reads."""
    specs = lake.select("silver", tables)
    return build_all(spark, specs, lambda session, spec: build_table(session, lake, spec, runlog), lake.env.pipeline.parallel_tables)
