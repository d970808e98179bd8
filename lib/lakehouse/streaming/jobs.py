"""The ``stream`` job: Kafka topics into their bronze tables, as one streaming query per table.

    ./spark-submit.sh stream                          # catch up (trigger availableNow) and stop
    ./spark-submit.sh stream --trigger 5s             # micro-batches every 5 s until SIGTERM

With ``availableNow`` the job is an incremental batch job: it reads every record the topic
holds past the checkpoint, in micro-batches of at most ``maxOffsetsPerTrigger`` records (the
table's ``source.options``), and stops. With a processing-time trigger it runs until SIGTERM or
Ctrl-C, then lets the running micro-batch finish and commit, and stops. Progress (rows in, rate,
records behind the latest offsets) is logged from the queries' progress events.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.cli import add_wait, context, parser
from lakehouse.errors import LakehouseError
from lakehouse.leases import leased
from lakehouse.runlog import RunLog, TableRun
from lakehouse.session import get_spark
from lakehouse.streaming import bronze as kafka_bronze
from lakehouse.streaming.produce import check_reachable
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

_INTERVAL = re.compile(r"([1-9][0-9]*)(ms|s|m)")


def trigger_of(text: str) -> dict[str, Any]:
    """``available-now`` -> ``{"availableNow": True}``; ``5s`` / ``500ms`` / ``1m`` -> a processing-time trigger."""
    if text == "available-now":
        return {"availableNow": True}
    m = _INTERVAL.fullmatch(text.strip())
    if not m:
        raise ValueError(f"--trigger {text!r} is neither available-now nor an interval such as 5s, 500ms or 1m")
    unit = {"ms": "milliseconds", "s": "seconds", "m": "minutes"}[m.group(2)]
    return {"processingTime": f"{m.group(1)} {unit}"}


def start_bronze(spark: SparkSession, lake: Lake, name: str, tr: TableRun, run_id: str, trigger: dict[str, Any]) -> StreamingQuery:
    """Start the query that appends ``name``'s topic to its bronze table."""
    spec = lake.spec(name)
    assert spec.source is not None and spec.source.topic is not None
    records = kafka_bronze.kafka_reader(spark, kafka_bronze.bootstrap_of(lake, spec), spec.source.topic, spec.source.options)
    rows = kafka_bronze.as_bronze(records, spec, run_id)
    return (
        rows.writeStream.queryName(f"bronze_{spec.short_name}")
        .foreachBatch(lambda df, batch_id: kafka_bronze.append_batch(spark, lake, spec, df, batch_id, tr, run_id))
        .option("checkpointLocation", lake.checkpoint("bronze", name))
        .trigger(**trigger)
        .start()
    )


def describe(progress: Any) -> str:
    """One line of a query's last progress: rows, rates, records behind the topic's end."""
    if progress is None:
        return "no batch yet"
    behind = ""
    for src in progress.sources:
        lag = (src.metrics or {}).get("maxOffsetsBehindLatest")
        if lag is not None:
            behind = f", up to {lag} record(s) behind per partition"
    return (
        f"batch {progress.batchId}: {progress.numInputRows} row(s), "
        f"in {progress.inputRowsPerSecond:.0f}/s, processed {progress.processedRowsPerSecond:.0f}/s{behind}"
    )


def run_queries(queries: dict[str, StreamingQuery], stop: threading.Event, every: float = 5.0) -> None:
    """Wait for the queries: until they stop by themselves (availableNow), or until ``stop`` is
    set, then stop each between micro-batches (the running one finishes and commits first).
    Logs each query's progress every ``every`` seconds. A query that failed raises its error."""
    last = time.monotonic()
    while any(q.isActive for q in queries.values()):
        if stop.is_set():
            for name, q in queries.items():
                deadline = time.monotonic() + 120
                while q.isActive and q.status.get("isTriggerActive") and time.monotonic() < deadline:
                    time.sleep(0.05)
                q.stop()
                log.info("%s: stopped between micro-batches", name)
            break
        if time.monotonic() - last >= every:
            for name, q in queries.items():
                log.info("%s: %s", name, describe(q.lastProgress and _Progress(q.lastProgress)))
            last = time.monotonic()
        time.sleep(0.2)
    for name, q in queries.items():
        err = q.exception()
        if err is not None:
            raise LakehouseError(f"{name}: the streaming query failed: {str(err).splitlines()[0][:500]}")


class _Progress:
    """Attribute access over a progress dict (``StreamingQuery.lastProgress``)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.batchId = d.get("batchId")
        self.numInputRows = d.get("numInputRows", 0)
        self.inputRowsPerSecond = d.get("inputRowsPerSecond") or 0.0
        self.processedRowsPerSecond = d.get("processedRowsPerSecond") or 0.0
        self.sources = [_Source(s) for s in d.get("sources", [])]


class _Source:
    def __init__(self, d: dict[str, Any]) -> None:
        self.metrics = d.get("metrics") or {}


def stream_main(argv: Sequence[str] | None = None) -> int:
    """Parse the job's arguments and run the stream tables' queries."""
    p = parser("Stream Kafka topics into their bronze tables.")
    p.add_argument("--tables", default="", help="comma-separated stream tables (default: every table with a kafka source)")
    p.add_argument("--trigger", default="available-now", help="available-now (catch up and stop) or an interval: 5s, 500ms, 1m")
    add_wait(p, 0.0)
    args = p.parse_args(argv)
    ctx = context("stream", args)
    try:
        trigger = trigger_of(args.trigger)
    except ValueError as exc:
        p.error(str(exc))
    known = [s.name for s in ctx.lake.streams()]
    names = [t for t in args.tables.split(",") if t] or known
    for n in names:
        ctx.lake.spec(n)
        if n not in known:
            p.error(f"{n} is not a stream table (stream tables: {', '.join(known) or 'none'}); the pipeline job builds it")
    for n in names:  # the broker unreachable: one clear line within seconds, before Spark starts
        check_reachable(kafka_bronze.bootstrap_of(ctx.lake, ctx.lake.spec(n)))
    spark = get_spark(ctx.env, "lakehouse-stream", args.master)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runlog = RunLog(spark, ctx.lake, "stream", ctx.run_id, args.run_date)
    with leased(spark, ctx.lake, ctx.run_id, "stream", names, wait=args.wait):
        runlog.begin()
        runs = {n: runlog.start(n) for n in names}
        try:
            queries = {n: start_bronze(spark, ctx.lake, n, runs[n], ctx.run_id, trigger) for n in names}
            run_queries(queries, stop)
        except Exception as exc:
            for tr in runs.values():
                runlog.finish(tr, "failed", f"{type(exc).__name__}: {exc}")
            runlog.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        for tr in runs.values():
            runlog.finish(tr)
        runlog.end()
    for n, tr in runs.items():
        print(f"{n}: {tr.rows_inserted} record(s) appended", flush=True)
    return 0
