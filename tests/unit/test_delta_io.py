"""Delta helpers: bookkeeping appends, columns added to an existing table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.errors import AnalysisException
from pyspark.sql import Row, SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from lakehouse.io import delta

SCHEMA = StructType([StructField("n", LongType()), StructField("what", StringType()), StructField("at", TimestampType())])


def test_bookkeeping_appends_are_one_commit_each_and_never_compacted(spark: SparkSession, tmp_path: Path) -> None:
    """With auto compaction on for the session (as the pipeline runs), each append of a few rows
    to a log table is one WRITE commit: no OPTIMIZE rewriting the whole table after it."""
    assert spark.conf.get("spark.databricks.delta.autoCompact.enabled") == "true"
    path = str(tmp_path / "log")
    rows = [Row(n=i, what=f"row {i}", at=datetime(2026, 11, 26, 12, i)) for i in range(4)]
    for i, row in enumerate(rows):
        delta.append_rows(spark, path, [row], SCHEMA, "a log", create=i == 0)
    ops = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect()]
    assert ops == ["CREATE TABLE", "WRITE", "WRITE", "WRITE", "WRITE"]
    assert len(list(Path(path).glob("*.parquet"))) == 4
    got = spark.read.format("delta").load(path)
    assert_df_equality(got, spark.createDataFrame(rows, SCHEMA), ignore_row_order=True)
    # the main session keeps its own settings
    assert spark.conf.get("spark.databricks.delta.autoCompact.enabled") == "true"
    quiet = delta.bookkeeping_session(spark)
    assert quiet.conf.get("spark.sql.session.timeZone") == spark.conf.get("spark.sql.session.timeZone")


def test_a_declared_column_the_table_lacks_is_added_with_nulls(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "old")
    spark.createDataFrame([(1, "a")], "n long, what string").write.format("delta").save(path)
    wanted = delta.schema_of(spark, "n long, what string, spend array<struct<category:string,spend:decimal(18,2)>>")
    assert delta.add_missing_columns(spark, path, wanted) == ["spend"]
    assert delta.add_missing_columns(spark, path, wanted) == []  # once
    got = spark.read.format("delta").load(path)
    assert_df_equality(got, spark.createDataFrame([(1, "a", None)], wanted), ignore_nullable=True)


def test_a_cached_table_is_read_once_per_version_and_a_new_commit_is_seen(spark: SparkSession, tmp_path: Path) -> None:
    """A stream's reference tables (CachedTables): the same rows from memory while the table's
    version holds, the new rows from the call after a commit, and a missing table read plainly."""
    from lakehouse.io.cached import CachedTables

    path = str(tmp_path / "fx")
    spark.createDataFrame([("EUR", 1.0)], "currency string, rate double").write.format("delta").save(path)
    tables = CachedTables(spark, lambda name: str(tmp_path / name))
    first = tables.read("fx")
    assert tables.read("fx") is first and tables.reads == 1 and tables.version_of("fx") == 0
    spark.createDataFrame([("USD", 0.9)], "currency string, rate double").write.format("delta").mode("append").save(path)
    assert first.count() == 1  # the rows held are those of version 0
    again = tables.read("fx")
    assert tables.reads == 2 and tables.version_of("fx") == 1
    assert_df_equality(again, spark.createDataFrame([("EUR", 1.0), ("USD", 0.9)], "currency string, rate double"), ignore_row_order=True)
    assert tables.read("fx") is again
    with pytest.raises(AnalysisException, match="nothing"):  # no table: the plain read's error, naming the path
        tables.read("nothing")
    assert tables.version_of("nothing") is None
    tables.close()
