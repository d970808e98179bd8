"""Replay quarantined records through the current transform and rules (after a fix).

A record lands in quarantine because it broke a rule: a real defect, or a rule or reference
table that was wrong at the time (a payment processed before its day's FX rates arrived, a rule
too strict). After the fix, ``replay`` takes the quarantined records of one silver table (all of
them, one rule's, or one run's), rebuilds each bronze row from the record kept in quarantine,
re-applies the table's current transform and expectations, and then

1. upserts the rows that now pass into silver, exactly as the silver job does (latest version
   wins; an SCD2 table gets its versions chained);
2. in one MERGE on the quarantine table, deletes those records and updates the rules still broken
   by the others.

Delta has no transaction across two tables, so the two commits are ordered to make the move safe
and idempotent: a record is never in neither table, and if the job dies between the commits, the
moved records are in both until the same replay runs again, which re-upserts them (a no-op: same
version, same hash) and deletes them from quarantine. A ``fail`` rule broken by the replayed rows
stops the replay before either commit.

Accounting, recorded in ``ops.run_log`` (job ``replay``): ``read`` = records taken,
``inserted`` = new silver rows, ``quarantined`` = records still failing, ``duplicate`` = records
moved that did not add a silver row; so bronze = silver + quarantine + duplicates still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.cli import add_wait, context, parser
from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError, QualityError
from lakehouse.faults import crash_point
from lakehouse.io import delta
from lakehouse.io.delta_log import Stamp
from lakehouse.leases import leased
from lakehouse.pipeline.silver import ensure_silver, transform_batch, upsert_once
from lakehouse.quality.context import checker, expectations_of
from lakehouse.quality.drift import evolved_columns
from lakehouse.quality.expectations import ERRORS, apply_expectations
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.quality.quarantine import RECORD_METADATA, read_record
from lakehouse.runlog import RunLog, TableRun, log_batch
from lakehouse.session import get_spark
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

Q_BATCH, Q_RECORD = "__q_batch_key", "__q_record"


@dataclass(frozen=True)
class Selection:
    """Which quarantined records to replay: all, or those of one rule and/or one run."""

    rule: str | None = None
    run_id: str | None = None

    def apply(self, q: DataFrame) -> DataFrame:
        if self.rule:
            q = q.where(F.array_contains("errors", self.rule))
        if self.run_id:
            q = q.where(F.col("run_id") == self.run_id)
        return q


def bronze_rows(q: DataFrame, bronze: TableSpec, extra: Sequence[str] = ()) -> DataFrame:
    """Quarantine rows back as bronze rows (source fields, ``extra`` evolved fields, kept
    metadata) with their identity."""
    names = [c for c, _ in bronze.columns]
    return q.select(
        read_record(F.col("record"), bronze, extra).alias("__r"), F.col("batch_key").alias(Q_BATCH), F.col("record").alias(Q_RECORD)
    ).select(*[F.col(f"__r.`{c}`").alias(c) for c in (*names, *extra, *RECORD_METADATA)], Q_BATCH, Q_RECORD)


def replay_table(spark: SparkSession, lake: Lake, spec: TableSpec, runlog: RunLog, selection: Selection = Selection()) -> TableRun:
    """Replay ``spec``'s quarantined records chosen by ``selection`` (see module doc)."""
    if spec.layer != "silver":
        raise PipelineError(f"{spec.name}: only silver tables have a quarantine to replay")
    rules = {e.name for e in spec.expectations}
    if selection.rule and selection.rule not in rules and selection.rule not in _rules_in_quarantine(spark, lake, spec):
        raise PipelineError(
            f"{spec.name}: no rule {selection.rule!r} in its expectations or its quarantine (rules: {', '.join(sorted(rules))})"
        )
    with runlog.track(spec.name) as tr:
        ensure_silver(spark, lake, spec)
        qpath = lake.quarantine_path(spec.name)
        q_version = delta.version(spark, qpath)
        tr.inputs = {f"quarantine.{spec.short_name}": q_version, **{u: delta.version(spark, lake.path(u)) for u in spec.upstream[1:]}}
        taken = selection.apply(spark.read.format("delta").option("versionAsOf", q_version).load(qpath))
        bronze = lake.spec(spec.upstream[0])
        evolved = evolved_columns(spark.read.format("delta").load(lake.path(bronze.name)).columns, bronze)
        typed, extra = transform_batch(spark, lake, spec, bronze_rows(taken, bronze, evolved), runlog.run_id)
        try:
            # row rules only: table-level checks judge a delivery (its volume, freshness), not a replay
            rules = [e for e in expectations_of(lake, spec) if not e.table_level]
            checked = apply_expectations(typed, rules, checker(spark, lake, spec, QualityMetrics(spark, lake)))
        except QualityError as exc:
            tr.add_quality(exc.results)
            raise
        tr.add_quality(checked.results)
        try:
            read, still = checked.rows, checked.quarantined
            moved = read - still
            inserted = updated = 0
            # one transaction id per selection, its seq the quarantine version taken: the same
            # replay retried after a crash finds its upsert; a later replay has a newer version
            app_id = f"lakehouse-replay-{selection.rule or '*'}-{selection.run_id or '*'}"
            stamp = Stamp("replay", runlog.run_id, app_id, q_version or 0, tr.inputs)
            if moved:
                inserted, updated, done = upsert_once(spark, lake, spec, checked.valid(), stamp, extra)
                if done:  # an interrupted replay upserted these: finish its move, counted from its commit
                    log.info("%s: an interrupted replay already upserted these records; finishing the move", spec.name)
                # the accounting of the move, before its second half (the quarantine MERGE): a
                # replay killed between the two is finished by running it again, which skips both
                # the upsert and this row (same transaction id)
                log_batch(spark, lake, stamp, "replay", spec.name, f"replay-{app_id}-{q_version}", read, inserted, updated, still)
                crash_point("replay.after_upsert", spec.name)
            if read:
                verdicts = checked.df.select(Q_BATCH, Q_RECORD, F.col(ERRORS).alias("errors")).distinct()
                (
                    DeltaTable.forPath(spark, qpath)
                    .alias("t")
                    .merge(
                        verdicts.alias("s"), (F.col("t.batch_key") == F.col(f"s.{Q_BATCH}")) & (F.col("t.record") == F.col(f"s.{Q_RECORD}"))
                    )
                    .whenMatchedDelete(condition=F.size("s.errors") == 0)
                    .whenMatchedUpdate(condition=F.col("t.errors") != F.col("s.errors"), set={"errors": "s.errors"})
                    .execute()
                )
        finally:
            checked.unpersist()
        tr.rows_read, tr.rows_quarantined = read, still
        tr.rows_inserted, tr.rows_updated, tr.rows_duplicate = inserted, updated, moved - inserted
        tr.rows_written = inserted + updated
        tr.output_version = delta.version(spark, lake.path(spec.name))
        log.info(
            "%s: replayed %d quarantined record(s): %d moved to silver (%d new rows, %d updates, %d duplicates), %d still failing",
            spec.name,
            read,
            moved,
            inserted,
            updated,
            moved - inserted,
            still,
        )
    return tr


