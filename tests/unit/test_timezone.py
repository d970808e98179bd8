"""Stored times do not depend on the driver machine's time zone.

PySpark turns a naive ``datetime`` into an instant with the Python process's local zone; every
time the lakehouse hands to Spark is timezone-aware (UTC), so a driver in Kiritimati (UTC+14)
stores the same instants as one in UTC.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.io.delta_log import Stamp
from lakehouse.quality.expectations import RuleResult
from lakehouse.runlog import RunLog, log_batch
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for

FAR = "Pacific/Kiritimati"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    time.tzset()


def test_run_log_metrics_and_batch_log_store_the_same_instants_in_any_zone(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone: None
) -> None:
    lake = Lake(env_for(tmp_path), load_tables(CONF))
    started = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    for tz in ("UTC", FAR):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        assert time.localtime().tm_gmtoff == (14 * 3600 if tz == FAR else 0)  # the process really is in that zone
        log = RunLog(spark, lake, "test", f"run-{tz}", date(2026, 3, 1))
        tr = log.start("silver.transactions")
        tr.started_at = started
        tr.add_quality([RuleResult("amount_positive", "quarantine", "expr", "row", evaluated=10, failed=1)])
        log.finish(tr)
        log_batch(spark, lake, Stamp("silver.transactions", f"run-{tz}", f"app-{tz}", 0), "test", "silver.transactions", "k", 10, 8, 0, 1)
    now = time.time()
    runs = {
        r.run_id: r
        for r in spark.read.format("delta")
        .load(lake.ops_path("run_log"))
        .select("run_id", F.unix_micros("started_at").alias("s"), F.unix_micros("ended_at").alias("e"))
        .collect()
    }
    assert {k: r.s for k, r in runs.items()} == {"run-UTC": started.timestamp() * 1e6, f"run-{FAR}": started.timestamp() * 1e6}
    for path, column in (
        (lake.ops_path("run_log"), "ended_at"),
        (lake.ops_path("quality_metrics"), "recorded_at"),
        (lake.ops_path("batch_log"), "logged_at"),
    ):
        for r in spark.read.format("delta").load(path).select("run_id", F.unix_seconds(column).alias("t")).collect():
            assert abs(r.t - now) < 600, (path, column, r)  # 14 hours off if the zone leaked in
