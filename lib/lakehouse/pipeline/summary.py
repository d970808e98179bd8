"""The end-of-run summary: rows per layer, quarantine and duplicates, and the reconciliation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.io import delta, delta_log
from lakehouse.runlog import TableRun
from lakehouse.streaming.silver import absorbed_rows
from lakehouse.tables import Lake


@dataclass(frozen=True)
class Reconciliation:
    """For one silver table: every bronze record is in silver, in quarantine, or a duplicate."""

    table: str
    bronze: int
    silver: int
    quarantined: int
    duplicates: int
    streamed: int = 0
    """Of ``bronze``: the rows of the stream table (``streamed_from``) its stream has absorbed."""

    @property
    def ok(self) -> bool:
        return self.bronze == self.silver + self.quarantined + self.duplicates


def count(spark: SparkSession, path: str) -> int | None:
    return spark.read.format("delta").load(path).count() if delta.is_delta(spark, path) else None


def reconcile(
    spark: SparkSession, lake: Lake, tables: Sequence[str] | None = None, rows: Mapping[str, int | None] | None = None
) -> list[Reconciliation]:
    """Compare bronze rows with silver rows + quarantined rows + duplicates, for every silver
    table (or the named ones). Duplicates are summed from ``ops.batch_log``, which every
    micro-batch and replay writes exactly once, inside the batch (and, for a lake older than it,
    from the run-log rows of the runs before its first row). ``rows``: tables' row counts
    already taken (by :func:`table_stats`, names as it gives them), not counted again."""
    known = rows or {}

    def rows_of(name: str, path: str) -> int:
        n = known[name] if known.get(name) is not None else count(spark, path)
        return n or 0

    batches, runlog = lake.ops_path("batch_log"), lake.ops_path("run_log")
    dups: dict[str, int] = {}
    first = None
    logged = spark.read.format("delta").load(batches) if delta.is_delta(spark, batches) else None
    if logged is not None:
        rows = logged.groupBy("table").agg(F.sum("rows_duplicate").alias("d"), F.min("logged_at").alias("t"))
        for r in rows.collect():
            dups[r["table"]] = int(r["d"] or 0)
            first = r["t"] if first is None or r["t"] < first else first
    if delta.is_delta(spark, runlog):
        # a lake older than ops.batch_log: its runs' duplicates are in the run log only (a run of
        # this version writes its batches' rows before its run-log row, so only older ones count)
        legacy = spark.read.format("delta").load(runlog).where(F.col("table").startswith("silver."))
        if first is not None:
            legacy = legacy.where(F.col("ended_at") < F.lit(first))
        for r in legacy.groupBy("table").agg(F.sum("rows_duplicate").alias("d")).collect():
            dups[r["table"]] = dups.get(r["table"], 0) + int(r["d"] or 0)
    out = []
    for spec in lake.layer("silver"):
        if tables is not None and spec.name not in tables:
            continue
        bronze = rows_of(spec.upstream[0], lake.path(spec.upstream[0]))
        streamed = absorbed_rows(spark, lake, spec, logged) if spec.streamed_from else 0
        silver = rows_of(spec.name, lake.path(spec.name))
        quarantined = rows_of(f"quarantine.{spec.short_name}", lake.quarantine_path(spec.name))
        out.append(Reconciliation(spec.name, bronze + streamed, silver, quarantined, dups.get(spec.name, 0), streamed))
    return out


def mismatches(recon: Sequence[Reconciliation]) -> str | None:
    """One line naming every table that does not reconcile and by how many rows; None if all do."""
    bad = [
        f"{r.table}: bronze {r.bronze} != silver {r.silver} + quarantined {r.quarantined} + duplicates {r.duplicates} "
        f"({r.bronze - r.silver - r.quarantined - r.duplicates:+d} rows)"
        for r in recon
        if not r.ok
    ]
    return "; ".join(bad) if bad else None


def table_stats(spark: SparkSession, lake: Lake, tables: Sequence[str] | None = None) -> list[tuple[str, int | None, int, int, int | None]]:
    """``(table, rows, data files, data bytes, version)`` of every table, or of the named ones
    and their quarantine tables (Delta's own detail), and of the run log."""
    rows = []
    names = [s.name for layer in ("bronze", "silver", "gold") for s in lake.layer(layer) if tables is None or s.name in tables]
    paths = [(n, lake.path(n)) for n in names]
    paths += [(f"quarantine.{lake.spec(n).short_name}", lake.quarantine_path(n)) for n in names if n.startswith("silver.")]
    paths.append(("ops.run_log", lake.ops_path("run_log")))
    for name, path in paths:
        if not delta.is_delta(spark, path):
            rows.append((name, None, 0, 0, None))
            continue
        snap = delta_log.snapshot(spark, path)  # files and bytes from the log: no Spark job
        rows.append((name, count(spark, path), int(snap.numOfFiles()), int(snap.sizeInBytes()), int(snap.version())))
    return rows


def quality_lines(entries: list[TableRun]) -> list[str]:
    """Per table of this run: rows quarantined and warned by rule, table-level checks that failed."""
    lines = []
    for e in entries:
        parts = []
        for r in e.quality.values():
            if r.failed and r.level == "row":
                parts.append(f"{r.rule} {r.failed}" + (" (warn)" if r.severity == "warn" else ""))
            elif not r.ok:
                parts.append(f"{r.rule}: {r.observed} vs {r.threshold} ({r.severity})")
        if parts:
            lines.append(f"  {e.table:<24} " + ", ".join(parts))
    return lines


def render(
    stages: list[tuple[str, float, str]],
    stats: list[tuple[str, int | None, int, int, int | None]],
    recon: list[Reconciliation],
    entries: list[TableRun] | None = None,
) -> str:
    """A plain-text summary a person reads at a glance."""
    lines = ["", "=" * 78, "LAKEHOUSE RUN SUMMARY", "=" * 78, "Stages:"]
    for name, secs, detail in stages:
        lines.append(f"  {name:<28}{secs:>8.1f}s  {detail}")
    lines += ["", f"  {'table':<30}{'rows':>12}{'files':>8}{'MiB':>9}{'version':>9}   (data files of the current version)"]
    for name, n, files, size, ver in stats:
        lines.append(f"  {name:<30}{'-' if n is None else n:>12}{files:>8}{size / 2**20:>9.2f}{'-' if ver is None else ver:>9}")
    quality = quality_lines(entries or [])
    if quality:
        lines += ["", "Quality, this run (rows breaking each rule; quarantined unless marked warn):", *quality]
    lines += ["", "Reconciliation (bronze = silver + quarantined + duplicates):"]
    for r in recon:
        mark = "OK" if r.ok else "MISMATCH"
        streamed = f"   (bronze: {r.bronze - r.streamed} from files, {r.streamed} from the stream)" if r.streamed else ""
        lines.append(f"  {r.table:<24} {r.bronze:>9} = {r.silver:>9} + {r.quarantined:>6} + {r.duplicates:>6}   {mark}{streamed}")
    lines.append("=" * 78)
    return "\n".join(lines)
