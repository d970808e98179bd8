"""Gold: recompute only what changed in silver since the last gold run.

Each gold table's commits carry the versions of the silver tables they were computed from (a
:class:`~lakehouse.io.delta_log.Stamp`, in the same atomic commit as the data), so the table
itself says what it has absorbed: a run killed after its commit and before the run log leaves
nothing to count twice. This run reads the change data feed of each silver table from that
version + 1 to the current one, hands it to the table's transform (which works out the affected dates or keys), and
writes the result with replaceWhere on the affected values of ``replace_by`` (``replace_where``:
one commit swaps those rows, rewriting only the files that hold them) or a MERGE on the keys
(``merge``). No change upstream: nothing is written. No earlier run: a full build.

A full build overwrites the table in one stamped commit. It is also what a changed upstream gets
when the upstream tables are small (under ``pipeline.gold_rebuild_below_mib`` together: there the
incremental path's many small queries cost more than recomputing) or when the table is declared
by ``sql`` (a query has no incremental form).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError, QualityError, ReconciliationError
from lakehouse.faults import crash_point
from lakehouse.io import delta, delta_log, fs
from lakehouse.pipeline.parallel import build_all
from lakehouse.quality.constraints import ensure_constrained_table
from lakehouse.quality.context import checker, expectations_of
from lakehouse.quality.expectations import apply_expectations
from lakehouse.runlog import RunLog, TableRun
from lakehouse.tables import Lake

log = logging.getLogger(__name__)


def changes_since(spark: SparkSession, path: str, last: int | None, current: int) -> DataFrame | None:
    """Change-data-feed rows after version ``last`` up to ``current`` (None if nothing changed)."""
    if last is not None and last >= current:
        return None
    start = 0 if last is None else last + 1
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start)
        .option("endingVersion", current)
        .load(path)
    )


def merge_bounds(out: DataFrame, spec: TableSpec) -> dict[str, Any]:
    """What the MERGE's target can be narrowed to: the partition values ``out`` holds and, for a
    feature table, its earliest instant (one small aggregate over ``out``, which is cached)."""
    time_col = spec.features.time if spec.features else None
    if not spec.partition_by and not time_col:
        return {}
    aggs = [F.collect_set(c).alias(c) for c in spec.partition_by]
    if time_col:
        aggs.append(F.min(time_col).alias("__since"))
    row = out.agg(*aggs).first()
    bounds: dict[str, Any] = {"prune": {c: sorted(row[c]) for c in spec.partition_by}} if spec.partition_by else {}
    if time_col and row["__since"] is not None:
        bounds["since"] = (time_col, row["__since"])
    return bounds


def readable(spark: SparkSession, lake: Lake, versions: dict[str, int], margin_hours: float = 1.0) -> bool:
    """Whether time travel to ``versions`` is safe: each was committed less than its table's
    VACUUM retention ago (minus a margin). Files a later commit removed are kept at least that
    long after the removal, so every file of such a version is still there."""
    now = time.time()
    for name, v in versions.items():
        committed = fs.modified_at(spark, f"{lake.path(name)}/_delta_log/{v:020d}.json")
        spec = lake.spec(name)
        hours = spec.retention_hours if spec.retention_hours is not None else lake.env.maintenance.retention_hours
        if committed is None or (now - committed) / 3600 > hours - margin_hours:
            return False
    return True


def upstream_mib(spark: SparkSession, lake: Lake, spec: TableSpec) -> float:
    """The size of ``spec``'s upstream tables together, in MiB, from their Delta logs (no Spark job)."""
    return sum(int(delta_log.snapshot(spark, lake.path(u)).sizeInBytes()) for u in spec.upstream) / 2**20


def mismatched_keys(stored: DataFrame, recount: DataFrame, keys: tuple[str, ...] | list[str]) -> DataFrame:
    """The keys whose row in ``stored`` differs from their row in ``recount`` (or is in one only):
    one full outer join on the keys, whole rows compared null-safe."""
    cols = [c for c in recount.columns if c not in keys]
    a = stored.select(*keys, F.struct(*cols).alias("__a"))
    b = recount.select(*keys, F.struct(*cols).alias("__b"))
    return a.join(b, list(keys), "full_outer").where(~F.col("__a").eqNullSafe(F.col("__b"))).select(*keys)


