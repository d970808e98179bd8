"""Incremental streams: a stream with nothing to read is known without starting it."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.io.stream import caught_up, drain


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
