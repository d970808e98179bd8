"""Kafka -> bronze with a real broker (scripts/kafka.sh): the producer replays the raw zone's
payments into a topic; the stream job appends every record to bronze.transactions_stream
exactly once, parsed as the file path parses the same lines, across a rerun and a SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from confluent_kafka import Producer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.errors import SourceError
from lakehouse.io import delta
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.streaming.jobs import stream_main
from lakehouse.streaming.produce import Pacer, ensure_topic, payment_lines, produce, producer_config
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for
from tests.integration.helpers import sigkilled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = ("2026-01-01", "2026-01-02")
STREAM = "bronze.transactions_stream"


def send(spark: SparkSession, raw: str, bootstrap: str, day: str) -> int:
    rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, raw, [day]).toLocalIterator())
    return produce(rows, Producer(producer_config(bootstrap)), "payments", Pacer(20_000)).records


def test_the_topic_lands_in_bronze_once_parsed_as_the_files_are(spark: SparkSession, kafka: str, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    env = env_for(root, f"endpoints.kafka={kafka}")
    lake = Lake(env, load_tables(CONF))
    raw = env.paths.raw
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), raw, env.paths.truth)
    args = ["--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}"]
    ensure_topic(kafka, "payments", 3)
    sent = send(spark, raw, kafka, DAYS[0])
    assert stream_main(args) == 0
    stream = spark.read.format("delta").load(lake.path(STREAM))
    lines = payment_lines(spark, raw, [DAYS[0]])
    assert stream.count() == sent == lines.count()
    # every record once, as delivered: the values are the raw lines, each (partition, offset) once
    assert_df_equality(
        stream.select(F.col("_kafka.value").alias("value")), lines.select("value"), ignore_row_order=True, ignore_nullable=True
    )
    assert stream.select("_kafka.partition", "_kafka.offset").distinct().count() == sent
    # parsed as the file path parses the same lines (bronze.transactions of the same day)
    assert pipeline_main([*args, "--layers", "bronze", "--tables", "bronze.transactions", "--no-summary"]) == 0
    fields = [c for c, _ in lake.spec(STREAM).columns] + ["_rescued_data", "_corrupt_record"]
    files = spark.read.format("delta").load(lake.path("bronze.transactions")).where(F.col("_arrival_date") == DAYS[0])
    assert_df_equality(stream.select(*fields), files.select(*fields), ignore_row_order=True, ignore_nullable=True)
    assert stream.where(F.col("_corrupt_record").isNotNull()).count() > 0  # the generator's defects came through

    # a rerun with nothing new appends nothing
    version = delta.version(spark, lake.path(STREAM))
    assert stream_main(args) == 0
    assert delta.version(spark, lake.path(STREAM)) == version

    # the next day, killed right after its append (before the checkpoint's commit), then rerun
    sent += send(spark, raw, kafka, DAYS[1])
    sigkilled(f"bronze.after_append:{STREAM}", "stream", *args)
    assert stream_main(args) == 0
    stream = spark.read.format("delta").load(lake.path(STREAM))
    assert stream.count() == sent == payment_lines(spark, raw).count()
    assert stream.select("_kafka.partition", "_kafka.offset").distinct().count() == sent
    log = spark.read.format("delta").load(lake.ops_path("run_log")).where("job = 'stream' AND table = '*'")
    statuses = sorted(r.status for r in log.collect())
    assert statuses == ["abandoned"] + ["finished"] * 3 + ["started"] * 4  # the killed run is marked abandoned


def test_an_unreachable_broker_is_one_clear_error_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=rf"Kafka at 127\.0\.0\.1:{port}: no broker answered"):
        stream_main(["--conf", f"lake_root={tmp_path}", "--conf", f"endpoints.kafka=127.0.0.1:{port}"])
    assert time.monotonic() - t0 < 15


def test_a_running_stream_stops_on_sigterm_after_committing_its_batch(spark: SparkSession, kafka: str, tmp_path: Path) -> None:
    """``--trigger 1s`` keeps the job running; SIGTERM lets the running micro-batch commit, then
    the job exits 0 with every record produced in bronze once."""
    root = tmp_path / "lake"
    env = env_for(root, f"endpoints.kafka={kafka}")
    lake = Lake(env, load_tables(CONF))
    topic = "payments-sigterm"  # a topic of its own: the session's broker is shared
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=1), env.paths.raw, env.paths.truth)
    ensure_topic(kafka, topic, 3)
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    table = conf / "tables" / "bronze" / "transactions_stream.yaml"
    table.write_text(table.read_text().replace("topic: payments", f"topic: {topic}"))
    cmd = [sys.executable, "jobs/stream.py", "--conf-dir", str(conf), "--conf", f"lake_root={root}"]
    cmd += ["--conf", f"endpoints.kafka={kafka}", "--trigger", "1s", "--conf", "spark.sql.shuffle.partitions=2"]
    log_file = tmp_path / "stream.log"
    with log_file.open("w") as log_out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stderr=log_out, text=True)
    try:
        rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, env.paths.raw).toLocalIterator())
        sent = produce(rows, Producer(producer_config(kafka)), topic, Pacer(20_000)).records
        deadline = time.monotonic() + 240
        path = Path(lake.path(STREAM))
        while time.monotonic() < deadline and not (path / "_delta_log").is_dir():
            assert proc.poll() is None, log_file.read_text()[-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log_file.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert "stopped between micro-batches" in err
    if spark.read.format("delta").load(str(path)).count() < sent:  # stopped before the topic's end: the rest on the next run
        assert stream_main(["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}"]) == 0
    stream = spark.read.format("delta").load(str(path))
    assert stream.count() == sent
    assert stream.select("_kafka.partition", "_kafka.offset").distinct().count() == sent
