"""The real-time path with a real broker (scripts/kafka.sh): the producer replays the raw zone's
payments into a topic; the stream job appends every record to bronze.transactions_stream
exactly once, parsed as the file path parses the same lines, across a rerun and a SIGKILL, and
upserts them into silver.transactions with the batch path's rules: one row per payment, whichever
path brought it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from confluent_kafka import Consumer, Producer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import EnvConfig, load_tables
from lakehouse.errors import SourceError
from lakehouse.features.payments import transaction_features
from lakehouse.io import delta
from lakehouse.ml import registry
from lakehouse.ml.lifecycle import log_and_register
from lakehouse.ml.score import load, predictions_path, score
from lakehouse.ml.spec import ModelSpec, load_model_spec
from lakehouse.ml.train import fit
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.pipeline.summary import reconcile
from lakehouse.runlog import TableRun
from lakehouse.streaming import gold as stream_gold
from lakehouse.streaming import score as stream_score
from lakehouse.streaming.jobs import stream_main
from lakehouse.streaming.produce import Pacer, ensure_topic, payment_lines, produce, producer_config
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for
from tests.integration.helpers import FOR_THE_MODEL, manifest_totals, sigkilled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = ("2026-01-01", "2026-01-02")
STREAM = "bronze.transactions_stream"
LIVE_INPUTS = ("gold.customer_features", "gold.merchant_features", "silver.customers")
FEATURE_TABLES = LIVE_INPUTS  # transaction_features' order


def send(spark: SparkSession, raw: str, bootstrap: str, day: str) -> int:
    rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, raw, [day]).toLocalIterator())
    return produce(rows, Producer(producer_config(bootstrap)), "payments", Pacer(20_000)).records


def test_the_topic_lands_in_bronze_once_parsed_as_the_files_are(spark: SparkSession, kafka: str, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    env = env_for(root, f"endpoints.kafka={kafka}")
    lake = Lake(env, load_tables(CONF))
    raw = env.paths.raw
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), raw, env.paths.truth)
    args = ["--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}", "--layers", "bronze"]
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
    assert pipeline_main([*args[:4], "--layers", "bronze", "--tables", "bronze.transactions", "--no-summary"]) == 0
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


def own_topic(tmp_path: Path, topic: str) -> Path:
    """A copy of the project's conf whose stream table reads ``topic`` (the session's broker is shared)."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    table = conf / "tables" / "bronze" / "transactions_stream.yaml"
    table.write_text(table.read_text().replace("topic: payments", f"topic: {topic}"))
    return conf


REFERENCES = "bronze.customers,bronze.merchants,bronze.fx_rates,silver.customers,silver.merchants,silver.fx_rates"


WINDOWED = ("gold.customer_velocity", "gold.merchant_minute")


def inserts(spark: SparkSession, lake: Lake) -> DataFrame:
    """silver.transactions' inserted rows, as its change data feed holds them (the windows' events)."""
    cdf = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(lake.path("silver.transactions"))
    return cdf.where("_change_type = 'insert'").drop("_change_type", "_commit_version", "_commit_timestamp")


def assert_windows_recomputed(spark: SparkSession, lake: Lake, events: DataFrame) -> None:
    for name in WINDOWED:
        spec = lake.spec(name)
        table = spark.read.format("delta").load(lake.path(name))
        assert_df_equality(table, stream_gold.windows(spec, events), ignore_row_order=True, ignore_nullable=True)


def late_lines(spark: SparkSession, raw: str, n: int, valid: set[str], day: str = DAYS[0]) -> list[tuple[str, str, str]]:
    """``n`` payments of ``day`` that silver holds (``valid`` ids), with new ids, at the day's
    earliest event time."""
    values = []
    for r in payment_lines(spark, raw, [day]).collect():
        try:
            values.append(json.loads(r.value))
        except ValueError:  # the generator's truncated lines
            continue
    good = [v for v in values if isinstance(v, dict) and v.get("transaction_id") in valid]
    first = min(v["event_time"] for v in good if isinstance(v.get("event_time"), str) and v["event_time"].startswith(day))
    late = [{**v, "transaction_id": f"late-{i}", "event_time": first} for i, v in enumerate(good[:n])]
    return [(day, v["customer_id"], json.dumps(v)) for v in late]


