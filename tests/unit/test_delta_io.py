"""Delta helpers: bookkeeping appends, columns added to an existing table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from chispa import assert_df_equality
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
