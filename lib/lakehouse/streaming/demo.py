"""The stream demo: the broker, the producer and the stream job for about a minute, then a summary.

    make stream-demo            # after make demo: ./spark-submit.sh stream_demo [--rate 60]

On the lake ``make demo`` built (its silver tables and feature tables, and a champion model):

1. the next arrival day of payments is generated into the raw zone (the batch pipeline is not
   run on it: this day comes only through the topic, so silver, the windows and the decisions
   all see new payments);
2. the Kafka broker starts (``scripts/kafka.sh``), unless one already answers;
3. the stream job starts with micro-batches every 2 s (bronze, silver, windows, scoring) and
   logs its progress every 5 s;
4. the producer replays that day into the topic at ``--rate`` payments a second;
5. when the producer is done and the stream has drained, the stream job gets SIGTERM (it
   finishes its micro-batches and prints its summary: rows per table, late rows, decisions and
   the reconciliation), the broker stops, and the demo prints the accounting: produced = bronze,
   bronze = silver + quarantined + duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lakehouse.cli import context, parser
from lakehouse.errors import LakehouseError
from lakehouse.session import project_root
from lakehouse.streaming.produce import kafka_bootstrap

log = logging.getLogger(__name__)

REPO = project_root()  # jobs/ and scripts/ (under spark-submit this package is loaded from a zip in build/)


REFERENCES = ",".join(f"{layer}.{t}" for layer in ("bronze", "silver") for t in ("customers", "merchants", "fx_rates"))
"""The tables a payment's checks and features read, loaded from the new day's files before it is streamed."""


def _job(name: str, args: Sequence[str], **kw: object) -> subprocess.Popen:
    """``jobs/<name>.py`` in a process of its own, with a JVM of its own: under spark-submit this
    process's PYSPARK_GATEWAY_* would make the child's PySpark join this driver's JVM (where a
    second SparkContext fails to start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY_")}
    env["SPARK_LOCAL_IP"] = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
    return subprocess.Popen([sys.executable, str(REPO / "jobs" / f"{name}.py"), *args], cwd=REPO, env=env, **kw)  # type: ignore[call-overload]


def _answers(bootstrap: str) -> bool:
    from lakehouse.streaming.produce import check_reachable

    try:
        check_reachable(bootstrap)
        return True
    except LakehouseError:
        return False


def topic_records(bootstrap: str, topic: str) -> int:
    """Records the topic holds (the sum of its partitions' end offsets)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lakehouse-stream-demo"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions)
    finally:
        c.close()


def delta_rows(path: str) -> int:
    """Rows of a Delta table (delta-rs: no Spark session for a count)."""
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_dataset().count_rows()


def stream_demo_main(argv: Sequence[str] | None = None) -> int:
    p = parser("The real-time demo: broker, producer and stream job for about a minute, then a summary.")
    p.add_argument("--rate", type=float, default=60.0, help="payments a second the producer sends (default 60)")
    p.add_argument("--trigger", default="2s", help="the stream job's micro-batch interval (default 2s)")
    args = p.parse_args(argv)
    ctx = context("stream_demo", args)
    lake, env = ctx.lake, ctx.env
    if not Path(lake.path("silver.transactions"), "_delta_log").is_dir():
        raise LakehouseError(
            f"no lake at {env.lake_root} (silver.transactions missing): run `make demo` first; it builds the lake and the model"
        )
    forwarded = ["--env", args.env, "--conf-dir", args.conf_dir, *[x for kv in args.conf for x in ("--conf", kv)]]
    ident = json.loads(Path(env.paths.raw, "_manifests", "_generator.json").read_text())
    days = sorted(d.name.split("=", 1)[1] for d in Path(env.paths.raw, "transactions").glob("arrival_date=*"))
    gen = [
        "--scale",
        str(ident["scale"]),
        "--seed",
        str(ident["seed"]),
        "--start-date",
        str(ident["start_date"]),
        "--days",
        str(len(days) + 1),
    ]
    log.info("stream demo: generating arrival day %d (the stream's own)", len(days) + 1)
    if _job("generate_raw", [*forwarded, *gen]).wait() != 0:
        raise LakehouseError("generating the next arrival day failed (see above)")
    new_day = sorted(d.name.split("=", 1)[1] for d in Path(env.paths.raw, "transactions").glob("arrival_date=*"))[-1]
    # the day's FX rates, customers and merchants arrive as files, as every day's do: without
    # them the streamed payments of that day would be quarantined (fx_rate_known, ...)
    log.info("stream demo: loading the day's reference tables (%s)", REFERENCES)
    if _job("pipeline", [*forwarded, "--tables", REFERENCES, "--no-summary", "--conf", "spark.sql.shuffle.partitions=2"]).wait() != 0:
        raise LakehouseError("loading the new day's reference tables failed (see above)")
    bootstrap = kafka_bootstrap(env)
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    kenv = {**os.environ, "KAFKA_PORT": port}
    started_broker = not _answers(bootstrap)
    if started_broker:
        subprocess.run([str(REPO / "scripts" / "kafka.sh"), "start"], cwd=REPO, env=kenv, check=True)
    t0 = time.monotonic()
    stream = _job("stream", [*forwarded, "--trigger", args.trigger])
    try:
        time.sleep(20)  # the stream job's session and queries start
        producer = _job("produce", [*forwarded, "--rate", str(args.rate), "--days", new_day, "--conf", "spark.sql.shuffle.partitions=2"])
        if producer.wait() != 0:
            raise LakehouseError("the producer failed (see above)")
        produced = topic_records(bootstrap, lake.spec("bronze.transactions_stream").source.topic)  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        bronze = lake.path("bronze.transactions_stream")
        while time.monotonic() < deadline and delta_rows(bronze) < produced:
            time.sleep(2)
        time.sleep(3 * 5)  # silver, windows and scoring drain a few micro-batches behind bronze
    finally:
        stream.send_signal(signal.SIGTERM)
        code = stream.wait(timeout=300)
        if started_broker:
            subprocess.run([str(REPO / "scripts" / "kafka.sh"), "stop"], cwd=REPO, env=kenv, check=False)
    rows = delta_rows(bronze)
    lines = [
        "",
        "=" * 78,
        "STREAM DEMO SUMMARY",
        "=" * 78,
        f"  {time.monotonic() - t0:.0f}s, arrival day {new_day} through topic {host}:{port}, stream job exit {code}",
        f"  produced = bronze:  {produced} record(s) in the topic, {rows} row(s) in bronze.transactions_stream   "
        + ("OK" if produced == rows else "MISMATCH"),
        "  bronze = silver + quarantined + duplicates: the stream job's reconciliation above",
        "=" * 78,
    ]
    print("\n".join(lines), flush=True)
    return 0 if code == 0 and produced == rows else 1
