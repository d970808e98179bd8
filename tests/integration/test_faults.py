"""Integrity under faults: SIGKILL the jobs at their worst moments, rerun, compare.

Two lakes read the same raw zone. Lake B's job is killed (SIGKILL, in a subprocess) at one crash
point per arrival day, and the next run simply runs again. Lake A builds the same six days in one
run without faults. At the end every table of B must equal A's (nothing lost, nothing duplicated), B's row accounting must
reconcile exactly, and B's run log must show each killed run as abandoned and
the runs that recovered.

Kill points: mid-ingestion into bronze (after a batch's append, before its checkpoint), between
silver's MERGE and its accounting (with more than 50 other commits to the silver table before
the retry: the look-back this test once passed by luck), mid-gold after the MERGE of
customer_360, which adds differences to stored sums (a rerun that read the old inputs again
counted the day twice), and mid-replay (after the upsert into silver, before the quarantine
delete). Afterwards every gold table also equals a full recompute from B's silver tables. (A
kill after merchant_daily_kpis' replaceWhere, idempotent by construction, was dropped: a cold
run of about 90 s that no bug had ever needed.)

The lakes hold the tables of ``helpers.WITHOUT_FEATURES`` (no feature tables).
"""

from __future__ import annotations

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
from tests.conftest import CONF, env_for
from tests.integration.helpers import WITHOUT_FEATURES, all_tables, full_recompute, restricted, sigkilled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VOLATILE = ("_ingested_at", "_ingest_date", "_run_id", "run_id", "batch_key", "quarantined_at")


def conf_args(root: Path, raw: Path) -> list[str]:
    # gold built incrementally however small the lake: the kill points in gold are in that path
    return ["--conf", f"lake_root={root}", "--conf", f"paths.raw={raw}", "--conf", "pipeline.gold_rebuild_below_mib=0"]


def run(root: Path, raw: Path, *args: str) -> None:
    assert pipeline_main([*conf_args(root, raw), "--no-summary", *restricted(args, WITHOUT_FEATURES)]) == 0


def replay(root: Path, raw: Path) -> None:
    assert replay_main([*conf_args(root, raw), "--table", "silver.transactions", "--rule", "fx_rate_known"]) == 0


def killed(root: Path, raw: Path, point: str, job: str, *args: str) -> None:
    """Run a job in its own process with LAKEHOUSE_FAULT set; it must die by SIGKILL."""
    extra = ["--no-summary", *restricted(args, WITHOUT_FEATURES)] if job == "pipeline" else [*args]
    sigkilled(point, job, *conf_args(root, raw), *extra)


def busy_writer(spark: SparkSession, path: str, commits: int) -> None:
    """Commit ``commits`` times to the table at ``path`` without changing its rows (as a
    maintenance job or another writer does between a killed run and its retry)."""
    for i in range(commits):
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('lakehouse.test.busy' = '{i}')")


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

    # Lake B: each killed run also recovers what the previous one left.
    new_day(3)
    killed(b, raw, "bronze.after_append:bronze.transactions", "pipeline")
    new_day(4)
    killed(b, raw, "silver.after_merge:silver.transactions", "pipeline")
    lake_b = Lake(env_for(b, f"paths.raw={raw}"), load_tables(CONF))
    busy_writer(spark, lake_b.path("silver.transactions"), 51)
    new_day(5)
    run(b, raw)

    # Day 6: payments processed before their FX rates (quarantined), rates later, then a replay.
    new_day(6)
    run(b, raw, "--layers", "bronze")
    run(b, raw, "--layers", "silver", "--tables", "silver.customers,silver.merchants,silver.transactions")
    quarantined = spark.read.format("delta").load(lake_b.quarantine_path("silver.transactions"))
    assert quarantined.where(F.array_contains("errors", "fx_rate_known")).count() > 0  # the replay below has records to move
    run(b, raw, "--layers", "silver")
    killed(b, raw, "replay.after_upsert:silver.transactions", "replay", "--table", "silver.transactions", "--rule", "fx_rate_known")
    replay(b, raw)
    # customer_360 is incremental here: killed after its MERGE, before the run log
    killed(b, raw, "gold.after_write:gold.customer_360", "pipeline", "--layers", "gold")
    run(b, raw, "--layers", "gold")

    # Lake A: the six days in one uninterrupted run, each day's rates there before its payments
    # (silver and gold do not depend on how the arrivals were batched, nor on a detour through
    # quarantine and replay)
    run(a, raw)

    lake_a = Lake(env_for(a, f"paths.raw={raw}"), load_tables(CONF))
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
    for name in ("gold.customer_360", "gold.merchant_daily_kpis"):
        assert_df_equality(
            spark.read.format("delta").load(lake_b.path(name)),
            full_recompute(spark, lake_b, name),
            ignore_row_order=True,
            ignore_nullable=True,
        )
    log = spark.read.format("delta").load(lake_b.ops_path("run_log"))
    jobs = log.where("table = '*'").groupBy("run_id", "job").agg(F.sort_array(F.collect_set("status")).alias("s")).collect()
    abandoned = [r for r in jobs if r.s == ["abandoned", "started"]]
    assert len(abandoned) == 4, jobs
    assert all(r.s == ["finished", "started"] for r in jobs if r not in abandoned), jobs
    moved = log.where("job = 'replay' AND table = 'silver.transactions' AND status = 'succeeded'").collect()
    assert len(moved) == 1 and moved[0].rows_read > 0  # the recovery finished the interrupted move
