"""Fraud scored while the payment happens: the topic's payments, decided per micro-batch.

The scoring query reads the payments topic itself (its own checkpoint, beside bronze's), so a
decision does not wait for the bronze and silver commits. Each micro-batch:

1. parses the records as bronze does and types them with silver's transform; the rows that
   silver's quarantine rules catch are not scored (counted);
2. joins each payment with its customer's and merchant's newest feature state (a stream-static
   broadcast join, :func:`lakehouse.features.payments.live_transaction_features`: the same
   feature columns as batch scoring, the same "strictly before, at most 30 days old" rules);
3. scores them with the champion through :func:`lakehouse.ml.score.score`, the batch scorer's
   function;
4. sends each decision to the decisions topic (at least once: a micro-batch retried after a
   crash sends again). That is all a decision waits for.

A second query, the decision store, reads the decisions topic and inserts each decision into the
predictions table, which batch scoring and monitoring read (exactly once: an insert-only MERGE
on the payment id, in a commit carrying its micro-batch's transaction id); a payment stored
there is not scored again by the batch job. The reference tables silver's transform and rules
read (FX rates, customers, merchants) are held in memory between micro-batches at their newest
version (:class:`lakehouse.io.cached.CachedTables`).

Each decision carries the model version and the versions of the tables its features came from.
Between micro-batches the scorer looks at the registry: a newly promoted champion is loaded and
scores from the next micro-batch on (logged, and visible in the decisions' ``model_version``);
so are feature tables that changed (their newest state is recomputed).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError
from lakehouse.faults import crash_point
from lakehouse.features.payments import live_state, live_transaction_features
from lakehouse.io import delta, fs
from lakehouse.io.cached import CachedTables
from lakehouse.io.delta_log import Stamp
from lakehouse.leases import leased
from lakehouse.ml import registry
from lakehouse.ml.score import PREDICTIONS_SCHEMA, LoadedModel, load, predictions_path, score
from lakehouse.ml.spec import ModelSpec
from lakehouse.pipeline.silver import stream_feed, transform_batch
from lakehouse.quality.context import checker, expectations_of
from lakehouse.quality.expectations import apply_expectations, passing
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.runlog import TableRun
from lakehouse.streaming import bronze as kafka_bronze
from lakehouse.streaming.handlers import keep_errors
from lakehouse.streaming.produce import ensure_topic
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

LIVE_INPUTS = ("silver.customers", "gold.customer_features", "gold.merchant_features")
"""The tables the live features come from; their versions go with each decision."""
LEASE_WAIT = 1800.0
DECISION_PARTITIONS = 3


def predictions_table(spec: ModelSpec) -> str:
    return f"ml.{spec.name}_predictions"


@dataclass
class Scorer:
    """The scoring query's state between micro-batches: the champion, the feature state."""

    spark: SparkSession
    lake: Lake
    spec: ModelSpec
    tx: TableSpec
    run_id: str
    tr: TableRun
    model: LoadedModel | None = None
    versions: dict[str, int] = field(default_factory=dict)
    frames: tuple[DataFrame, ...] = ()
    switches: list[tuple[int, str | None, str]] = field(default_factory=list)
    unscored: int = 0
    bootstrap: str = ""
    tables: CachedTables | None = None
    """The reference tables the transform and the rules read, held between micro-batches."""

    def read(self, name: str) -> DataFrame:
        if self.tables is None:
            self.tables = CachedTables(self.spark, self.lake.path)
        return self.tables.read(name)

    def refresh(self, batch_id: int) -> None:
        """Load the champion if it changed, and the newest feature state if a table changed."""
        mv = registry.version_of(self.spec.name, registry.CHAMPION)
        if mv is None:
            raise PipelineError(f"model {self.spec.name} has no champion: train one (./spark-submit.sh train) or promote a version")
        if self.model is None or str(mv.version) != self.model.version:
            before = self.model.version if self.model else None
            self.model = load(self.spec, version=str(mv.version))
            self.switches.append((batch_id, before, self.model.version))
            if before is not None:
                log.warning(
                    "%s: champion switched from version %s to %s: it scores from batch %d on", self.spec.name, before, mv.version, batch_id
                )
        now = {}
        for name in LIVE_INPUTS:
            v = delta.version(self.spark, self.lake.path(name))
            if v is None:
                raise PipelineError(
                    f"{name}: no Delta table at {self.lake.path(name)}; real-time scoring needs it (run the pipeline first)"
                )
            now[name] = v
        if now != self.versions:
            read = {n: self.spark.read.format("delta").option("versionAsOf", v).load(self.lake.path(n)) for n, v in now.items()}
            cstate, mstate = live_state(read["gold.customer_features"], read["gold.merchant_features"])
            frames = tuple(f.persist(StorageLevel.MEMORY_AND_DISK) for f in (cstate, mstate, read["silver.customers"]))
            for f in frames:
                f.count()
            for f in self.frames:
                f.unpersist()
            self.frames, self.versions = frames, now
            log.info("%s: live feature state from %s", self.spec.name, ", ".join(f"{n} v{v}" for n, v in now.items()))

    def rules(self) -> tuple[Any, ...]:
        """Silver's row rules that quarantine: a payment one catches is not scored."""
        return tuple(e for e in expectations_of(self.lake, self.tx) if e.severity == "quarantine" and not e.table_level)

    def typed(self, records: DataFrame) -> DataFrame:
        """Kafka records (as bronze rows) typed by silver's transform."""
        # the record's Kafka timestamp rides in the input record (``__in``) through the transform
        records = records.withColumn("received_at", F.col("_kafka.timestamp"))
        typed, _ = transform_batch(self.spark, self.lake, self.tx, records, self.run_id, stream_feed(self.lake, self.tx).driver, self.read)
        return typed

    def decide(self, records: DataFrame) -> DataFrame:
        """One micro-batch's valid payments with their decisions (the quarantined ones counted)."""
        checked = apply_expectations(self.typed(records), self.rules(), self.checker())
        self.unscored += checked.quarantined
        return self.scored(checked.valid())

    def decide_stream(self, records: DataFrame) -> DataFrame:
        """:meth:`decide` as one streaming plan (no micro-batch: Real-time Mode); nothing counted."""
        return self.scored(passing(self.typed(records), self.rules(), self.checker()))

    def checker(self) -> Any:
        return checker(self.spark, self.lake, self.tx, QualityMetrics(self.spark, self.lake), self.read)

    def scored(self, valid: DataFrame) -> DataFrame:
        """Valid typed payments with their decisions, in the predictions table's columns plus
        ``received_at`` (the record's Kafka timestamp)."""
        assert self.model is not None
        cstate, mstate, customers = self.frames
        inputs = live_transaction_features(valid.withColumn("received_at", F.col("__in.received_at")), cstate, mstate, customers)
        versions = F.create_map(*[x for k, v in sorted(self.versions.items()) for x in (F.lit(k), F.lit(v).cast("bigint"))])
        return score(self.model, inputs).select(
            "transaction_id",
            "customer_id",
            "merchant_id",
            "event_time",
            "event_date",
            "score",
            "decision",
            F.lit(self.model.threshold).alias("threshold"),
            F.lit(self.model.name).alias("model_name"),
            F.lit(self.model.version).alias("model_version"),
            versions.alias("feature_versions"),
            F.current_timestamp().alias("scored_at"),
            "received_at",
        )


