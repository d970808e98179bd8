"""Replay the generator's payments into a Kafka topic at a set rate, as a payment gateway would.

The raw zone's transaction lines (``<raw>/transactions/arrival_date=<day>/``) are sent in arrival
order, one Kafka record per line, keyed by the payment's customer so that each customer's events
stay in order in one partition. The lines go as they are: the generator's defects (malformed
values, lines that are not JSON, re-sent payments, late events) reach the topic too; a line that
is not JSON has no key and goes to any partition.

    ./spark-submit.sh produce --rate 1000 [--days 2026-01-01,2026-01-02] [--topic payments]

The producer is idempotent (``enable.idempotence``: a retried send is not written twice) and waits
for every record's acknowledgement before it reports. The broker unreachable is a clear error
naming the bootstrap servers within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import SourceError

log = logging.getLogger(__name__)


class Pacer:
    """Hold a sender to ``rate`` records per second on average: after the n-th record it waits
    until ``n / rate`` seconds have passed since the first (so a slow moment is caught up, never
    exceeded by more than one burst of ``burst`` records)."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep, burst: int = 100
    ):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 records per second, got {rate}")
        self.rate, self.clock, self.sleep, self.burst = rate, clock, sleep, burst
        self.start: float | None = None

    def sent(self, n: int) -> None:
        """Called with the number of records sent so far."""
        now = self.clock()
        if self.start is None:
            self.start = now
            return
        if n % self.burst:
            return
        ahead = self.start + n / self.rate - now
        if ahead > 0:
            self.sleep(ahead)


@dataclass
class Produced:
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    by_day: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def payment_lines(spark: SparkSession, raw_root: str, days: Sequence[str] | None = None) -> DataFrame:
    """``(arrival_date, key, value)`` of every transaction line of the raw zone (or of ``days``),
    in arrival order (day, file, line); ``key`` is the line's ``customer_id`` (null when the line
    is not JSON or has none)."""
    lines = spark.read.text(f"{raw_root}/transactions").select(
        F.col("arrival_date").cast("string").alias("arrival_date"),
        F.input_file_name().alias("file"),
        F.monotonically_increasing_id().alias("n"),
        F.col("value"),
    )
    if days:
        lines = lines.where(F.col("arrival_date").isin(list(days)))
    return lines.orderBy("arrival_date", "file", "n").select(
        "arrival_date", F.get_json_object("value", "$.customer_id").alias("key"), "value"
    )


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """librdkafka settings: idempotent, every replica acknowledges, short batching delay."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "client.id": "lakehouse-produce",
        **extra,
    }


def check_reachable(bootstrap: str, timeout: float = 5.0) -> None:
    """Raise a SourceError naming ``bootstrap`` when no broker answers within ``timeout`` seconds."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        # log_level 2: not librdkafka's line per failed connection attempt (every 50 ms), only this error
        settings = {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": int(timeout * 1000), "log_level": 2}
        AdminClient(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise SourceError(f"Kafka at {bootstrap}: no broker answered within {timeout:g}s ({exc.args[0]})") from None


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 10.0) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication 1) unless it exists."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=timeout)
    try:
        futures[topic].result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise SourceError(f"Kafka at {bootstrap}: could not create topic {topic!r}: {exc.args[0]}") from None
    log.info("topic %s created with %d partition(s)", topic, partitions)


def produce(
    rows: Iterable[tuple[str, str | None, str]], producer: Any, topic: str, pacer: Pacer | None = None, progress_every: float = 5.0
) -> Produced:
    """Send ``(arrival_date, key, value)`` rows to ``topic``; wait for every acknowledgement.

    Raises:
        SourceError: a record was not acknowledged (naming the topic and the broker's error).
    """
    out = Produced()
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
            return
        ts = msg.timestamp()[1]
        out.first_ms = ts if out.first_ms is None else min(out.first_ms, ts)
        out.last_ms = ts if out.last_ms is None else max(out.last_ms, ts)

    t0 = last_report = time.monotonic()
    for day, key, value in rows:
        payload = value.encode()
        while True:
            try:
                producer.produce(topic, value=payload, key=key.encode() if key is not None else None, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
        producer.poll(0)
        out.records += 1
        out.bytes += len(payload)
        out.by_day[day] = out.by_day.get(day, 0) + 1
        if pacer is not None:
            pacer.sent(out.records)
        now = time.monotonic()
        if now - last_report >= progress_every:
            log.info("produced %d record(s) to %s, %.0f/s", out.records, topic, out.records / (now - t0))
            last_report = now
    left = producer.flush(60)
    out.seconds = time.monotonic() - t0
    if left or failures:
        raise SourceError(
            f"Kafka topic {topic}: {len(failures) + left} of {out.records} record(s) not acknowledged "
            f"(first: {failures[:1] or 'timed out'})"
        )
    return out


def produce_main(argv: Sequence[str] | None = None) -> int:
    """The ``produce`` job: replay the raw zone's payments into the payments topic."""
    from confluent_kafka import Producer

    from lakehouse.cli import context, parser
    from lakehouse.session import get_spark

    p = parser("Replay the raw zone's payments into a Kafka topic at a set rate.")
    p.add_argument("--rate", type=float, default=1000.0, help="records per second (default 1000)")
    p.add_argument("--days", help="arrival dates to send, comma-separated (default: every day of the raw zone)")
    p.add_argument("--topic", default="payments")
    p.add_argument("--partitions", type=int, default=3, help="partitions of the topic when it has to be created")
    args = p.parse_args(argv)
    ctx = context("produce", args)
    bootstrap = kafka_bootstrap(ctx.env)
    check_reachable(bootstrap)
    ensure_topic(bootstrap, args.topic, args.partitions)
    spark = get_spark(ctx.env, "lakehouse-produce", args.master)
    days = [d.strip() for d in args.days.split(",")] if args.days else None
    rows = ((r.arrival_date, r.key, r.value) for r in payment_lines(spark, ctx.env.paths.raw, days).toLocalIterator())
    out = produce(rows, Producer(producer_config(bootstrap)), args.topic, Pacer(args.rate))
    per_day = ", ".join(f"{d} {n}" for d, n in sorted(out.by_day.items()))
    print(
        f"produced {out.records} payment line(s) ({out.bytes / 2**20:.1f} MiB) to {args.topic} at {bootstrap} "
        f"in {out.seconds:.1f}s ({out.rate:.0f}/s): {per_day}",
        flush=True,
    )
    return 0


def kafka_bootstrap(env: Any, endpoint: str = "kafka") -> str:
    """The bootstrap servers of the environment's ``endpoints.<endpoint>``."""
    servers = env.endpoints.get(endpoint)
    if not servers:
        from lakehouse.errors import ConfigError

        raise ConfigError(env.files[-1], f"endpoints.{endpoint}", "no Kafka bootstrap servers configured (e.g. 127.0.0.1:9092)")
    return str(servers)