def verify_against_recount(spark: SparkSession, lake: Lake, spec: TableSpec, out: DataFrame, inputs: dict[str, int], written: int) -> None:
    """A transform that adds the difference a change makes to stored sums (it takes ``previous``)
    must leave every row it wrote equal to a recount from the inputs it read: the rows of this
    commit are compared with the transform's full build restricted to their keys.

    Raises:
        ReconciliationError: naming the table, how many of the rows written differ and a few keys.
    """
    fn = spec.transform_fn()
    tables = {
        lake.spec(u).short_name: spark.read.format("delta").option("versionAsOf", v).load(lake.path(u))
        for u in spec.upstream
        for v in [inputs[u]]
    }
    keys = out.select(*spec.keys)
    schema = delta.schema_of(spark, spec.schema)
    recount = delta.check_schema(fn(tables, None), schema, spec.name).join(keys, list(spec.keys), "left_semi")
    stored = spark.read.format("delta").option("versionAsOf", written).load(lake.path(spec.name)).select(*schema.fieldNames())
    bad = mismatched_keys(stored.join(keys, list(spec.keys), "left_semi"), recount, spec.keys).persist()
    try:
        n = bad.count()
        if n:
            sample = ", ".join("/".join(str(r[k]) for k in spec.keys) for r in bad.limit(5).collect())
            raise ReconciliationError(
                f"{spec.name}: {n:,} of the rows version {written} wrote differ from a recount of their "
                f"{'/'.join(spec.keys)} from the inputs read ({', '.join(f'{k} v{v}' for k, v in sorted(inputs.items()))}), e.g. {sample}"
            )
    finally:
        bad.unpersist()
    log.info("%s: the rows written equal a recount of their keys", spec.name)