DECISION_SCHEMA = f"{PREDICTIONS_SCHEMA}, received_at timestamp"
"""A decision record's JSON: the predictions table's row and the payment's Kafka timestamp."""


def decision_records(decisions: DataFrame) -> DataFrame:
    """Kafka records for the payment system: keyed by payment id, the decision (with its model
    and feature versions, and the row the predictions table holds) as JSON."""
    fields = [f.split()[0] for f in DECISION_SCHEMA.split(", ")]
    return decisions.select(F.col("transaction_id").alias("key"), F.to_json(F.struct(*fields)).alias("value"))


def store_decisions(spark: SparkSession, lake: Lake, spec: ModelSpec, decided: DataFrame, stamp: Stamp) -> int:
    """Insert decisions into the predictions table once per payment (an insert-only MERGE on the
    payment id, in a commit carrying ``stamp``'s transaction id), holding the table's lease;
    the rows inserted."""
    once = decided.drop("received_at").dropDuplicates(["transaction_id"])
    days = sorted(r[0] for r in once.select("event_date").distinct().collect() if r[0] is not None)
    with leased(spark, lake, stamp.run_id, "stream", [predictions_table(spec)], wait=LEASE_WAIT):
        with delta.stamped(spark, stamp):
            m = delta.merge_insert_only(spark, predictions_path(lake, spec), once, ["transaction_id"], prune={"event_date": days})
    return int(m.get("numTargetRowsInserted", 0))


def score_batch(scorer: Scorer, records: DataFrame, batch_id: int, bootstrap: str) -> int:
    """Decide one micro-batch and send the decisions to the decisions topic (the decision store
    query puts them into the predictions table); the number sent."""
    t0 = time.monotonic()
    spec = scorer.spec
    scorer.refresh(batch_id)
    records = records.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        decided = scorer.decide(records)
        sent = decision_records(decided).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n = sent.count()
            if n:
                sent.write.format("kafka").option("kafka.bootstrap.servers", bootstrap).option("topic", spec.decisions_topic).save()
                crash_point("score.after_send", spec.name)
            scorer.tr.rows_read += n
            log.info("%s: batch %d: %d decision(s) sent in %.1fs", spec.name, batch_id, n, time.monotonic() - t0)
            return n
        finally:
            sent.unpersist()
    finally:
        records.unpersist()


