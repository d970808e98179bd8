"""The same jobs on a real Spark standalone cluster (master + 2 workers on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone, read_manifests
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for
from tests.integration.helpers import all_tables

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORT = 7177
# What the cluster builds: bronze and silver of the payments and the three sources silver.transactions
# reads (FX rates, customers, merchants). The chargebacks and the gold marts add Spark SQL over the
# same engine, and cost; local mode builds them in test_pipeline.
ON_THE_CLUSTER = tuple(f"{layer}.{s}" for layer in ("bronze", "silver") for s in ("customers", "fx_rates", "merchants", "transactions"))
# Written by the run, not derived from the data: the moment and the run that wrote a row.
RUN_COLUMNS = ("_ingested_at", "_ingest_date", "_run_id", "run_id", "batch_key", "quarantined_at")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "LAKEHOUSE_CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
        "SPARK_MASTER_PORT": str(PORT),
        "SPARK_MASTER_WEBUI_PORT": "8180",
        "SPARK_MASTER_URL": f"spark://127.0.0.1:{PORT}",
    }
    packed = subprocess.run(["scripts/pack-pyenv.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert packed.returncode == 0, packed.stderr
    up = subprocess.run(["scripts/standalone-cluster.sh", "start", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    yield env
    subprocess.run(["scripts/standalone-cluster.sh", "stop"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def submit(env: dict[str, str], env_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["./spark-submit.sh", "--env", env_name, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def comparable(frame: DataFrame) -> DataFrame:
    """``frame`` without the columns a run stamps (time, run id); a quarantined record's JSON
    loses its ingestion time the same way."""
    out = frame.drop(*RUN_COLUMNS)
    if "record" in out.columns:
        out = out.withColumn("record", F.regexp_replace("record", r',?"_ingested_at":"[^"]*"', ""))
    return out.select(sorted(out.columns))


def test_pipeline_on_a_standalone_cluster_builds_the_tables_local_mode_builds(
    spark: SparkSession, cluster: dict[str, str], tmp_path: Path
) -> None:
    on_cluster, local = tmp_path / "cluster-lake", tmp_path / "local-lake"
    cluster_lake = Lake(env_for(on_cluster), load_tables(CONF))
    raw = cluster_lake.env.paths.raw
    # the raw zone is the test's input, not what it tests: generated here, in the test's session
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), raw, cluster_lake.env.paths.truth)
    env = {**cluster, "LAKEHOUSE_ROOT": str(on_cluster)}
    # the cluster environment's parallelism is sized for large data (512 shuffle partitions, 8
    # snapshot partitions): a lake this small gets a few of each
    small = ["spark.sql.shuffle.partitions=4", "spark.default.parallelism=4", "spark.databricks.delta.snapshotPartitions=2"]
    tables = ["--tables", ",".join(ON_THE_CLUSTER)]
    run = submit(env, "cluster", "pipeline", *tables, *[a for c in small for a in ("--conf", c)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MISMATCH" not in run.stdout and run.stdout.count(" OK") == 4, run.stdout
    # the executors ran on the cluster's workers, each with the packed environment unpacked
    apps = list(Path(cluster["LAKEHOUSE_CLUSTER_DIR"], "work").glob("app-*"))
    assert len(apps) == 1, apps
    pythons = list(Path(cluster["LAKEHOUSE_CLUSTER_DIR"], "work").glob("app-*/*/environment/bin/python"))
    assert len(pythons) == 2, pythons  # 2 executors

    # the same job in local mode (this test's session) on the same raw zone
    assert pipeline_main(["--conf", f"lake_root={local}", "--conf", f"paths.raw={raw}", "--no-summary", *tables]) == 0
    local_lake = Lake(env_for(local, f"paths.raw={raw}"), load_tables(CONF))

    manifests = read_manifests(spark, raw).values()
    landed = sum(m["sources"]["transactions"]["expected"]["landed"] for m in manifests)
    assert spark.read.format("delta").load(cluster_lake.path("silver.transactions")).count() == landed
    compared = 0
    for name, path in all_tables(cluster_lake):
        if name not in ON_THE_CLUSTER and name.replace("quarantine.", "silver.") not in ON_THE_CLUSTER:
            assert not Path(path).exists(), name
            continue
        expected = comparable(spark.read.format("delta").load(dict(all_tables(local_lake))[name]))
        actual = comparable(spark.read.format("delta").load(path))
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, underline_cells=True)
        compared += 1
    assert compared == 12  # 4 bronze, 4 silver, 4 quarantine