def _rules_in_quarantine(spark: SparkSession, lake: Lake, spec: TableSpec) -> set[str]:
    path = lake.quarantine_path(spec.name)
    if not delta.is_delta(spark, path):
        return set()
    return {r[0] for r in spark.read.format("delta").load(path).select(F.explode("errors")).distinct().collect()}


def main(argv: Sequence[str] | None) -> int:
    """``replay --table silver.X [--rule R] [--from-run RUN_ID]``"""
    p = parser("Replay quarantined records of a silver table through its current transform and rules.")
    p.add_argument("--table", required=True, help="the silver table, e.g. silver.transactions")
    p.add_argument("--rule", help="only records that broke this rule")
    p.add_argument("--from-run", dest="from_run", help="only records quarantined by this run id")
    add_wait(p, 0.0)  # run by a person: beside a pipeline writing the table, it stops at once
    args = p.parse_args(argv)
    ctx = context("replay", args)
    spec = ctx.lake.spec(args.table)
    spark = get_spark(ctx.env, "lakehouse-replay", args.master)
    runlog = RunLog(spark, ctx.lake, "replay", ctx.run_id, args.run_date)
    with leased(spark, ctx.lake, ctx.run_id, "replay", [spec.name], wait=args.wait):
        runlog.begin()
        try:
            tr = replay_table(spark, ctx.lake, spec, runlog, Selection(args.rule, args.from_run))
        except Exception as exc:
            runlog.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        runlog.end()
    print(
        f"{spec.name}: {tr.rows_read} record(s) replayed, {tr.rows_read - tr.rows_quarantined} moved to silver "
        f"({tr.rows_inserted} new, {tr.rows_updated} updated, {tr.rows_duplicate} duplicates), {tr.rows_quarantined} still in quarantine",
        flush=True,
    )
    return 0
