"""Gold: recompute only what changed in silver since the last gold run.

The run log holds, for each gold table, the versions of the silver tables its last successful
run read. This run reads the change data feed of each silver table from that version + 1 to the
current one, hands it to the table's transform (which works out the affected dates or keys), and
writes the result with replaceWhere on the affected values of ``replace_by`` (``replace_where``:
one commit swaps those rows, rewriting only the files that hold them) or a MERGE on the keys
(``merge``). No change upstream: nothing is written. No earlier run: a full build.
"""

from __future__ import annotations

import inspect
import logging

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError, QualityError
from lakehouse.faults import crash_point
from lakehouse.io import delta
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
        last = runlog.last_inputs(spec.name) if delta.is_delta(spark, path) else None
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
            log.info("%s: incremental from %s", spec.name, {k: (last.get(k), current[k]) for k in current})
            tables[spec.short_name] = spark.read.format("delta").load(path)  # what the changes leave as it is
        fn = spec.transform_fn()
        if changes is not None and "previous" in inspect.signature(fn).parameters:
            # the upstream tables as the last run read them (Delta time travel): for transforms
            # that add the difference a change makes instead of recounting
            previous = {
                lake.spec(u).short_name: spark.read.format("delta").option("versionAsOf", last[u]).load(lake.path(u))
                for u in spec.upstream
                if last.get(u) is not None
            }
            out = fn(tables, changes, previous=previous)
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
            if rows:
                if spec.mode == "replace_where":
                    col = spec.replace_by
                    assert col is not None  # the config loader requires it
                    values = sorted(r[0] for r in out.select(col).distinct().collect())
                    # range-partitioned by the column (AQE sizes the ranges), written as they are:
                    # each file holds a narrow range of it, so queries filtered on it skip the
                    # other files by their min/max statistics
                    delta.replace_values(spark, out.repartitionByRange(col), path, col, values, optimize_write=False)
                    log.info("%s: replaced the rows of %d %s value(s) %s..%s", spec.name, len(values), col, values[0], values[-1])
                else:
                    delta.merge_upsert(spark, path, out, spec.keys)
                crash_point("gold.after_write", spec.name)
                m = delta.last_metrics(spark, path)
                tr.rows_written = rows
                tr.rows_inserted = m.get("numTargetRowsInserted", m.get("numOutputRows", 0))
                tr.rows_updated = m.get("numTargetRowsUpdated", 0)
        finally:
            checked.unpersist()
        tr.output_version = delta.version(spark, path)
    return tr


def run(spark: SparkSession, lake: Lake, runlog: RunLog, tables: list[str] | None = None) -> dict[str, TableRun]:
    """Build every gold table (or the named ones)."""
    return {spec.name: build_table(spark, lake, spec, runlog) for spec in lake.select("gold", tables)}