def build_table(spark: SparkSession, lake: Lake, spec: TableSpec, runlog: RunLog) -> TableRun:
    with runlog.track(spec.name) as tr:
        path = lake.path(spec.name)
        current: dict[str, int] = {}
        for u in spec.upstream:
            v = delta.version(spark, lake.path(u))
            if v is None:
                raise PipelineError(f"{spec.name}: upstream {u} has no Delta table at {lake.path(u)} (run silver first)")
            current[u] = v
        tr.inputs = dict(current)
        last, stamp = delta_log.next_stamp(spark, path, spec.name, runlog.run_id, f"lakehouse-gold-{spec.name}", current)
        if last is not None:
            added = delta.add_missing_columns(spark, path, delta.schema_of(spark, spec.schema))
            if added:  # the stored rows lack them: every row is computed again
                log.info("%s: new column(s) %s: full build", spec.name, ", ".join(added))
                last = None
        tables = {lake.spec(u).short_name: spark.read.format("delta").load(lake.path(u)) for u in spec.upstream}
        if last is None:
            changes = None
            log.info("%s: no earlier run: full build", spec.name)
        else:
            changes = {}
            for u in spec.upstream:
                c = changes_since(spark, lake.path(u), last.get(u), current[u])
                if c is not None:
                    changes[lake.spec(u).short_name] = c
            if not changes:
                log.info("%s: silver unchanged since the last run: nothing to do", spec.name)
                tr.output_version = delta.version(spark, path)
                return tr
            size = upstream_mib(spark, lake, spec)
            if spec.sql:
                log.info("%s: upstream changed; declared by sql: rebuilt in full", spec.name)
                changes = None
            elif size < lake.env.pipeline.gold_rebuild_below_mib:
                log.info(
                    "%s: upstream changed; %.1f MiB upstream, under pipeline.gold_rebuild_below_mib (%g): rebuilt in full",
                    spec.name,
                    size,
                    lake.env.pipeline.gold_rebuild_below_mib,
                )
                changes = None
            else:
                log.info("%s: incremental from %s", spec.name, {k: (last.get(k), current[k]) for k in current})
                tables[spec.short_name] = spark.read.format("delta").load(path)  # what the changes leave as it is
        fn = spec.transform_fn()
        previous = None
        if changes is not None and "previous" in inspect.signature(fn).parameters and not readable(spark, lake, last):
            log.info("%s: the versions the last run read may be vacuumed by now: full build", spec.name)
            changes = None
            out = fn(tables, None)
        elif changes is not None and "previous" in inspect.signature(fn).parameters:
            # the upstream tables as the last run read them (Delta time travel): for transforms
            # that add the difference a change makes instead of recounting
            previous = {
                lake.spec(u).short_name: spark.read.format("delta").option("versionAsOf", last[u]).load(lake.path(u))
                for u in spec.upstream
                if last.get(u) is not None
            }
            out = fn(tables, changes, previous=previous)
        elif "spec" in inspect.signature(fn).parameters:  # a transform shared by several tables (the feature engine)
            out = fn(tables, changes, spec=spec)
        else:
            out = fn(tables, changes)
        schema = delta.schema_of(spark, spec.schema)
        out = delta.check_schema(out, schema, spec.name)
        ensure_constrained_table(spark, path, spec, lake.env.quality.expectations)
        try:
            checked = apply_expectations(out, expectations_of(lake, spec), checker(spark, lake, spec, runlog.metrics))
        except QualityError as exc:
            tr.add_quality(exc.results)
            raise
        tr.add_quality(checked.results)
        out = checked.valid().select(*schema.fieldNames())
        try:
            rows = checked.rows
            tr.rows_read = rows
            tr.rows_warned = checked.warned
            if rows or (changes is None and last is not None):  # a rebuild to no rows empties the table
                if changes is None:
                    # a full build: the table becomes exactly ``out`` (one overwrite, no MERGE
                    # reading what it replaces); a replace_where table ranged by its column
                    if spec.mode == "replace_where":
                        delta.replace_all(spark, out.repartitionByRange(spec.replace_by), path, optimize_write=False, stamp=stamp)
                    else:
                        delta.replace_all(spark, out, path, stamp=stamp)
                    log.info("%s: wrote %d row(s) in full", spec.name, rows)
                elif spec.mode == "replace_where":
                    col = spec.replace_by
                    assert col is not None  # the config loader requires it
                    values = sorted(r[0] for r in out.select(col).distinct().collect())
                    # range-partitioned by the column (AQE sizes the ranges), written as they are:
                    # each file holds a narrow range of it, so queries filtered on it skip the
                    # other files by their min/max statistics
                    delta.replace_values(spark, out.repartitionByRange(col), path, col, values, optimize_write=False, stamp=stamp)
                    log.info("%s: replaced the rows of %d %s value(s) %s..%s", spec.name, len(values), col, values[0], values[-1])
                else:
                    bounds = merge_bounds(out, spec)
                    with delta.stamped(spark, stamp):
                        delta.merge_upsert(spark, path, out, spec.keys, **bounds)
                crash_point("gold.after_write", spec.name)
                wrote = delta_log.latest_stamp(spark, path, spec.name)
                if wrote is None or wrote.stamp is None or wrote.stamp.run_id != runlog.run_id:
                    # Delta skipped the write: another run committed this step (the same seq) first
                    other = wrote.stamp.run_id if wrote is not None and wrote.stamp is not None else "?"
                    log.warning("%s: run %s absorbed these changes first; this run's write was skipped", spec.name, other)
                else:
                    tr.rows_written = rows
                    tr.rows_inserted = wrote.metrics.get("numTargetRowsInserted", wrote.metrics.get("numOutputRows", 0))
                    tr.rows_updated = wrote.metrics.get("numTargetRowsUpdated", 0)
                    if previous is not None:
                        verify_against_recount(spark, lake, spec, out, current, wrote.version)
        finally:
            checked.unpersist()
        tr.output_version = delta.version(spark, path)
    return tr


def run(spark: SparkSession, lake: Lake, runlog: RunLog, tables: list[str] | None = None) -> dict[str, TableRun]:
    """Build every gold table (or the named ones)."""
    specs = lake.select("gold", tables)
    return build_all(spark, specs, lambda session, spec: build_table(session, lake, spec, runlog), lake.env.pipeline.parallel_tables)
