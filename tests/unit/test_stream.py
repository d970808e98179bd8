"""Incremental streams: a stream with nothing to read is known without starting it."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import load_tables
from lakehouse.io.stream import caught_up, drain
from lakehouse.streaming.bronze import as_bronze
from lakehouse.streaming.jobs import KAFKA_SOURCE_SCHEMA, cause_of, in_pool
from tests.conftest import CONF


def test_a_stream_is_caught_up_only_when_its_last_batch_is_committed_past_the_tables_version(spark: SparkSession, tmp_path: Path) -> None:
    source, checkpoint = str(tmp_path / "source"), str(tmp_path / "checkpoint")
    seen: list[int] = []

    def run() -> None:
        drain(spark.readStream.format("delta").load(source), "caught_up_test", checkpoint, lambda df, _i: seen.append(df.count()))

    spark.range(3).write.format("delta").save(source)
    assert not caught_up(spark, checkpoint, source)  # no checkpoint yet
    run()
    assert seen == [3] and caught_up(spark, checkpoint, source)
    spark.range(2).write.format("delta").mode("append").save(source)
    assert not caught_up(spark, checkpoint, source)  # a new commit
    run()
    assert seen == [3, 2] and caught_up(spark, checkpoint, source)
    # a batch planned but not committed (a run killed inside it): the query must run it again
    commit = tmp_path / "checkpoint" / "commits" / "1"
    kept = commit.read_bytes()
    commit.unlink()
    assert not caught_up(spark, checkpoint, source)
    commit.write_bytes(kept)
    assert caught_up(spark, checkpoint, source)
    # another table (at version 0 as well): not this stream's offsets
    other = str(tmp_path / "other")
    spark.range(1).write.format("delta").save(other)
    spark.range(1).write.format("delta").mode("append").save(other)
    assert not caught_up(spark, checkpoint, other)


def test_a_failed_query_is_reported_by_the_error_inside_its_wrappers() -> None:
    python = (
        "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function in foreach batch sink. "
        "Reason: An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File "x.py", line 1, in each_batch\n'
        "ValueError: unknown crash point 'x'\n"
        "\tat py4j.Protocol.getReturnValue(Protocol.java:476)\n"
        "Caused by: py4j.Py4JException: An exception was raised by the Python Proxy. Return Message: Traceback\n"
    )
    assert cause_of(python) == "ValueError: unknown crash point 'x'"
    kafka = (
        "org.apache.spark.sql.execution.streaming.sources.ForeachBatchUserFuncException: [FOREACH_BATCH_USER_FUNCTION_ERROR] ...\n"
        "py4j.protocol.Py4JJavaError: An error occurred while calling o25427.save.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 1 in stage 964.0 failed 1 times\n"
        "org.apache.kafka.common.errors.TimeoutException: Topic d not present in metadata after 60000 ms.\n"
        "Caused by: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server does not host this topic-partition.\n"
    )
    assert cause_of(kafka) == "org.apache.kafka.common.errors.TimeoutException: Topic d not present in metadata after 60000 ms."
    assert cause_of("[STREAM_FAILED] Query terminated") == "[STREAM_FAILED] Query terminated"


def test_kafka_records_become_bronze_rows_and_an_oversized_one_a_corrupt_record(spark: SparkSession) -> None:
    spec = load_tables(CONF)["bronze.transactions_stream"]
    spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, max_record_bytes=120))
    at = datetime(2026, 3, 1, 12, 0, 0)
    good = json.dumps({"transaction_id": "t1", "amount": "12.50", "loyalty": "gold"})
    big = json.dumps({"transaction_id": "t2", "note": "x" * 200})
    records = spark.createDataFrame(
        [
            (b"C1", good.encode(), "p", 0, 7, at, 0),
            (b"C2", big.encode(), "p", 1, 8, at, 0),
            (None, b"not json", "p", 2, 9, at, 0),
            (None, None, "p", 0, 10, at, 0),
        ],
        KAFKA_SOURCE_SCHEMA,
    )
    rows = {r["_source_file"]: r for r in as_bronze(records, spec, "run-1").collect()}
    one = rows["kafka://p/0/7"]
    assert (one["transaction_id"], one["amount"], one["_rescued_data"], one["_corrupt_record"]) == (
        "t1",
        "12.50",
        '{"loyalty":"gold"}',
        None,
    )
    assert (one["_kafka"]["key"], one["_kafka"]["offset"], str(one["_arrival_date"])) == ("C1", 7, "2026-03-01")
    two = rows["kafka://p/1/8"]
    assert two["transaction_id"] is None and two["_kafka"]["value"] == big
    assert two["_corrupt_record"] == f"record of {len(big)} bytes, over the limit of 120: {big[:200]}"
    assert rows["kafka://p/2/9"]["_corrupt_record"] == "not json"
    assert rows["kafka://p/0/10"]["_corrupt_record"] == ""  # a record without a value


def test_a_query_started_in_a_pool_runs_its_batches_in_it(spark: SparkSession, tmp_path: Path) -> None:
    """The stream job starts each query in a fair-scheduler pool of its own: the pool is set on
    the starting thread only, and the query's micro-batches (foreachBatch's jobs included) run in it."""
    source = str(tmp_path / "source")
    spark.range(3).write.format("delta").save(source)
    pools: list[str | None] = []

    def each_batch(df: DataFrame, _batch_id: int) -> None:
        pools.append(df.sparkSession.sparkContext.getLocalProperty("spark.scheduler.pool"))
        df.count()

    def start() -> StreamingQuery:
        records = spark.readStream.format("delta").load(source)
        return (
            records.writeStream.foreachBatch(each_batch)
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )

    query = in_pool(spark, "silver.transactions", start)
    assert spark.sparkContext.getLocalProperty("spark.scheduler.pool") is None  # the starting thread's is unset again
    query.awaitTermination(120)
    assert pools == ["silver.transactions"]
