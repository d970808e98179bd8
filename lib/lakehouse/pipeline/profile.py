"""The profile job: profile silver and gold tables, flag outliers, raise anomaly alerts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.cli import context, parser
from lakehouse.io import delta
from lakehouse.quality.profile import Alert, anomalies, profile_table, write_alerts
from lakehouse.session import get_spark
from lakehouse.tables import Lake

log = logging.getLogger(__name__)


def latest_pipeline_run(spark: SparkSession, lake: Lake) -> str | None:
    """The run id of the newest run-log entry written by a job other than this one."""
    path = lake.ops_path("run_log")
    if not delta.is_delta(spark, path):
        return None
    row = spark.read.format("delta").load(path).where(F.col("job") != "profile").orderBy(F.col("ended_at").desc()).select("run_id").first()
    return row[0] if row else None


def run(spark: SparkSession, lake: Lake, run_id: str, tables: Sequence[str] | None = None) -> list[Alert]:
    """Profile the tables (default: every silver and gold table that exists) and check anomalies."""
    names = list(tables or [s.name for layer in ("silver", "gold") for s in lake.layer(layer)])
    for name in names:
        if delta.is_delta(spark, lake.path(name)):
            profile_table(spark, lake, name, run_id)
        else:
            log.info("%s: no table yet, not profiled", name)
    alerts = anomalies(spark, lake, run_id, latest_pipeline_run(spark, lake))
    write_alerts(spark, lake, run_id, alerts)
    return alerts


def main(argv: Sequence[str] | None) -> int:
    p = parser("Profile silver and gold tables (per-column statistics, outliers) and check for anomalies.")
    p.add_argument("--tables", default="", help="comma-separated table names (default: all silver and gold)")
    args = p.parse_args(argv)
    ctx = context("profile", args)
    tables = [t for t in args.tables.split(",") if t]
    for t in tables:
        ctx.lake.spec(t)
    spark = get_spark(ctx.env, "lakehouse-profile", args.master)
    alerts = run(spark, ctx.lake, ctx.run_id, tables)
    print(f"profiled; {len(alerts)} alert(s)" + "".join(f"\n  {a.message}" for a in alerts), flush=True)
    return 0
