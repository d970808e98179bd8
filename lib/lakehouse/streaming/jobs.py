"""The ``stream`` job: Kafka topics into their bronze tables, on into the silver tables they
feed (``streamed_from``), and into the windowed gold tables over those (``stream:``), one
streaming query per table.

    ./spark-submit.sh stream                          # catch up (trigger availableNow) and stop
    ./spark-submit.sh stream --trigger 5s             # micro-batches every 5 s until SIGTERM
    ./spark-submit.sh stream --layers bronze          # the topics into bronze only

With ``availableNow`` the job is an incremental batch job, layer after layer: it reads every
record the topic holds past the checkpoint, in micro-batches of at most ``maxOffsetsPerTrigger``
records (the table's ``source.options``); then the silver queries absorb what bronze appended,
then the window queries what silver inserted; the run ends with the silver tables'
reconciliation. With a processing-time trigger every query runs at once until SIGTERM or Ctrl-C,
then each lets its running micro-batch finish and commit, and stops. Progress (rows, rates,
records behind the topic's end, watermark and late rows) is logged every 5 seconds from the
queries' progress events.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lakehouse.cli import add_wait, context, parser
from lakehouse.config import TableSpec
from lakehouse.errors import LakehouseError, ReconciliationError
from lakehouse.leases import leased
from lakehouse.ml import registry
from lakehouse.ml.spec import load_model_spec
from lakehouse.pipeline.summary import mismatches, reconcile
from lakehouse.quality.expectations import RuleResult
from lakehouse.runlog import RunLog, TableRun
from lakehouse.session import get_spark
from lakehouse.streaming import bronze as kafka_bronze
from lakehouse.streaming import gold as stream_gold
from lakehouse.streaming import score as stream_score
from lakehouse.streaming import silver as stream_silver
from lakehouse.streaming.handlers import RAISED, keep_errors
from lakehouse.streaming.produce import check_reachable
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

KAFKA_SOURCE_SCHEMA = "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, timestampType int"
"""The columns of Spark's Kafka source."""

T = TypeVar("T")

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
        .foreachBatch(keep_errors(name, lambda df, batch_id: kafka_bronze.append_batch(spark, lake, spec, df, batch_id, tr, run_id)))
        .option("checkpointLocation", lake.checkpoint("bronze", name))
        .trigger(**trigger)
        .start()
    )


@dataclass
class QueryTally:
    """One query's progress so far, summed from its progress events."""

    batches: int = 0
    rows: int = 0
    input_rate: float = 0.0
    processed_rate: float = 0.0
    behind: int | None = None
    late: int = 0
    watermark: str | None = None
    last_batch: int | None = None

    def describe(self) -> str:
        if self.last_batch is None:
            return "no batch yet"
        text = f"batch {self.last_batch}: {self.rows} row(s) so far, in {self.input_rate:.0f}/s, processed {self.processed_rate:.0f}/s"
        if self.behind is not None:
            text += f", up to {self.behind} record(s) behind per partition"
        if self.watermark is not None:
            text += f", watermark {self.watermark}, {self.late} late row(s) left out"
        return text


