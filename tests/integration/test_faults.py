"""Integrity under faults: SIGKILL the jobs at their worst moments, rerun, compare.

Two lakes read the same raw zone. Lake A runs without faults. Lake B's job is killed (SIGKILL,
in a subprocess) at one crash point per arrival day, and the next run simply runs again. At the
end every table of B must equal A's (nothing lost, nothing duplicated), B's row accounting must
reconcile exactly, and B's run log must show each killed run as abandoned and
the runs that recovered.

Kill points: mid-ingestion into bronze (after a batch's append, before its checkpoint), between
silver's MERGE and the run-log write, mid-gold (after a replaceWhere, before the run log), and
mid-replay (after the upsert into silver, before the quarantine delete).

The lakes hold the tables of ``helpers.WITHOUT_FEATURES`` (no feature tables; the gold kill
point is in merchant_daily_kpis).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.replay import main as replay_main
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.pipeline.summary import reconcile
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for
from tests.integration.helpers import WITHOUT_FEATURES, all_tables, restricted

pytestmark = pytest.mark.integration

VOLATILE = ("_ingested_at", "_ingest_date", "_run_id", "run_id", "batch_key", "quarantined_at")


def conf_args(root: Path, raw: Path) -> list[str]:
    return ["--conf", f"lake_root={root}", "--conf", f"paths.raw={raw}"]


def run(root: Path, raw: Path, *args: str) -> None:
    assert pipeline_main([*conf_args(root, raw), "--no-summary", *restricted(args, WITHOUT_FEATURES)]) == 0


def replay(root: Path, raw: Path) -> None:
    assert replay_main([*conf_args(root, raw), "--table", "silver.transactions", "--rule", "fx_rate_known"]) == 0


def killed(root: Path, raw: Path, point: str, job: str, *args: str) -> None:
    """Run a job in its own process with LAKEHOUSE_FAULT set; it must die by SIGKILL."""
    extra = ["--no-summary"] if job == "pipeline" else []
    env = {**os.environ, "LAKEHOUSE_FAULT": point, "SPARK_LOCAL_IP": "127.0.0.1"}
    args = tuple(restricted(args, WITHOUT_FEATURES)) if job == "pipeline" else args
    cmd = [sys.executable, f"jobs/{job}.py", *conf_args(root, raw), *extra, *args, "--conf", "spark.sql.shuffle.partitions=2"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, f"{point}: expected SIGKILL, got {done.returncode}\n{done.stderr[-3000:]}"


def comparable(df: DataFrame) -> DataFrame:
    df = df.drop(*[c for c in VOLATILE if c in df.columns])
    if "record" in df.columns:  # the quarantined record carries its ingest time
        df = df.withColumn("record", F.regexp_replace("record", r',?"_ingested_at":"[^"]*"', ""))
    return df


def test_every_table_survives_sigkill_at_each_point(spark: SparkSession, tmp_path: Path) -> None:
    raw, a, b = tmp_path / "raw", tmp_path / "lake-a", tmp_path / "lake-b"
    truth = str(tmp_path / "truth")
    params = GeneratorParams(scale=0.01, days=3)

    def new_day(days: int) -> None:
        generate_raw_zone(spark, GeneratorParams(scale=params.scale, days=days), str(raw), truth)

    # Lake B: each killed run also recovers what the previous one left; lake A builds the same
    # days in one run (silver and gold do not depend on how the arrivals were batched).
    new_day(3)
    killed(b, raw, "bronze.after_append:bronze.transactions", "pipeline")
    new_day(4)
    killed(b, raw, "silver.after_merge:silver.transactions", "pipeline")
    new_day(5)
    killed(b, raw, "gold.after_write:gold.merchant_daily_kpis", "pipeline")
    run(b, raw)
    run(a, raw)

    # Day 6: payments processed before their FX rates (quarantined), rates later, then a replay.
    new_day(6)
    for lake in (a, b):
        run(lake, raw, "--layers", "bronze")
        run(lake, raw, "--layers", "silver", "--tables", "silver.customers,silver.merchants,silver.transactions")
        run(lake, raw, "--layers", "silver")
    replay(a, raw)
    killed(b, raw, "replay.after_upsert:silver.transactions", "replay", "--table", "silver.transactions", "--rule", "fx_rate_known")
    replay(b, raw)
    for lake in (a, b):
        run(lake, raw, "--layers", "gold")

    lake_a = Lake(env_for(a, f"paths.raw={raw}"), load_tables(CONF))
    lake_b = Lake(env_for(b, f"paths.raw={raw}"), load_tables(CONF))
    compared = 0
    for (name, path_a), (_, path_b) in zip(all_tables(lake_a), all_tables(lake_b), strict=True):
        if name not in WITHOUT_FEATURES and not name.startswith("quarantine."):
            assert not Path(path_a).exists() and not Path(path_b).exists(), name
            continue
        compared += 1
        got, want = (comparable(spark.read.format("delta").load(p)) for p in (path_b, path_a))
        assert got.count() == want.count(), name
        assert_df_equality(got, want.select(*got.columns), ignore_row_order=True, ignore_nullable=True)
    assert compared == 17  # 5 bronze, 5 silver, 5 quarantine, 2 gold
    for r in reconcile(spark, lake_b):
        assert r.ok, r
    log = spark.read.format("delta").load(lake_b.ops_path("run_log"))
    jobs = log.where("table = '*'").groupBy("run_id", "job").agg(F.sort_array(F.collect_set("status")).alias("s")).collect()
    abandoned = [r for r in jobs if r.s == ["abandoned", "started"]]
    assert len(abandoned) == 4, jobs
    assert all(r.s == ["finished", "started"] for r in jobs if r not in abandoned), jobs
    moved = log.where("job = 'replay' AND table = 'silver.transactions' AND status = 'succeeded'").collect()
    assert len(moved) == 1 and moved[0].rows_read > 0  # the recovery finished the interrupted move