def start_decision_store(
    spark: SparkSession, lake: Lake, spec: ModelSpec, tr: TableRun, run_id: str, trigger: dict[str, Any], bootstrap: str, counts_read: bool
) -> StreamingQuery:
    """The micro-batch query that reads the decisions topic and inserts each payment's decision
    into the predictions table once (the scoring query only sends: a decision does not wait
    for a Delta commit, and Real-time Mode's plan cannot write Delta). ``counts_read``: the
    decisions read count as the payments decided (when the scoring query cannot count them)."""
    checkpoint = lake.checkpoint("decision-store", spec.name)
    records = kafka_bronze.kafka_reader(spark, bootstrap, spec.decisions_topic)
    decided = records.select(F.from_json(F.col("value").cast("string"), DECISION_SCHEMA).alias("d")).select("d.*")
    stream: list[str] = []

    def each_batch(df: DataFrame, batch_id: int) -> None:
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n = df.count()
            if n:
                if not stream:
                    stream.append(fs.stream_id(spark, checkpoint))
                stamp = Stamp(predictions_table(spec), run_id, f"lakehouse-decisions-{stream[0]}", batch_id)
                stored = store_decisions(df.sparkSession, lake, spec, df, stamp)
                tr.rows_inserted += stored
                tr.rows_written += stored
            if counts_read:
                tr.rows_read += n
        finally:
            df.unpersist()

    return (
        decided.writeStream.queryName(f"decisions_{spec.name}")
        .foreachBatch(keep_errors(f"{predictions_table(spec)} (store)", each_batch))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )


def _prepare(
    spark: SparkSession, lake: Lake, spec: ModelSpec, tr: TableRun, run_id: str, realtime: bool = False
) -> tuple[Scorer, DataFrame, str]:
    """The scorer (champion and feature state loaded), the topic's records as bronze rows, and
    the bootstrap servers; the decisions topic and the predictions table exist."""
    tx = lake.spec("silver.transactions")
    if tx.streamed_from is None:
        raise PipelineError("silver.transactions names no stream table (streamed_from): there is no topic to score")
    source = lake.spec(tx.streamed_from)
    assert source.source is not None and source.source.topic is not None
    bootstrap = kafka_bronze.bootstrap_of(lake, source)
    ensure_topic(bootstrap, spec.decisions_topic, DECISION_PARTITIONS)
    delta.ensure_table(spark, predictions_path(lake, spec), delta.schema_of(spark, PREDICTIONS_SCHEMA), partition_by=["event_date"])
    scorer = Scorer(spark, lake, spec, tx, run_id, tr, bootstrap=bootstrap)
    scorer.refresh(-1)
    options = dict(source.source.options)
    if realtime:  # Real-time Mode reads each partition continuously: no per-batch cap
        options.pop("maxOffsetsPerTrigger", None)
    records = kafka_bronze.as_bronze(kafka_bronze.kafka_reader(spark, bootstrap, source.source.topic, options), source, run_id)
    return scorer, records, bootstrap


def start_scoring(
    spark: SparkSession, lake: Lake, spec: ModelSpec, tr: TableRun, run_id: str, trigger: dict[str, Any]
) -> tuple[StreamingQuery, Scorer]:
    """Start the query that scores the payments topic (the stream table feeding silver.transactions)
    in micro-batches."""
    scorer, records, bootstrap = _prepare(spark, lake, spec, tr, run_id)
    query = (
        records.writeStream.queryName(f"score_{spec.name}")
        .foreachBatch(keep_errors(predictions_table(spec), lambda df, batch_id: score_batch(scorer, df, batch_id, bootstrap)))
        .option("checkpointLocation", lake.checkpoint("score-stream", spec.name))
        .trigger(**trigger)
        .start()
    )
    return query, scorer


def start_realtime(
    spark: SparkSession, lake: Lake, spec: ModelSpec, tr: TableRun, run_id: str, interval: str = "1 minute"
) -> tuple[StreamingQuery, Scorer]:
    """Start the scoring plan in Real-time Mode (``trigger(realTime=interval)``: the interval is
    how often offsets are checkpointed, not a latency), topic to topic.

    Raises:
        PipelineError: Real-time Mode refused the plan, quoting Spark's reason.
    """
    scorer, records, bootstrap = _prepare(spark, lake, spec, tr, run_id, realtime=True)
    out = decision_records(scorer.decide_stream(records))
    try:
        query = (
            out.writeStream.queryName(f"score_{spec.name}_realtime")
            .format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("topic", spec.decisions_topic)
            .option("checkpointLocation", lake.checkpoint("score-realtime", spec.name))
            .outputMode("update")
            .trigger(realTime=interval)
            .start()
        )
    except Exception as exc:  # noqa: BLE001 - Spark's analysis error, quoted
        raise PipelineError(f"Real-time Mode refused the scoring plan: {str(exc).splitlines()[0][:1000]}") from None
    return query, scorer


def parse_decision(value: str) -> dict[str, Any]:
    """A decision record's value (for the tests and the benchmark)."""
    return json.loads(value)
