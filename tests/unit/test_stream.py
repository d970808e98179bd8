"""Incremental streams: a stream with nothing to read is known without starting it."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.io.stream import caught_up, drain
from lakehouse.streaming.jobs import cause_of


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
