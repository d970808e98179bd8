"""A job's run log in the background: a few bookkeeping commits per run, not two per table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import load_tables
from lakehouse.quality.expectations import RuleResult
from lakehouse.runlog import RunLog
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for


def commits(spark: SparkSession, path: str) -> list[list[str]]:
    """Per commit after the table's creation, in order: the tables its rows name."""
    out = []
    for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect():
        if r.operation != "WRITE":
            continue
        rows = spark.read.format("delta").option("versionAsOf", r.version).load(path)
        if r.version > 0:
            rows = rows.exceptAll(spark.read.format("delta").option("versionAsOf", r.version - 1).load(path))
        out.append(sorted(x.table for x in rows.select("table").collect()))
    return out


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_rows_of_finished_tables_land_per_save_in_one_commit_each(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(env_for(tmp_path), load_tables(CONF))
    log = RunLog(spark, lake, "pipeline", "run-1", date(2026, 1, 1), background=True)
    log.begin()
    for layer, tables in (("bronze", ("customers", "transactions")), ("silver", ("customers", "transactions"))):
        for t in tables:
            with log.track(f"{layer}.{t}") as tr:
                tr.add_quality([RuleResult(f"{t}_rule", "quarantine", "expr", "row", evaluated=10, failed=1)])
        if layer == "bronze":
            log.save()
    log.end()
    assert commits(spark, lake.ops_path("run_log")) == [
        ["*"],  # begin
        ["bronze.customers", "bronze.transactions"],  # save() after bronze
        ["*", "silver.customers", "silver.transactions"],  # end(): the rest and the run's own row
    ]
    assert commits(spark, lake.ops_path("quality_metrics")) == [
        ["bronze.customers", "bronze.transactions"],
        ["silver.customers", "silver.transactions"],
    ]
    statuses = spark.read.format("delta").load(lake.ops_path("run_log")).groupBy("status").count()
    assert sorted(map(tuple, statuses.collect())) == [("finished", 1), ("started", 1), ("succeeded", 4)]