class Tally(StreamingQueryListener):
    """Every query's progress, from Spark's progress events (delivered on the listener bus)."""

    def __init__(self) -> None:
        self.queries: dict[str, QueryTally] = {}
        self.terminated: set[str] = set()
        self._lock = threading.Lock()

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        with self._lock:
            t = self.queries.setdefault(p.name, QueryTally())
            if p.batchId != t.last_batch:
                t.batches += 1
            t.last_batch = p.batchId
            t.rows += p.numInputRows
            t.input_rate = p.inputRowsPerSecond or 0.0
            t.processed_rate = p.processedRowsPerSecond or 0.0
            t.late += sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
            t.watermark = (p.eventTime or {}).get("watermark", t.watermark)
            for src in p.sources:
                lag = (src.metrics or {}).get("maxOffsetsBehindLatest")
                if lag is not None:
                    t.behind = int(lag)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        with self._lock:
            self.terminated.add(str(event.id))

    def of(self, name: str) -> QueryTally:
        with self._lock:
            return dataclasses.replace(self.queries.get(name, QueryTally()))

    def settle(self, queries: Sequence[StreamingQuery], timeout: float = 10.0) -> None:
        """Wait until the bus has delivered the termination (so every progress) of ``queries``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(str(q.id) in self.terminated for q in queries):
                    return
            time.sleep(0.05)


def run_queries(queries: dict[str, StreamingQuery], stop: threading.Event, tally: Tally, every: float = 5.0) -> None:
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
                log.info("%s: %s", name, tally.of(q.name).describe())
            last = time.monotonic()
        time.sleep(0.2)
    tally.settle(list(queries.values()))
    for name, q in queries.items():
        err = q.exception()
        if err is not None:
            if name in RAISED:  # the message that names the table, record or rule
                raise RAISED.pop(name) from None
            raise LakehouseError(f"{name}: the streaming query failed: {cause_of(str(err))[:500]}")


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w$]*\.)*[A-Za-z_][\w$]*(?:Error|Exception): \S")
_WRAPPERS = ("py4j.", "Py4J", "org.apache.spark.SparkException", "org.apache.spark.sql.execution.streaming.sources.", "pyspark.errors.")


def cause_of(message: str) -> str:
    """The line of a query's error that says what went wrong. A failure inside a micro-batch
    reaches the query wrapped in Spark's and Py4J's errors (and a Python traceback): the first
    ``SomeError: ...`` line that is not one of those wrappers; else the first line."""
    for line in message.splitlines():
        text = line.strip().removeprefix("Caused by: ").lstrip(": ")
        if _ERROR_LINE.match(text) and not text.startswith(_WRAPPERS):
            return text
    return message.splitlines()[0] if message else "(no message)"


def late_events(spec: TableSpec, t: QueryTally) -> RuleResult:
    """The rows a windowed table's aggregation left out as later than its watermark, as a rule
    result (``ops.quality_metrics``, the run's quality lines). An event counts once per window
    it falls in: once for tumbling windows, ten times for ten-minute windows sliding by one."""
    assert spec.window is not None
    return RuleResult(
        "late_events",
        "warn",
        "watermark",
        "table",
        evaluated=t.rows,
        failed=t.late,
        observed=float(t.late),
        threshold=f"later than {spec.window.watermark} behind the latest {spec.window.time}",
        ok=t.late == 0,
    )


LAYERS = ("bronze", "silver", "gold", "score")


def in_pool(spark: SparkSession, pool: str, start: Callable[[], T]) -> T:
    """``start()`` (which starts queries) with the fair-scheduler pool ``pool`` set on this
    thread: a query's execution thread inherits it, and so every job of its micro-batches,
    foreachBatch included. (Under the FIFO scheduler, which the tests' shared session keeps, a
    pool changes nothing.)"""
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", pool)
    try:
        return start()
    finally:
        sc.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]


def stage_name(layer: str, table: str) -> str:
    """The name a query goes by in the job (its pool, its progress lines): the table it writes;
    the decision store, which writes the predictions table after the scorer, ``<table> (store)``."""
    return f"{table} (store)" if layer == "store" else table


def stream_main(argv: Sequence[str] | None = None) -> int:
    """Parse the job's arguments and run the queries of the stream tables, of the silver tables
    they feed and of the windowed gold tables over those."""
    p = parser("Stream Kafka topics into bronze, on into the silver tables they feed and windowed gold tables; score the payments.")
    p.add_argument("--tables", default="", help="comma-separated topic tables (default: every bronze table with a kafka source)")
    p.add_argument(
        "--layers",
        default=None,
        help="of bronze (topic -> bronze), silver (-> silver), gold (windows), score (decisions); "
        "default all, score only when the model has a champion",
    )
    p.add_argument(
        "--real-time",
        default=None,
        metavar="INTERVAL",
        help="score in Spark's Real-time Mode, checkpointing every INTERVAL (e.g. '1 minute'); needs an interval --trigger",
    )
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml: the model that scores (default fraud)")
    p.add_argument("--trigger", default="available-now", help="available-now (catch up and stop) or an interval: 5s, 500ms, 1m")
    add_wait(p, 0.0)
    args = p.parse_args(argv)
    ctx = context("stream", args)
    lake = ctx.lake
    try:
        trigger = trigger_of(args.trigger)
    except ValueError as exc:
        p.error(str(exc))
    if args.real_time and "availableNow" in trigger:
        p.error("--real-time scores until stopped: give an interval --trigger (e.g. 500ms) for the other queries")
    layers = [x for x in (args.layers or ",".join(LAYERS)).split(",") if x]
    if not layers or any(x not in LAYERS for x in layers):
        p.error(f"--layers {args.layers!r}: give some of {', '.join(LAYERS)}")
    model = load_model_spec(args.conf_dir, args.model) if "score" in layers else None
    known = [s.name for s in lake.streams("bronze")]
    names = [t for t in args.tables.split(",") if t] or known
    for n in names:
        lake.spec(n)
        if n not in known:
            p.error(f"{n} is not a topic's table (those: {', '.join(known) or 'none'}); the pipeline job builds it")
    fed = sorted({s.name for n in names for s in lake.fed_by(n)})
    plan = {
        "bronze": names if "bronze" in layers else [],
        "silver": fed if "silver" in layers else [],
        "gold": [g.name for g in lake.streams("gold") if g.upstream[0] in fed] if "gold" in layers else [],
        "score": [stream_score.predictions_table(model)] if model is not None and "silver.transactions" in fed else [],
    }
    for n in plan["bronze"]:  # the broker unreachable: one clear line within seconds, before Spark starts
        check_reachable(kafka_bronze.bootstrap_of(lake, lake.spec(n)))
    # every query in a fair-scheduler pool of its own (in_pool): FIFO, one query's long batch
    # (a silver MERGE) would hold back the short ones of the others (a bronze append, scoring)
    fair = {} if "spark.scheduler.mode" in ctx.env.spark.conf else {"spark.scheduler.mode": "FAIR"}
    spark = get_spark(ctx.env, "lakehouse-stream", args.master, extra_conf=fair)
    if plan["score"]:
        registry.configure(ctx.env)
        if args.layers is None and registry.version_of(model.name, registry.CHAMPION) is None:
            log.warning("model %s has no champion yet: payments are not scored (train one: ./spark-submit.sh train)", model.name)
            plan["score"] = []
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tally = Tally()
    spark.streams.addListener(tally)
    runlog = RunLog(spark, lake, "stream", ctx.run_id, args.run_date)
    # topic and window tables are this job's alone for its whole run; a silver table is shared
    # with the pipeline job: each micro-batch holds its lease while it writes (streaming/silver.py)
    with leased(spark, lake, ctx.run_id, "stream", plan["bronze"] + plan["gold"], wait=args.wait):
        runlog.begin()
        runs = {n: runlog.start(n) for names_ in plan.values() for n in names_}
        starters = {
            "bronze": lambda n: start_bronze(spark, lake, n, runs[n], ctx.run_id, trigger),
            "silver": lambda n: stream_silver.start_silver(spark, lake, lake.spec(n), runs[n], ctx.run_id, trigger),
            "gold": lambda n: stream_gold.start_windows(spark, lake, lake.spec(n), runs[n], ctx.run_id, trigger),
            "score": lambda n: start_scorer(n),
            # the decisions topic into the predictions table (with availableNow, after scoring)
            "store": lambda n: stream_score.start_decision_store(
                spark, lake, model, runs[n], ctx.run_id, trigger, scorers[-1].bootstrap, bool(args.real_time)
            ),
        }
        scorers: list[stream_score.Scorer] = []

        def start_scorer(n: str) -> StreamingQuery:
            # the payments topic to the decisions topic, in Real-time Mode or micro-batches
            if args.real_time:
                query, scorer = stream_score.start_realtime(spark, lake, model, runs[n], ctx.run_id, args.real_time)
            else:
                query, scorer = stream_score.start_scoring(spark, lake, model, runs[n], ctx.run_id, trigger)
            scorers.append(scorer)
            return query

        queries: dict[str, StreamingQuery] = {}
        try:
            for n in names:
                records = spark.createDataFrame([], KAFKA_SOURCE_SCHEMA)
                stream_silver.ensure_stream_table(spark, lake, lake.spec(n), kafka_bronze.as_bronze(records, lake.spec(n), ctx.run_id))
            for layer in (*LAYERS, "store"):  # availableNow: each layer catches up with what the one before wrote
                if stop.is_set():
                    break
                started = {stage_name(layer, n): n for n in plan["score" if layer == "store" else layer]}
                queries.update({q: in_pool(spark, q, functools.partial(starters[layer], n)) for q, n in started.items()})
                if "availableNow" in trigger:
                    run_queries({q: queries[q] for q in started}, stop, tally)
            if "availableNow" not in trigger:
                run_queries(queries, stop, tally)
        except Exception as exc:
            for q in queries.values():
                if q.isActive:
                    q.stop()
            for tr in runs.values():
                runlog.finish(tr, "failed", f"{type(exc).__name__}: {exc}")
            runlog.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        late = {n: tally.of(stream_gold.query_name(lake.spec(n))) for n in plan["gold"]}
        for n, t in late.items():
            runs[n].rows_read += t.rows
            runs[n].add_quality([late_events(lake.spec(n), t)])
        for tr in runs.values():
            runlog.finish(tr)
        recon = []
        if plan["silver"]:  # counted while no pipeline run writes them (their leases held)
            with leased(spark, lake, ctx.run_id, "stream", plan["silver"], wait=stream_silver.LEASE_WAIT):
                recon = reconcile(spark, lake, plan["silver"])
        problem = mismatches(recon)
        runlog.end("failed" if problem else "finished", f"reconciliation: {problem}" if problem else None)
    spark.streams.removeListener(tally)
    print(summary(plan, runs, late, recon, scorers), flush=True)
    if problem:
        raise ReconciliationError(f"reconciliation failed: {problem}; run {ctx.run_id} is marked failed in ops.run_log")
    return 0


def summary(
    plan: dict[str, list[str]], runs: dict[str, TableRun], late: dict[str, QueryTally], recon: Sequence[Any], scorers: Sequence[Any] = ()
) -> str:
    """What the run did, table by table, and the silver tables' accounting."""
    lines = []
    for n in plan["bronze"]:
        lines.append(f"{n}: {runs[n].rows_inserted} record(s) appended")
    for n in plan["silver"]:
        tr = runs[n]
        lines.append(
            f"{n}: read {tr.rows_read}, inserted {tr.rows_inserted}, updated {tr.rows_updated}, "
            f"quarantined {tr.rows_quarantined}, duplicates {tr.rows_duplicate}"
        )
    for n in plan["gold"]:
        t = late[n]
        lines.append(f"{n}: {t.rows} row(s) in, {runs[n].rows_written} window row(s) written, {t.late} late row(s) left out")
    for n, scorer in zip(plan["score"], scorers, strict=False):
        switches = "; ".join(f"champion v{new} from batch {b}" for b, old, new in scorer.switches if old is not None)
        lines.append(
            f"{n}: {runs[n].rows_read} payment(s) decided ({runs[n].rows_inserted} new in the table), "
            f"{scorer.unscored} not scored (quarantine rules)" + (f"; {switches}" if switches else "")
        )
    for r in recon:
        lines.append(
            f"{r.table}: bronze {r.bronze} ({r.streamed} from the stream) = silver {r.silver} + quarantined {r.quarantined} "
            f"+ duplicates {r.duplicates}: {'OK' if r.ok else 'MISMATCH'}"
        )
    return "\n".join(lines)
