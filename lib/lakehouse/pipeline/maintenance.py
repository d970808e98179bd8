"""The maintenance job: compact small files, cluster them, remove unreferenced files, refresh stats.

Per table (every declared bronze, silver and gold table, its quarantine table, and the ops
tables), in this order:

1. ``OPTIMIZE`` - bin-packs the small files of each partition into large ones, with
   ``ZORDER BY`` the table's ``zorder_by`` columns where declared (files then hold narrow ranges
   of those columns, so a filter on them skips most files).
2. ``VACUUM`` with the table's ``retention_hours`` (else the environment's
   ``maintenance.retention_hours``, 7 days by default): deletes files the table stopped
   referencing longer ago than that.
3. Statistics: files without the per-file row count / min / max / null counts data skipping
   reads (written with statistics collection off, or by another engine) get them computed.

Safe beside the pipeline: OPTIMIZE commits only rewritten files (``dataChange = false``), so a
reader never sees a row twice or miss one; when a pipeline write and OPTIMIZE touch the same files,
Delta lets one commit and the other fails with a concurrent-modification error - OPTIMIZE is then
retried on the new version (and the pipeline's writes retry on their side, see
:func:`lakehouse.io.delta.retry_on_conflict`). VACUUM only deletes files no version within the
retention references, so a running query reading a recent version keeps its files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.cli import context, parser
from lakehouse.errors import PipelineError
from lakehouse.io import delta, delta_log, fs
from lakehouse.session import get_spark
from lakehouse.tables import OPS_TABLES, Lake

log = logging.getLogger(__name__)


@dataclass
class Maintained:
    """What maintenance did to one table."""

    table: str
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    compacted_files: int = 0  # files OPTIMIZE removed (rewritten into fewer)
    vacuumed_files: int = 0  # files VACUUM deleted
    stats_recomputed: int = 0  # files whose missing statistics were computed
    seconds: float = 0.0
    zorder_by: tuple[str, ...] = ()
    retries: int = 0


def targets(lake: Lake, tables: Sequence[str] | None = None) -> list[tuple[str, str, tuple[str, ...], int]]:
    """(name, path, zorder columns, retention hours) of every table to maintain, or of ``tables``
    (declared names, ``quarantine.<layer>.<name>`` or ``ops.<name>``)."""
    default = lake.env.maintenance.retention_hours
    out = []
    for spec in lake.specs.values():
        hours = spec.retention_hours if spec.retention_hours is not None else default
        out.append((spec.name, lake.path(spec.name), spec.zorder_by, hours))
        if spec.layer == "silver":
            out.append((f"quarantine.{spec.name}", lake.quarantine_path(spec.name), (), hours))
    out += [(f"ops.{name}", lake.ops_path(name), (), default) for name in OPS_TABLES]
    if tables:
        known = {t[0] for t in out}
        unknown = [t for t in tables if t not in known]
        if unknown:
            raise PipelineError(f"maintenance: unknown table(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        out = [t for t in out if t[0] in tables]
    return out


def file_stats(spark: SparkSession, path: str) -> tuple[int, int]:
    """(number of files, bytes) of the table's current version."""
    row = DeltaTable.forPath(spark, path).detail().select("numFiles", "sizeInBytes").first()
    return int(row["numFiles"] or 0), int(row["sizeInBytes"] or 0)


def _files(spark: SparkSession, path: str) -> DataFrame:
    """The current version's files (path, partitionValues, size, stats, ...) from the Delta log."""
    return delta_log.files(spark, path)


def _literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unsorted_partitions(spark: SparkSession, path: str) -> str | None:
    """A predicate selecting the partitions with more than one file (what arrived since the
    last Z-order: a Z-ordered small partition is one file); '' for an unpartitioned table that
    needs it, None when nothing does. Z-ordering rewrites every file it is given, so giving it
    only these keeps a maintenance run's cost to the new data, not the table."""
    counts = _files(spark, path).groupBy("partitionValues").count().where(F.col("count") > 1).collect()
    if not counts:
        return None
    clauses = []
    for row in counts:
        values = row["partitionValues"] or {}
        if not values:
            return ""
        parts = [f"`{k}` <=> {_literal(v)}" if v is None else f"`{k}` = {_literal(v)}" for k, v in sorted(values.items())]
        clauses.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(clauses)


def optimize(spark: SparkSession, path: str, zorder_by: Sequence[str] = ()) -> int:
    """OPTIMIZE the table: bin-packing, or ZORDER BY ``zorder_by`` on the partitions that got new
    files since the last run; returns the files it removed."""
    builder = DeltaTable.forPath(spark, path).optimize()
    if zorder_by:
        where = unsorted_partitions(spark, path)
        if where is None:
            return 0
        result = (builder.where(where) if where else builder).executeZOrderBy(*zorder_by)
    else:
        result = builder.executeCompaction()
    row = result.select("metrics.numFilesRemoved").first()
    return int(row[0] or 0) if row else 0