def test_the_stream_feeds_silver_as_the_files_do_and_windows_as_a_batch_recompute(spark: SparkSession, kafka: str, tmp_path: Path) -> None:
    """Two days of payments through the topic into silver.transactions and the windowed gold
    tables, the job killed right after its first silver MERGE and rerun: silver's accounting
    equals the generator's manifest (the batch path's rules and quarantine, the same numbers) and
    the windows equal a batch recomputation over silver's inserts. Then the same payments from
    the files: none adds or changes a row, and the reconciliation counts both paths. Then
    payments later than the watermark: in bronze and silver, left out of the windows, counted."""
    root = tmp_path / "lake"
    conf = own_topic(tmp_path, "payments-silver")
    env = env_for(root, f"endpoints.kafka={kafka}")
    lake = Lake(env, load_tables(conf))
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), env.paths.raw, env.paths.truth)
    args = ["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}"]
    assert pipeline_main([*args, "--layers", "bronze,silver", "--tables", REFERENCES, "--no-summary"]) == 0
    ensure_topic(kafka, "payments-silver", 3)
    producer = Producer(producer_config(kafka))
    rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, env.paths.raw).toLocalIterator())
    sent = produce(rows, producer, "payments-silver", Pacer(20_000)).records
    sigkilled("silver.after_merge:silver.transactions", "stream", *args)
    assert stream_main(args) == 0

    want = manifest_totals(spark, env.paths.raw)["transactions"]
    assert sent == want["records"]
    (r,) = reconcile(spark, lake, ["silver.transactions"])
    assert (r.bronze, r.streamed, r.silver, r.quarantined, r.duplicates) == (
        want["records"],
        want["records"],
        want["landed"],
        want["quarantined"],
        want["duplicates"],
    )
    assert_windows_recomputed(spark, lake, inserts(spark, lake))
    path = lake.path("silver.transactions")
    streamed_version = delta.version(spark, path)
    business = [c for c in lake.spec("silver.transactions").column_names if c not in ("_source_file", "_ingested_at")]

    # the same payments from the files
    assert pipeline_main([*args, "--layers", "bronze,silver", "--tables", "bronze.transactions,silver.transactions", "--no-summary"]) == 0
    before = spark.read.format("delta").option("versionAsOf", streamed_version).load(path).select(*business)
    after = spark.read.format("delta").load(path).select(*business)
    assert_df_equality(after, before, ignore_row_order=True)
    (r,) = reconcile(spark, lake, ["silver.transactions"])
    assert (r.bronze, r.streamed, r.silver, r.quarantined, r.duplicates) == (
        2 * want["records"],
        want["records"],
        want["landed"],
        2 * want["quarantined"],
        2 * want["duplicates"] + want["landed"],
    )

    # payments later than the watermark
    valid = {r.transaction_id for r in spark.read.format("delta").load(path).select("transaction_id").collect()}
    late = late_lines(spark, env.paths.raw, 5, valid)
    produce(iter(late), producer, "payments-silver", Pacer(20_000))
    assert stream_main(args) == 0
    assert spark.read.format("delta").load(lake.path(STREAM)).where(F.col("transaction_id").startswith("late-")).count() == 5
    assert spark.read.format("delta").load(path).where(F.col("transaction_id").startswith("late-")).count() == 5
    assert_windows_recomputed(spark, lake, inserts(spark, lake).where(~F.col("transaction_id").startswith("late-")))
    metrics = spark.read.format("delta").load(lake.ops_path("quality_metrics")).where("job = 'stream' AND rule = 'late_events'")
    last = metrics.orderBy(F.col("recorded_at").desc()).limit(len(WINDOWED))
    # counted once per window an event falls in: 10 sliding windows of customer_velocity, 1 tumbling
    assert sorted((m.table, m.failed) for m in last.collect()) == [("gold.customer_velocity", 50), ("gold.merchant_minute", 5)]


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
    conf = own_topic(tmp_path, topic)
    cmd = [sys.executable, "jobs/stream.py", "--conf-dir", str(conf), "--conf", f"lake_root={root}"]
    cmd += ["--conf", f"endpoints.kafka={kafka}", "--layers", "bronze", "--trigger", "1s", "--conf", "spark.sql.shuffle.partitions=2"]
    log_file = tmp_path / "stream.log"
    with log_file.open("w") as log_out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stderr=log_out, text=True)
    try:
        rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, env.paths.raw).toLocalIterator())
        sent = produce(rows, Producer(producer_config(kafka)), topic, Pacer(20_000)).records
        deadline = time.monotonic() + 240
        path = Path(lake.path(STREAM))
        # version 0 creates the table before the query starts; version 1 is the first append
        while time.monotonic() < deadline and not (path / "_delta_log" / f"{1:020d}.json").is_file():
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
        assert (
            stream_main(
                ["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}", "--layers", "bronze"]
            )
            == 0
        )
    stream = spark.read.format("delta").load(str(path))
    assert stream.count() == sent
    assert stream.select("_kafka.partition", "_kafka.offset").distinct().count() == sent


def register_champion(spark: SparkSession, env: EnvConfig, spec: ModelSpec, train: DataFrame) -> str:
    """Fit the model's MLlib pipeline on ``train`` (any two-class ``label``), register it and make
    it the champion, as the training job does (without its evaluation)."""
    import mlflow

    _, artifacts = registry.configure(env)
    with mlflow.start_run(experiment_id=registry.experiment_id(spec.name, artifacts)) as run:
        mv = log_and_register(spec, fit(train, spec), run.info.run_id)
    registry.set_alias(spec.name, registry.CHAMPION, mv.version)
    return str(mv.version)


