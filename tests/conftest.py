"""One SparkSession for the whole test run (local[2], UI off, few shuffle partitions, Delta)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import EnvConfig, load_env
from lakehouse.session import get_spark

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def env_for(root: Path | str, *overrides: str) -> EnvConfig:
    """The local environment with its lake under ``root``."""
    return load_env(CONF, "local", [f"lake_root={root}", *overrides])


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    env = env_for(tmp_path_factory.mktemp("session-lake"))
    session = get_spark(
        env,
        "lakehouse-tests",
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "1",
            "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
            "spark.driver.memory": "3g",
        },
    )
    yield session
    session.stop()
