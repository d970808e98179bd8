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


def free_port_pair() -> int:
    """A port p on 127.0.0.1 such that p and p + 1 are free (a broker and its controller)."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (scripts/kafka.sh) on 127.0.0.1 for the session: its bootstrap servers."""
    import subprocess

    port = free_port_pair()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DIR": str(tmp_path_factory.mktemp("kafka"))}
    up = subprocess.run(["scripts/kafka.sh", "start"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run(["scripts/kafka.sh", "stop"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
