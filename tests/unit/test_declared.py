"""Tables declared in YAML alone: typed silver columns, gold SQL, sources without versions."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables, parse_table
from lakehouse.errors import ConfigError, PipelineError
from lakehouse.io import delta
from lakehouse.pipeline.silver import completed, with_input
from tests.conftest import CONF

BRONZE = {
    "name": "readings",
    "layer": "bronze",
    "mode": "append",
    "description": "d",
    "owner": "o",
    "source": {"format": "csv", "path": "readings"},
    "schema": "station string, at string, value string",
}
SILVER = {
    "name": "readings",
    "layer": "silver",
    "mode": "merge",
    "description": "d",
    "owner": "o",
    "upstream": ["bronze.readings"],
    "keys": ["station", "measured_at"],
    "schema": "station string, measured_at timestamp, value double",
    "select": {"measured_at": "try_to_timestamp(at)", "station": "upper(trim(station))"},
}
GOLD = {
    "name": "per_station",
    "layer": "gold",
    "mode": "merge",
    "description": "d",
    "owner": "o",
    "upstream": ["silver.readings"],
    "keys": ["station"],
    "sql": "SELECT station, count(*) AS readings, max(value) AS top FROM {readings} GROUP BY station",
    "schema": "station string, readings bigint, top double",
}


def test_a_silver_table_gets_the_metadata_columns_it_leaves_out() -> None:
    spec = parse_table(SILVER, "silver/readings.yaml")
    assert spec.column_names == ("station", "measured_at", "value", "_record_hash", "_source_file", "_ingested_at")
    assert spec.schema.endswith("value double, _record_hash bigint, _source_file string, _ingested_at timestamp")
    assert spec.version_column is None  # a merge table without versions is allowed


@pytest.mark.parametrize(
    ("table", "change", "key", "problem"),
    [
        (SILVER, {"select": {"nope": "1"}}, "select.nope", "not in the schema"),
        (SILVER, {"select": {"value": " "}}, "select.value", "expected a SQL expression"),
        (SILVER, {"transform": "lakehouse.payments.silver.build_fx_rates"}, "select", "give one of transform or select"),
        (SILVER, {"select": None, "sql": "SELECT 1 FROM {readings}"}, "sql", "only gold tables"),
        (SILVER, {"mode": "scd2"}, "version_column", "mode scd2 needs a version column"),
        (GOLD, {"sql": None}, "transform", "needs a transform"),
        (GOLD, {"sql": "SELECT * FROM {reading}"}, "sql", "{reading} is not an upstream table (upstream: readings)"),
        (GOLD, {"sql": "SELECT 1"}, "sql", "names no upstream table"),
        (GOLD, {"select": {"station": "1"}}, "select", "give one of sql or select"),
    ],
)
def test_a_declared_table_that_cannot_work_names_file_and_key(table: dict, change: dict, key: str, problem: str) -> None:
    data = {k: v for k, v in {**table, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_table(data, f"{data['layer']}/x.yaml")
    assert info.value.key == key
    assert problem in info.value.problem


def test_a_typed_column_must_come_from_a_bronze_field_or_select(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    import yaml

    (conf / "tables" / "bronze" / "readings.yaml").write_text(yaml.safe_dump(BRONZE))
    (conf / "tables" / "silver" / "readings.yaml").write_text(yaml.safe_dump({**SILVER, "select": {"measured_at": "try_to_timestamp(at)"}}))
    assert load_tables(conf)["silver.readings"].select == {"measured_at": "try_to_timestamp(at)"}
    (conf / "tables" / "silver" / "readings.yaml").write_text(yaml.safe_dump({**SILVER, "select": {"station": "station"}}))
    with pytest.raises(ConfigError, match=r"readings.yaml: schema: column 'measured_at' is neither a field of bronze.readings"):
        load_tables(conf)


def test_typed_columns_cast_each_field_or_apply_its_select_expression(spark: SparkSession) -> None:
    spec = parse_table(SILVER, "silver/readings.yaml")
    bronze = spark.createDataFrame(
        [(" ab1 ", "2026-11-01T10:00:00+01:00", "12.5", "f1"), ("cd2", "yesterday", "n/a", "f1")],
        "station string, at string, value string, _source_file string",
    ).withColumn("_ingested_at", F.lit(datetime(2026, 11, 2, tzinfo=timezone.utc)))
    got = completed(spec, spec.transform_fn()(with_input(bronze)))
    want = spark.createDataFrame(
        [("AB1", datetime(2026, 11, 1, 9, tzinfo=timezone.utc), 12.5), ("CD2", None, None)],
        "station string, measured_at timestamp, value double",
    )
    assert_df_equality(got.select("station", "measured_at", "value"), want, ignore_row_order=True, ignore_nullable=True)
    # what the runner supplies: the record as delivered, the lineage and the record hash
    assert {"__in", "_source_file", "_ingested_at", "_record_hash"} <= set(got.columns)
    assert got.where(F.col("_record_hash").isNull()).count() == 0
    assert got.select("_record_hash").distinct().count() == 2


def test_a_transform_that_drops_the_record_is_refused_by_name(spark: SparkSession) -> None:
    spec = parse_table(SILVER, "silver/readings.yaml")
    typed = spark.createDataFrame([("a", None, 1.0)], "station string, measured_at timestamp, value double")
    with pytest.raises(PipelineError, match=r"silver.readings: transform None returned no __in column"):
        completed(spec, typed)


def test_a_select_expression_that_does_not_resolve_names_its_column(spark: SparkSession) -> None:
    spec = parse_table({**SILVER, "select": {"measured_at": "try_to_timestamp(when_it_was)"}}, "silver/readings.yaml")
    bronze = spark.createDataFrame([("a", "x", "1")], "station string, at string, value string")
    with pytest.raises(PipelineError, match=r"silver/readings.yaml: select.measured_at: .*when_it_was"):
        spec.transform_fn()(with_input(bronze))


def test_gold_sql_is_the_query_over_the_upstream_tables(spark: SparkSession) -> None:
    spec = parse_table(GOLD, "gold/per_station.yaml")
    readings = spark.createDataFrame([("A", 1.0), ("A", 3.0), ("B", 2.0)], "station string, value double")
    got = spec.transform_fn()({"readings": readings}, None)
    want = spark.createDataFrame([("A", 2, 3.0), ("B", 1, 2.0)], "station string, readings bigint, top double")
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    with pytest.raises(PipelineError, match="built in full"):
        spec.transform_fn()({"readings": readings}, {"readings": readings})
    bad = parse_table({**GOLD, "sql": "SELECT station, nope FROM {readings}"}, "gold/per_station.yaml")
    with pytest.raises(PipelineError, match=r"gold/per_station.yaml: sql: .*nope"):
        bad.transform_fn()({"readings": readings}, None)


def test_without_a_version_an_identical_resend_changes_nothing_and_a_different_record_wins(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    schema = "k string, v double, _record_hash bigint"
    spark.createDataFrame([("a", 1.0, 11), ("b", 2.0, 22)], schema).write.format("delta").save(path)
    resend = spark.createDataFrame([("a", 1.0, 11), ("b", 2.0, 22)], schema)
    m = delta.merge_latest(spark, path, resend, ["k"], None, "_record_hash")
    assert (m.get("numTargetRowsUpdated", 0), m.get("numTargetRowsInserted", 0)) == (0, 0)
    fix = spark.createDataFrame([("a", 1.5, 10), ("c", 3.0, 33)], schema)  # a lower hash wins too: the later delivery
    m = delta.merge_latest(spark, path, fix, ["k"], None, "_record_hash")
    assert (m["numTargetRowsUpdated"], m["numTargetRowsInserted"]) == (1, 1)
    want = spark.createDataFrame([("a", 1.5, 10), ("b", 2.0, 22), ("c", 3.0, 33)], schema)
    assert_df_equality(spark.read.format("delta").load(path), want, ignore_row_order=True, ignore_nullable=True)
