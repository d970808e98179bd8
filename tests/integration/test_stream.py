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
from collections.abc import Callable
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
from tests.conftest import CONF, REPO, env_for, free_port_pair
from tests.integration.helpers import FOR_THE_MODEL, manifest_totals, sigkilled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = ("2026-01-01", "2026-01-02")
STREAM = "bronze.transactions_stream"
LIVE_INPUTS = ("gold.customer_features", "gold.merchant_features", "silver.customers")
FEATURE_TABLES = LIVE_INPUTS  # transaction_features' order


def own_topic(tmp_path: Path, topic: str) -> Path:
    """A copy of the project's conf whose stream table reads ``topic`` (the session's broker is
    shared), with records over 2000 bytes not parsed."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    table = conf / "tables" / "bronze" / "transactions_stream.yaml"
    table.write_text(table.read_text().replace("topic: payments", f"topic: {topic}\n  max_record_bytes: 2000"))
    return conf


def last_run(spark: SparkSession, lake: Lake) -> str:
    """The id of the latest stream run."""
    log = spark.read.format("delta").load(lake.ops_path("run_log")).where("job = 'stream'")
    return log.orderBy(F.col("started_at").desc()).first()["run_id"]


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
    """Two days of payments through the topic into bronze.transactions_stream, silver.transactions
    and the windowed gold tables, the job killed right after its first bronze append (before its
    checkpoint's commit), then right after its first silver MERGE, and run again: bronze holds
    every record once as delivered, silver's accounting equals the generator's manifest (the
    batch path's rules and quarantine, the same numbers) and the windows equal a batch
    recomputation over silver's inserts; a rerun with nothing new commits nothing. Then the same
    payments from the files: bronze parses them as the stream did, none adds or changes a silver
    row, and the reconciliation counts both paths. Then payments later than the watermark: in
    bronze and silver, left out of the windows, counted. Then bad records."""
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
    sigkilled(f"bronze.after_append:{STREAM}", "stream", *args)
    sigkilled("silver.after_merge:silver.transactions", "stream", *args)
    assert stream_main(args) == 0

    want = manifest_totals(spark, env.paths.raw)["transactions"]
    assert sent == want["records"]
    # bronze: every record once, as delivered (the values are the raw lines, each (partition, offset) once)
    stream = spark.read.format("delta").load(lake.path(STREAM))
    lines = payment_lines(spark, env.paths.raw)
    assert_df_equality(
        stream.select(F.col("_kafka.value").alias("value")), lines.select("value"), ignore_row_order=True, ignore_nullable=True
    )
    assert stream.select("_kafka.partition", "_kafka.offset").distinct().count() == sent
    assert stream.where(F.col("_corrupt_record").isNotNull()).count() > 0  # the generator's defects came through
    runs = spark.read.format("delta").load(lake.ops_path("run_log")).where("job = 'stream' AND table = '*'")
    assert sorted(r.status for r in runs.collect()) == ["abandoned"] * 2 + ["finished"] + ["started"] * 3  # the killed runs
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
    # a rerun with nothing new commits nothing
    committed = {n: delta.version(spark, lake.path(n)) for n in (STREAM, "silver.transactions")}
    assert stream_main(args) == 0
    assert {n: delta.version(spark, lake.path(n)) for n in committed} == committed
    business = [c for c in lake.spec("silver.transactions").column_names if c not in ("_source_file", "_ingested_at")]

    # the same payments from the files
    assert pipeline_main([*args, "--layers", "bronze,silver", "--tables", "bronze.transactions,silver.transactions", "--no-summary"]) == 0
    fields = [c for c, _ in lake.spec(STREAM).columns] + ["_rescued_data", "_corrupt_record"]
    files = spark.read.format("delta").load(lake.path("bronze.transactions"))
    assert_df_equality(stream.select(*fields), files.select(*fields), ignore_row_order=True, ignore_nullable=True)
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

    # bad records through the topic: quarantined or rescued as in batch, the stream goes on
    good = json.loads(late[0][2])
    bad = [
        ("C1", "this is not JSON"),
        (good["customer_id"], json.dumps({**good, "transaction_id": "big-1", "note": "x" * 3000})),  # over max_record_bytes (2000)
        (good["customer_id"], json.dumps({**good, "transaction_id": "newfield-1", "loyalty_tier": "gold"})),
        (good["customer_id"], json.dumps({**good, "transaction_id": "badtype-1", "amount": {"value": 12.5}})),
    ]
    produce(((DAYS[1], k, v) for k, v in bad), producer, "payments-silver", Pacer(20_000))
    assert stream_main(args) == 0
    bronze = spark.read.format("delta").load(lake.path(STREAM))
    big = bronze.where(F.col("_kafka.value").contains('"big-1"')).first()
    assert big is not None and len(big["_kafka"]["value"]) > 3000 and big["transaction_id"] is None
    assert big["_corrupt_record"].startswith("record of 3") and "over the limit of 2000" in big["_corrupt_record"]
    quarantine = (
        spark.read.format("delta").load(lake.quarantine_path("silver.transactions")).where(F.col("run_id") == last_run(spark, lake))
    )
    got = quarantine.select(F.get_json_object("record", "$.transaction_id").alias("record_id"), "errors").collect()
    errors = sorted((r.record_id or "", tuple(r.errors)) for r in got)
    assert errors == [("", ("well_formed",)), ("", ("well_formed",)), ("badtype-1", ("amount_valid",))]
    assert quarantine.count() == 3
    row = spark.read.format("delta").load(path).where("transaction_id = 'newfield-1'").first()
    assert row is not None and json.loads(row["extra_fields"]) == {"loyalty_tier": "gold"}


def test_an_unreachable_broker_is_one_clear_error_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=rf"Kafka at 127\.0\.0\.1:{port}: no broker answered"):
        stream_main(["--conf", f"lake_root={tmp_path}", "--conf", f"endpoints.kafka=127.0.0.1:{port}"])
    assert time.monotonic() - t0 < 15


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


def test_scored_as_they_arrive_through_a_kill_and_a_broker_restart_exactly_once(spark: SparkSession, tmp_path: Path) -> None:
    """Features of day 1 and a champion; day 2 through the topic of a broker of its own, to the
    stream job running every layer: killed by SIGKILL mid-stream and started again; the broker
    stopped for 15 s and started again under the running job, which gets SIGTERM once bronze
    holds every record (it finishes its micro-batches and exits 0), then a catch-up run.
    Afterwards silver's accounting equals the generator's manifest, every valid payment has one
    row in the predictions table, with the score batch scoring gives it (point-in-time features
    over the same tables), the model version and the feature tables' versions, and the same
    decision on the topic (at least once); the windows equal their recomputation. Then a
    champion promoted while a scoring query runs scores from its next micro-batch on."""
    port = free_port_pair()
    kenv = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DIR": str(tmp_path / "kafka")}
    broker = f"127.0.0.1:{port}"

    def kafka_sh(action: str) -> None:
        done = subprocess.run(["scripts/kafka.sh", action], cwd=REPO, env=kenv, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    kafka_sh("start")
    root = tmp_path / "lake"
    topic = "payments-faults"
    conf = own_topic(tmp_path, topic)
    # small paced batches of a sparse day, and the generator's arrivals a week late: with the
    # project's 10 minutes, some would be late here (lateness is the silver test's)
    for name in WINDOWED:
        table = conf / "tables" / "gold" / f"{name.split('.')[1]}.yaml"
        table.write_text(table.read_text().replace("watermark: 10m", "watermark: 30d"))
    env = env_for(root, f"endpoints.kafka={broker}")
    lake = Lake(env, load_tables(conf))
    spec = load_model_spec(conf, "fraud")
    args = ["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--conf", f"endpoints.kafka={broker}"]
    job = [sys.executable, "jobs/stream.py", *args, "--trigger", "1s", "--conf", "spark.sql.shuffle.partitions=2"]
    procs: list[subprocess.Popen] = []

    def start_job(name: str) -> subprocess.Popen:
        out = (tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(job, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stderr=out, stdout=out, text=True)
        procs.append(proc)
        return proc

    def wait_for(what: str, cond: Callable[[], bool], proc: subprocess.Popen | None = None, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while not cond():
            assert proc is None or proc.poll() is None, f"the stream job exited {proc.returncode} waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(1)

    def read(path: str) -> DataFrame:
        return spark.read.format("delta").load(path)

    try:
        generate_raw_zone(spark, GeneratorParams(scale=0.005, days=1), env.paths.raw, env.paths.truth)
        assert pipeline_main([*args, "--tables", ",".join(FOR_THE_MODEL), "--no-summary"]) == 0
        frames = {n: read(lake.path(n)) for n in LIVE_INPUTS}
        day1 = transaction_features(read(lake.path("silver.transactions")), *(frames[n] for n in FEATURE_TABLES))
        v1 = register_champion(spark, env, spec, day1.withColumn("label", (F.col("payment_amount") > 60).cast("int")))
        generate_raw_zone(spark, GeneratorParams(scale=0.005, days=2), env.paths.raw, env.paths.truth)
        assert pipeline_main([*args, "--tables", REFERENCES, "--no-summary"]) == 0  # the second day's rates, customers, merchants
        lines = [(r.arrival_date, r.key, r.value) for r in payment_lines(spark, env.paths.raw, [DAYS[1]]).collect()]
        thirds = [lines[: len(lines) // 3], lines[len(lines) // 3 : 2 * len(lines) // 3], lines[2 * len(lines) // 3 :]]
        ensure_topic(broker, topic, 3)
        producer = Producer(producer_config(broker))
        bronze = Path(lake.path(STREAM), "_delta_log")
        decided = Path(predictions_path(lake, spec), "_delta_log")

        first = start_job("first")
        produce(iter(thirds[0]), producer, topic, Pacer(200))
        wait_for("a scored micro-batch", lambda: (decided / f"{1:020d}.json").is_file(), first)
        first.send_signal(signal.SIGKILL)  # mid-stream: the other queries' batches cut anywhere
        first.wait(30)

        second = start_job("second")
        produce(iter(thirds[1]), producer, topic, Pacer(200))
        wait_for("the second third in bronze", lambda: len(list(bronze.glob("*.json"))) >= 3, second)
        kafka_sh("stop")
        time.sleep(15)
        kafka_sh("start")
        produce(iter(thirds[2]), producer, topic, Pacer(200))
        want_rows = len(lines)

        def caught_up() -> bool:
            return read(lake.path(STREAM)).count() >= want_rows and read(predictions_path(lake, spec)).count() > 0

        wait_for("every record in bronze", caught_up, second)
        second.send_signal(signal.SIGTERM)  # silver, windows and scoring still behind bronze
        assert second.wait(240) == 0, (tmp_path / "second.log").read_text()[-3000:]
        assert "stopped between micro-batches" in (tmp_path / "second.log").read_text()
        assert stream_main(args) == 0  # availableNow: the layers behind catch up and stop
        sent = decisions_on(broker, spec.decisions_topic)

        assert read(lake.path(STREAM)).select("_kafka.partition", "_kafka.offset").distinct().count() == want_rows
        want = manifest_totals(spark, env.paths.raw)["transactions"]
        (r,) = reconcile(spark, lake, ["silver.transactions"])
        counts = (r.bronze, r.silver, r.quarantined, r.duplicates)
        assert counts == (want["records"], want["landed"], want["quarantined"], want["duplicates"])
        streamed = read(lake.path("silver.transactions")).where(F.col("_source_file").startswith("kafka://"))
        predictions = read(predictions_path(lake, spec))
        assert predictions.count() == predictions.select("transaction_id").distinct().count()
        ids = {r.transaction_id for r in streamed.collect()}
        assert len(ids) > 100 and {r.transaction_id for r in predictions.collect()} == ids  # stored exactly once
        # scored as batch scoring scores them, over the feature tables' versions the stream read
        frames = {n: read(lake.path(n)) for n in LIVE_INPUTS}
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
        table = {r.transaction_id: r.decision for r in predictions.collect()}
        assert set(sent) >= ids  # emitted at least once, with the stored decision
        assert all({d["decision"] for d in sent[k]} == {table[k]} for k in table)
        assert_windows_recomputed(spark, lake, inserts(spark, lake))

        # a champion promoted while a scoring query runs (this session, the job's checkpoint)
        v2 = register_champion(spark, env, spec, day1.withColumn("label", (F.col("payment_amount") > 40).cast("int")))
        registry.set_alias(spec.name, registry.CHAMPION, v1)
        tr = TableRun(stream_score.predictions_table(spec), datetime.now(timezone.utc))
        every = {"processingTime": "1 second"}
        query, scorer = stream_score.start_scoring(spark, lake, spec, tr, "test-run", every)
        store = stream_score.start_decision_store(spark, lake, spec, tr, "test-run", every, scorer.bootstrap, counts_read=False)
        try:
            registry.set_alias(spec.name, registry.CHAMPION, v2)
            late = late_lines(spark, env.paths.raw, 3, ids, DAYS[1])  # three more payments, new ids
            produce(iter(late), producer, topic, Pacer(20_000))

            def scored_late() -> bool:
                assert query.isActive and store.isActive, query.exception() or store.exception()
                return read(predictions_path(lake, spec)).where(F.col("transaction_id").startswith("late-")).count() >= 3

            wait_for("the late payments scored", scored_late, seconds=120)
        finally:
            query.stop()
            store.stop()
        new = read(predictions_path(lake, spec)).where(F.col("transaction_id").startswith("late-"))
        assert sorted(r.model_version for r in new.collect()) == [v2] * 3
        assert [(old, now) for _, old, now in scorer.switches] == [(None, v1), (v1, v2)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        kafka_sh("stop")