def decisions_on(kafka: str, topic: str) -> dict[str, list[dict]]:
    """Every decision record of ``topic``, by payment id."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"test-{time.time()}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: dict[str, list[dict]] = {}
    idle = time.monotonic()
    while time.monotonic() - idle < 5:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        idle = time.monotonic()
        got.setdefault(msg.key().decode(), []).append(json.loads(msg.value()))
    consumer.close()
    return got


def test_payments_are_scored_as_they_arrive_as_batch_scoring_scores_them(spark: SparkSession, kafka: str, tmp_path: Path) -> None:
    """Features of day 1 and a champion; day 2 through the topic: every valid payment decided on
    the decisions topic and once in the predictions table, with the score batch scoring gives
    the same payment (point-in-time features over the same tables), the model version and the
    feature tables' versions. A champion promoted while the query runs scores from the next
    micro-batch on."""
    root = tmp_path / "lake"
    conf = own_topic(tmp_path, "payments-score")
    model_file = conf / "models" / "fraud.yaml"
    model_file.write_text(model_file.read_text().replace("topic: fraud-decisions", "topic: decisions-score"))
    env = env_for(root, f"endpoints.kafka={kafka}")
    lake = Lake(env, load_tables(conf))
    spec = load_model_spec(conf, "fraud")
    args = ["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={kafka}"]
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=1), env.paths.raw, env.paths.truth)
    assert pipeline_main([*args, "--tables", ",".join(FOR_THE_MODEL), "--no-summary"]) == 0
    frames = {n: spark.read.format("delta").load(lake.path(n)) for n in LIVE_INPUTS}
    day1 = transaction_features(spark.read.format("delta").load(lake.path("silver.transactions")), *(frames[n] for n in FEATURE_TABLES))
    v1 = register_champion(spark, env, spec, day1.withColumn("label", (F.col("payment_amount") > 60).cast("int")))

    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), env.paths.raw, env.paths.truth)
    ensure_topic(kafka, "payments-score", 3)
    producer = Producer(producer_config(kafka))
    rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, env.paths.raw, [DAYS[1]]).toLocalIterator())
    produce(rows, producer, "payments-score", Pacer(20_000))
    assert stream_main([*args, "--layers", "bronze,silver,score"]) == 0

    predictions = spark.read.format("delta").load(predictions_path(lake, spec))
    streamed = spark.read.format("delta").load(lake.path("silver.transactions")).where(F.col("_source_file").startswith("kafka://"))
    assert predictions.count() == streamed.count() > 0  # every valid payment once
    expected = score(load(spec, version=v1), transaction_features(streamed, *(frames[n] for n in FEATURE_TABLES)))
    assert_approx_df_equality(
        predictions.select("transaction_id", "score", "decision", "model_version"),
        expected.select("transaction_id", "score", "decision", F.lit(v1).alias("model_version")),
        precision=1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    versions = {n: delta.version(spark, lake.path(n)) for n in LIVE_INPUTS}
    assert {tuple(sorted(r.feature_versions.items())) for r in predictions.select("feature_versions").collect()} == {
        tuple(sorted(versions.items()))
    }
    sent = decisions_on(kafka, "decisions-score")
    table = {r.transaction_id: r.decision for r in predictions.collect()}
    assert set(sent) == set(table)  # at least once on the topic, and the same decisions
    assert all({d["decision"] for d in sent[k]} == {table[k]} for k in table)

    # a champion promoted while the query runs
    v2 = register_champion(spark, env, spec, day1.withColumn("label", (F.col("payment_amount") > 40).cast("int")))
    registry.set_alias(spec.name, registry.CHAMPION, v1)
    tr = TableRun(stream_score.predictions_table(spec), datetime.now(timezone.utc))
    query, scorer = stream_score.start_scoring(spark, lake, spec, tr, "test-run", {"processingTime": "1 second"})
    try:
        registry.set_alias(spec.name, registry.CHAMPION, v2)
        valid = {r.transaction_id for r in streamed.select("transaction_id").collect()}
        late = late_lines(spark, env.paths.raw, 3, valid, DAYS[1])  # three more payments, new ids
        produce(iter(late), producer, "payments-score", Pacer(20_000))
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and spark.read.format("delta").load(predictions_path(lake, spec)).where(F.col("transaction_id").startswith("late-")).count() < 3
        ):
            assert query.isActive, query.exception()
            time.sleep(1)
    finally:
        query.stop()
    new = spark.read.format("delta").load(predictions_path(lake, spec)).where(F.col("transaction_id").startswith("late-"))
    assert sorted(r.model_version for r in new.collect()) == [v2] * 3
    assert [(old, now) for _, old, now in scorer.switches] == [(None, v1), (v1, v2)]
