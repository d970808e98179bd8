"""Leases: one writer per table, runs that know about each other (lakehouse.leases)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.leases import LeaseError, Leases, lease_dir, leased, live_runs, read_holder
from lakehouse.runlog import RunLog, TableRun
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(env_for(tmp_path), load_tables(CONF))


def lease_file(lake: Lake, table: str) -> Path:
    return Path(lease_dir(lake)) / f"{table}.lease"


def test_a_live_lease_stops_a_second_run_with_its_name_and_start(spark: SparkSession, lake: Lake) -> None:
    with leased(spark, lake, "run-a", "pipeline", ["silver.transactions", "gold.customer_360"]):
        holder = read_holder(spark, lake, "silver.transactions")
        assert holder is not None and (holder.run_id, holder.job, holder.pid) == ("run-a", "pipeline", os.getpid())
        second = Leases(spark, lake, "run-b", "replay", ["silver.transactions"])
        with pytest.raises(LeaseError, match=r"silver.transactions is being written by run run-a \(pipeline, pid \d+ on .*, started 20"):
            second.acquire(wait=0)
        assert live_runs(spark, lake) == {"run-a"}
    assert not lease_file(lake, "silver.transactions").exists()  # released
    with leased(spark, lake, "run-b", "replay", ["silver.transactions"]):
        assert live_runs(spark, lake) == {"run-b"}


def test_a_run_takes_all_its_leases_or_none(spark: SparkSession, lake: Lake) -> None:
    with leased(spark, lake, "run-a", "score", ["silver.transactions"]):
        with pytest.raises(LeaseError, match="run run-a"):
            Leases(spark, lake, "run-b", "pipeline", ["bronze.transactions", "silver.transactions"]).acquire(wait=0)
        assert not lease_file(lake, "bronze.transactions").exists()  # given back while refusing


def test_a_second_run_waits_for_the_first_and_says_whom_it_waits_for(
    spark: SparkSession, lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    first = Leases(spark, lake, "run-a", "pipeline", ["gold.customer_360"], ttl=4.0)
    first.acquire()
    threading.Timer(1.5, first.release).start()
    second = Leases(spark, lake, "run-b", "pipeline", ["gold.customer_360"], ttl=4.0)
    with caplog.at_level("INFO", logger="lakehouse.leases"):
        second.acquire(wait=20)
    try:
        assert 1.0 <= second.waited < 10
        assert any("waiting for run run-a (pipeline" in r.getMessage() for r in caplog.records)
        assert read_holder(spark, lake, "gold.customer_360").run_id == "run-b"  # type: ignore[union-attr]
    finally:
        second.release()


def test_the_heartbeat_keeps_a_long_run_alive_past_its_ttl(spark: SparkSession, lake: Lake) -> None:
    with leased(spark, lake, "run-a", "pipeline", ["silver.customers"], ttl=0.9):
        time.sleep(2.0)  # more than twice the ttl
        with pytest.raises(LeaseError, match="run run-a"):
            Leases(spark, lake, "run-b", "pipeline", ["silver.customers"], ttl=0.9).acquire(wait=0)


def test_a_stale_lease_is_taken_over(spark: SparkSession, lake: Lake) -> None:
    path = lease_file(lake, "silver.merchants")
    path.parent.mkdir(parents=True)
    body = {"run_id": "run-dead", "job": "pipeline", "host": "h", "pid": 1, "started_at": "2026-11-30T00:00:00+00:00", "ttl": 60.0}
    path.write_text(json.dumps(body))
    old = time.time() - 600
    os.utime(path, (old, old))
    assert live_runs(spark, lake) == set()
    leases = Leases(spark, lake, "run-b", "pipeline", ["silver.merchants"])
    leases.acquire(wait=0)
    try:
        assert [h.run_id for h in leases.taken_over] == ["run-dead"]
        assert read_holder(spark, lake, "silver.merchants").run_id == "run-b"  # type: ignore[union-attr]
    finally:
        leases.release()


def test_a_lease_of_a_process_gone_from_this_machine_is_taken_over_at_once(spark: SparkSession, lake: Lake) -> None:
    child = subprocess.Popen(["true"])  # a pid that no longer runs once reaped
    child.wait()
    pid = child.pid
    path = lease_file(lake, "silver.customers")
    path.parent.mkdir(parents=True)
    body = {"run_id": "run-killed", "job": "pipeline", "host": socket.gethostname(), "pid": pid, "started_at": "x", "ttl": 120.0}
    path.write_text(json.dumps(body))  # touched just now: only the process tells it is gone
    with leased(spark, lake, "run-b", "pipeline", ["silver.customers"]) as leases:
        assert [h.run_id for h in leases.taken_over] == ["run-killed"]


def test_a_corrupt_lease_file_is_named_and_nothing_is_taken(spark: SparkSession, lake: Lake) -> None:
    path = lease_file(lake, "silver.fx_rates")
    path.parent.mkdir(parents=True)
    path.write_text("{ not a lease")
    with pytest.raises(LeaseError, match=r"lease file .*silver.fx_rates.lease for silver.fx_rates is corrupt"):
        Leases(spark, lake, "run-b", "pipeline", ["silver.chargebacks", "silver.fx_rates"]).acquire(wait=0)
    assert not lease_file(lake, "silver.chargebacks").exists()
    assert path.read_text() == "{ not a lease"  # left for a person to look at
    old = time.time() - 600  # an old corrupt file is a stale lease
    os.utime(path, (old, old))
    with leased(spark, lake, "run-b", "pipeline", ["silver.fx_rates"]) as leases:
        assert [h.run_id for h in leases.taken_over] == ["(corrupt lease)"]


def test_begin_marks_dead_runs_abandoned_and_never_a_live_one(spark: SparkSession, lake: Lake) -> None:
    for run_id in ("run-live", "run-dead"):
        log = RunLog(spark, lake, "pipeline", run_id, date(2026, 1, 1))
        log._append(log._row(TableRun("*", datetime(2026, 1, 1, tzinfo=timezone.utc)), "started", None))
    with leased(spark, lake, "run-live", "pipeline", ["gold.merchant_daily_kpis"]):
        marked = RunLog(spark, lake, "pipeline", "run-new", date(2026, 1, 1)).begin()
    assert marked == ["run-dead"]
    statuses = {
        r.run_id: sorted(r.s)
        for r in spark.read.format("delta")
        .load(lake.ops_path("run_log"))
        .groupBy("run_id")
        .agg(F.collect_list("status").alias("s"))
        .collect()
    }
    assert statuses == {"run-live": ["started"], "run-dead": ["abandoned", "started"], "run-new": ["started"]}
