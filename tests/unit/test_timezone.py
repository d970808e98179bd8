"""Stored times, and the days the jobs cut, do not depend on the driver machine's time zone.

PySpark turns a naive ``datetime`` into an instant with the Python process's local zone; every
time the lakehouse hands to Spark is timezone-aware (UTC), so a driver in Kiritimati (UTC+14)
stores the same instants as one in UTC.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.features.payments import _since
from lakehouse.features.pit import time_range
from lakehouse.io.delta_log import Stamp
from lakehouse.ml.dataset import lake_span, training_window
from lakehouse.ml.jobs import _as_of
from lakehouse.ml.monitoring import monitored_days
from lakehouse.ml.spec import load_model_spec
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


def test_the_model_jobs_cut_the_same_days_in_any_zone(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone: None
) -> None:
    """The lake clock, the training window, the days monitoring measures, ``--as-of`` and the
    feature engine's partition pruning are the same for a driver in UTC and one 14 hours ahead:
    the latest payment at 23:30 UTC is on 10 March, not on the driver's 11 March."""
    lake = Lake(env_for(tmp_path), load_tables(CONF))
    spec = dataclasses.replace(load_model_spec(CONF, "fraud"), maturity_days=10, warmup_days=0, training_days=20, validation_days=5)
    first, last = datetime(2026, 2, 1, 10, 0, tzinfo=timezone.utc), datetime(2026, 3, 10, 23, 30, tzinfo=timezone.utc)
    tx = spark.createDataFrame(
        [(d.date(), d) for d in (first, last)], "event_date date, event_time timestamp"
    ).cache()  # the frame holds instants; its event_date is their UTC day
    midnight = datetime(2026, 2, 28, tzinfo=timezone.utc)  # 10 March 23:30 less 10 days, to its UTC midnight
    for tz in ("UTC", FAR):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        span = lake_span(spark, lake, tx)
        assert span == (first, last) and all(t.tzinfo is not None for t in span), (tz, span)
        w = training_window(span[1], spec, span[0])
        assert (w.start, w.split, w.end) == (midnight - timedelta(days=20), midnight - timedelta(days=5), midnight), (tz, w)
        assert tx.where(F.col("event_time") < F.lit(w.end)).count() == 1  # a window edge handed back to Spark
        drift, matured = monitored_days(span[1], 7, spec.maturity_days)
        assert (drift, matured) == ((date(2026, 3, 4), date(2026, 3, 10)), (date(2026, 2, 21), date(2026, 2, 27))), tz
        assert _as_of("2026-03-10T23:30:00") == last and _as_of("2026-03-11T13:30:00+14:00") == last
        # an incremental feature build reads the days from its earliest touched instant on
        lo, _ = time_range(tx.where(F.col("event_time") > F.lit(first)), "event_time")
        assert _since(tx, "event_time", lo, "event_date").count() == 1, tz  # 0 if pruned by the driver's day