def vacuum(spark: SparkSession, path: str, hours: int) -> int:
    """VACUUM with ``hours`` of retention; returns the files deleted."""
    before = _data_files(spark, path)
    DeltaTable.forPath(spark, path).vacuum(float(hours))
    return max(0, before - _data_files(spark, path))


def _data_files(spark: SparkSession, path: str) -> int:
    """Data files under the table's folder (referenced or not; the log excluded)."""
    return fs.count_files(spark, path, ".parquet", exclude=("/_delta_log/", "/_change_data/"))


def refresh_stats(spark: SparkSession, path: str) -> int:
    """Recompute the data-skipping statistics (per-file row count, min, max, null count) when
    some file of the table's current version has none; returns how many files lacked them.

    Writes collect them, but a file written with statistics collection off, or by an engine that
    skips them, is read by every query whatever its filter. Open-source Delta has no
    ``ANALYZE TABLE ... COMPUTE DELTA STATISTICS`` (Databricks only: a ParseException here) and
    no ANALYZE for its v2 tables; this calls the same recomputation Delta's own tests use
    (``StatisticsCollection.recompute``), which commits a ``COMPUTE STATS`` version.
    """
    files = _files(spark, path)
    missing = files.where(F.col("stats").isNull() | ~F.col("stats").contains('"numRecords"')).count()
    if missing:
        delta_log.recompute_stats(spark, path)
    return int(missing)


def maintain(
    spark: SparkSession, name: str, path: str, zorder_by: Sequence[str] = (), retention_hours: int = 168, attempts: int = 5
) -> Maintained | None:
    """Run the three steps on one table; None if there is no table at ``path`` yet."""
    if not delta.is_delta(spark, path):
        log.info("%s: no table yet, nothing to maintain", name)
        return None
    started = time.monotonic()
    m = Maintained(name, zorder_by=tuple(zorder_by))
    m.files_before, m.bytes_before = file_stats(spark, path)
    m.compacted_files, m.retries = delta.retry_on_conflict(lambda: optimize(spark, path, zorder_by), f"{name}: OPTIMIZE", attempts)
    try:
        m.vacuumed_files = vacuum(spark, path, retention_hours)
    except PySparkException as exc:
        if (exc.getCondition() or "").startswith("DELTA_VACUUM_RETENTION"):
            raise PipelineError(
                f"{name}: VACUUM with {retention_hours} hours of retention refused: it is shorter than the table's "
                "delta.deletedFileRetentionDuration (readers of older versions would lose files); raise retention_hours "
                "or lower that table property"
            ) from None
        raise
    m.stats_recomputed = refresh_stats(spark, path)
    m.files_after, m.bytes_after = file_stats(spark, path)
    m.seconds = time.monotonic() - started
    log.info(
        "%s: %d -> %d files (%.1f -> %.1f MB), OPTIMIZE%s rewrote %d, VACUUM deleted %d, statistics computed for %d (%.1fs%s)",
        name,
        m.files_before,
        m.files_after,
        m.bytes_before / 1e6,
        m.bytes_after / 1e6,
        f" ZORDER BY {', '.join(zorder_by)}" if zorder_by else "",
        m.compacted_files,
        m.vacuumed_files,
        m.stats_recomputed,
        m.seconds,
        f", {m.retries} retried on a concurrent commit" if m.retries else "",
    )
    return m


def run(spark: SparkSession, lake: Lake, tables: Sequence[str] | None = None) -> list[Maintained]:
    done = []
    for name, path, zorder_by, hours in targets(lake, tables):
        m = maintain(spark, name, path, zorder_by, hours)
        if m is not None:
            done.append(m)
    return done


def summary(done: Sequence[Maintained]) -> str:
    lines = [f"{'table':38s} {'files':>13s} {'MB':>15s} {'vacuumed':>9s} {'s':>6s}"]
    for m in done:
        files = f"{m.files_before} -> {m.files_after}"
        mb = f"{m.bytes_before / 1e6:.1f} -> {m.bytes_after / 1e6:.1f}"
        lines.append(f"{m.table:38s} {files:>13s} {mb:>15s} {m.vacuumed_files:>9d} {m.seconds:>6.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None) -> int:
    p = parser("Compact (OPTIMIZE, Z-order), VACUUM and refresh the statistics of the lake's tables.")
    p.add_argument("--tables", default="", help="comma-separated names (default: every table, quarantine and ops table)")
    args = p.parse_args(argv)
    ctx = context("maintenance", args)
    tables = [t for t in args.tables.split(",") if t]
    targets(ctx.lake, tables)  # unknown names fail before Spark starts
    spark = get_spark(ctx.env, "lakehouse-maintenance", args.master)
    done = run(spark, ctx.lake, tables)
    print(summary(done), flush=True)
    return 0
