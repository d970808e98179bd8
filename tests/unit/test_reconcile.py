"""The reconciliation's duplicates: ops.batch_log, and for a lake older than it, the run log."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import load_tables
from lakehouse.io.delta_log import Stamp
from lakehouse.pipeline.summary import mismatches, reconcile
from lakehouse.runlog import RunLog, log_batch
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for


def test_duplicates_come_from_the_batch_log_and_an_older_lakes_run_log(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(env_for(tmp_path), load_tables(CONF))

    def run_row(run_id: str, duplicates: int) -> None:
        log = RunLog(spark, lake, "pipeline", run_id, date(2026, 1, 1))
        tr = log.start("silver.transactions")
        tr.rows_duplicate = duplicates
        log.finish(tr)

    run_row("old-run", 7)  # before this version: the run log held the only count
    dups = {r.table: r.duplicates for r in reconcile(spark, lake)}
    assert dups["silver.transactions"] == 7 and dups["silver.customers"] == 0
    log_batch(spark, lake, Stamp("silver.transactions", "new-run", "app", 0), "pipeline", "silver.transactions", "k0", 20, 15, 1, 2)
    run_row("new-run", 3)  # the same batch's count, also in its run-log row: not counted twice
    (tx,) = reconcile(spark, lake, ["silver.transactions"])
    assert tx.duplicates == 7 + 3
    # no bronze, silver or quarantine rows in this lake: 0 != 0 + 0 + 10
    assert mismatches([tx]) == "silver.transactions: bronze 0 != silver 0 + quarantined 0 + duplicates 10 (-10 rows)"
