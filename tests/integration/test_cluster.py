"""The same jobs on a real Spark standalone cluster (master + 2 workers on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import load_tables
from lakehouse.pipeline.generate import read_manifests
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for

pytestmark = pytest.mark.integration

PORT = 7177


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "LAKEHOUSE_CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
        "SPARK_MASTER_PORT": str(PORT),
        "SPARK_MASTER_WEBUI_PORT": "8180",
        "SPARK_MASTER_URL": f"spark://127.0.0.1:{PORT}",
    }
    up = subprocess.run(["scripts/standalone-cluster.sh", "start", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    yield env
    subprocess.run(["scripts/standalone-cluster.sh", "stop"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["./spark-submit.sh", "--env", "cluster", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_pipeline_runs_unchanged_on_a_standalone_cluster(spark: SparkSession, cluster: dict[str, str], tmp_path: Path) -> None:
    env = {**cluster, "LAKEHOUSE_ROOT": str(tmp_path)}
    gen = submit(env, "generate_raw", "--scale", "0.005", "--days", "2")
    assert gen.returncode == 0, gen.stderr[-3000:]
    run = submit(env, "pipeline", "--conf", "spark.sql.shuffle.partitions=4")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MISMATCH" not in run.stdout and run.stdout.count(" OK") == 5, run.stdout
    # the executors ran on the cluster's workers
    apps = list(Path(cluster["LAKEHOUSE_CLUSTER_DIR"], "work").glob("app-*"))
    assert len(apps) == 2, apps
    lake = Lake(env_for(tmp_path), load_tables(CONF))
    manifests = read_manifests(spark, lake.env.paths.raw).values()
    landed = sum(m["sources"]["transactions"]["expected"]["landed"] for m in manifests)
    assert spark.read.format("delta").load(lake.path("silver.transactions")).count() == landed
