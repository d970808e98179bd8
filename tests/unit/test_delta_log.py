"""The Delta log reader and commit stamps (lakehouse.io.delta_log).

The reader calls Delta's JVM classes (no public API lists the log or the transaction ids); each
test here checks what it reads against the public API (DESCRIBE HISTORY, the table's rows), so
a Delta upgrade that moves or changes those classes fails here, loudly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.io import delta, delta_log
from lakehouse.io.delta_log import LogGapError, Stamp


def _history(spark: SparkSession, path: str) -> list[tuple[int, str, str | None]]:
    rows = DeltaTable.forPath(spark, path).history().select("version", "operation", "userMetadata").collect()
    return [(r.version, r.operation, r.userMetadata) for r in rows]


def _merge(spark: SparkSession, path: str, ids: range) -> None:
    src = spark.range(ids.start, ids.stop).selectExpr("id", "'v2' AS what")
    merge = DeltaTable.forPath(spark, path).alias("t").merge(src.alias("s"), "t.id = s.id")
    merge.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()


def test_the_log_reader_agrees_with_describe_history(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    assert delta_log.version(spark, path) is None
    assert delta_log.txn_version(spark, path, "app") is None
    spark.range(3).selectExpr("id", "'v1' AS what").write.format("delta").save(path)
    stamp = Stamp("test.t", "run-1", "app", 7, {"silver.x": 4})
    delta.append(spark.range(3, 5).selectExpr("id", "'v1' AS what"), path, stamp=stamp)
    with delta.stamped(spark, Stamp("test.merge", "run-1")):
        _merge(spark, path, range(4, 6))
    history = _history(spark, path)
    got = [(c.version, c.operation, None if c.stamp is None else c.stamp.to_json()) for c in delta_log.commits(spark, path)]
    assert got == history
    assert delta_log.version(spark, path) == history[0][0] == 2
    assert delta_log.txn_version(spark, path, "app") == 7
    assert delta_log.txn_version(spark, path, "other") is None
    assert delta_log.last_metrics(spark, path)["numTargetRowsInserted"] == 1
    assert delta_log.latest_stamp(spark, path, "test.t").stamp == stamp
    assert delta_log.files(spark, path).count() == DeltaTable.forPath(spark, path).detail().first().numFiles
    # the session settings a stamped DML used are gone after it
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_a_retry_finds_its_commit_however_many_commits_came_after(spark: SparkSession, tmp_path: Path) -> None:
    """A stamped MERGE, then other commits (appends, table-property changes), then its retry:
    found, and Delta skips the write. (More than 50 commits, the look-back this replaced, come
    between a killed silver MERGE and its retry in tests/integration/test_faults.py.)"""
    path = str(tmp_path / "t")
    spark.range(3).selectExpr("id", "'v1' AS what").write.format("delta").save(path)
    stamp = Stamp("silver.t", "run-1", "lakehouse-silver-abc", 5)
    assert delta_log.absorbed(spark, path, stamp) is None  # a first attempt: nothing to find
    with delta.stamped(spark, stamp):
        _merge(spark, path, range(2, 6))
    for i in range(6):
        if i % 3 == 0:
            spark.range(100 + i, 101 + i).selectExpr("id", "'other' AS what").write.format("delta").mode("append").save(path)
        else:
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('lakehouse.test.n' = '{i}')")
    before = spark.read.format("delta").load(path).count()
    found = delta_log.absorbed(spark, path, stamp)
    assert found is not None and found.version == 1
    assert (found.metrics["numTargetRowsInserted"], found.metrics["numTargetRowsUpdated"]) == (3, 1)
    version = delta_log.version(spark, path)
    with delta.stamped(spark, stamp):  # the same write again: Delta skips it
        _merge(spark, path, range(2, 9))
    assert delta_log.version(spark, path) == version
    assert spark.read.format("delta").load(path).count() == before
    # the next batch of the same stream is not absorbed yet
    assert delta_log.absorbed(spark, path, Stamp("silver.t", "run-2", "lakehouse-silver-abc", 6)) is None


def test_a_stamped_append_is_written_once(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    rows = spark.range(4).selectExpr("id", "'bad' AS what")
    stamp = Stamp("quarantine.t", "run-1", "lakehouse-quarantine-abc", 0)
    delta.append(rows, path, stamp=stamp)
    delta.append(rows, path, stamp=Stamp("quarantine.t", "run-2", "lakehouse-quarantine-abc", 0))
    assert spark.read.format("delta").load(path).count() == 4
    assert delta_log.absorbed(spark, path, stamp).stamp.run_id == "run-1"  # type: ignore[union-attr]


def test_a_transaction_whose_commit_left_the_log_fails_loudly(spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "t")
    stamp = Stamp("bronze.t", "run-1", "lakehouse-bronze-abc", 3)
    delta.append(spark.range(2).selectExpr("id", "'x' AS what"), path, stamp=stamp)
    monkeypatch.setattr(delta_log, "commits", lambda spark, path: iter(()))  # log cleanup removed it
    with pytest.raises(LogGapError, match="lakehouse-bronze-abc/3 as committed"):
        delta_log.absorbed(spark, path, stamp)


def test_stamps_round_trip_and_foreign_metadata_is_no_stamp() -> None:
    s = Stamp("gold.x", "r", "lakehouse-gold-gold.x", 2, {"silver.a": 3, "silver.b": 0})
    assert Stamp.parse(s.to_json()) == s
    assert Stamp.parse(Stamp("ops", "r").to_json()) == Stamp("ops", "r")
    for foreign in (None, "", "lakehouse:ops", '{"other": 1}', "{not json", '{"lakehouse": 3}'):
        assert Stamp.parse(foreign) is None
    with pytest.raises(ValueError):
        Stamp("x", "r", "app", None)


def test_a_stamp_belongs_to_its_session_and_a_second_one_in_it_refuses(spark: SparkSession, tmp_path: Path) -> None:
    """Stamps are session settings: a MERGE in another session (a pipeline table's, a streaming
    query's) meanwhile carries its own stamp, not the open one; a second stamp in the same
    session is refused rather than mixed with the first (the stream job's bug: a scoring batch's
    stamp on a silver MERGE running beside it)."""
    path = str(tmp_path / "t")
    delta.append(spark.range(2).selectExpr("id"), path)
    other = spark.newSession()

    def insert(session: SparkSession, n: int) -> None:
        source = session.range(n, n + 1).alias("s")
        DeltaTable.forPath(session, path).alias("t").merge(source, "t.id = s.id").whenNotMatchedInsertAll().execute()

    with delta.stamped(spark, Stamp("silver.t", "run-1", "lakehouse-a", 0)):
        with pytest.raises(RuntimeError, match="still open in this Spark session"):
            with delta.stamped(spark, Stamp("ml.p", "run-1", "lakehouse-b", 0)):
                pass
        with delta.stamped(other, Stamp("ml.p", "run-1", "lakehouse-b", 7)):
            insert(other, 2)
        insert(spark, 3)
    insert(spark, 4)
    stamps = [(c.stamp.app_id, c.stamp.seq) if c.stamp else None for c in delta_log.commits(spark, path)][:3]
    assert stamps == [None, ("lakehouse-a", 0), ("lakehouse-b", 7)]
    assert (delta_log.txn_version(spark, path, "lakehouse-a"), delta_log.txn_version(spark, path, "lakehouse-b")) == (0, 7)
