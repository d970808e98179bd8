"""The maintenance job: OPTIMIZE / VACUUM / statistics, beside the pipeline, losing nothing."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import load_tables
from lakehouse.errors import PipelineError
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline import maintenance
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for
from tests.integration import test_pipeline as tp
from tests.integration.helpers import WITHOUT_FEATURES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOT = ["bronze.transactions", "silver.customers", "silver.transactions", "gold.merchant_daily_kpis", "ops.run_log"]


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tp.Built]:
    root = tmp_path_factory.mktemp("maint")
    env = env_for(root)
    b = tp.Built(root, env, Lake(env, load_tables(CONF)), GeneratorParams(scale=0.005, days=2), tables=WITHOUT_FEATURES)
    generate_raw_zone(spark, b.params, env.paths.raw, env.paths.truth)
    tp.run_pipeline(b)
    yield b


def data_files(path: str) -> int:
    return sum(1 for p in Path(path).rglob("*.parquet") if "_delta_log" not in p.parts and "_change_data" not in p.parts)


def snapshot(spark: SparkSession, lake: Lake) -> dict[str, DataFrame]:
    out = {}
    for name, path, _z, _h in maintenance.targets(lake):
        if Path(path, "_delta_log").is_dir():
            df = spark.read.format("delta").load(path)
            out[name] = spark.createDataFrame(df.collect(), df.schema)  # the rows as they are now
    return out


def test_maintenance_beside_a_running_pipeline_loses_nothing(spark: SparkSession, built: tp.Built) -> None:
    """A new day is processed while OPTIMIZE / VACUUM / ANALYZE run over every table in a loop:
    row accounting still matches the generator's manifests exactly and gold equals a full recompute."""
    built.params = dataclasses.replace(built.params, days=3)
    generate_raw_zone(spark, built.params, built.env.paths.raw, built.env.paths.truth)
    passes, errors = [], []
    stop = threading.Event()

    def beside() -> None:
        # the tables each layer of the run writes, maintained half of the time: each pass is
        # followed by a pause as long as itself (back to back, the two cores' contention made the
        # run five times slower); passes go on until the run ends
        try:
            while not stop.is_set() or not passes:
                started = time.monotonic()
                passes.append(maintenance.run(spark, built.lake, HOT))
                stop.wait(time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t = threading.Thread(target=beside, name="maintenance")
    t.start()
    try:
        tp.run_pipeline(built)
    finally:
        stop.set()
        t.join(timeout=900)
    assert not errors, errors
    assert passes and {m.table for m in passes[0]} == set(HOT)
    tp.check_accounting(spark, built)
    tp.test_gold_matches_a_full_recompute(spark, built)


def test_maintenance_compacts_and_vacuums_without_changing_a_row(spark: SparkSession, built: tp.Built) -> None:
    lake = built.lake
    before = snapshot(spark, lake)
    assert len(before) >= 15, sorted(before)
    on_disk = {name: data_files(path) for name, path, _z, _h in maintenance.targets(lake) if name in before}
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        done = {
            m.table: m for m in maintenance.run(spark, dataclasses.replace(lake, env=env_for(built.root, "maintenance.retention_hours=0")))
        }
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    assert set(done) == set(before)
    for name, path, zorder, _h in maintenance.targets(lake):
        if name not in before:
            continue
        m = done[name]
        assert_df_equality(spark.read.format("delta").load(path), before[name], ignore_row_order=True, ignore_nullable=True)
        # OPTIMIZE left at most one file per partition (these tables are far below the target size)
        partitions = spark.read.format("delta").load(path).inputFiles()
        spec_parts = lake.spec(name).partition_by if name in lake.specs else ()
        n_parts = spark.read.format("delta").load(path).select(*spec_parts).distinct().count() if spec_parts else 1
        assert m.files_after == len(partitions) <= max(1, n_parts), (name, m)
        # VACUUM with no retention: nothing but the current files is left on disk
        assert data_files(path) == m.files_after, (name, data_files(path), m)
        assert m.vacuumed_files >= on_disk[name] - m.files_after, (name, on_disk[name], m)
        assert m.stats_recomputed == 0  # every write collected them
        if zorder and m.compacted_files:  # what it compacted, it Z-ordered (a one-file table needs neither)
            hist = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where("operation = 'OPTIMIZE'").orderBy("version", ascending=False).first()
            assert all(c in hist["operationParameters"]["zOrderBy"] for c in zorder), (name, hist["operationParameters"])
    assert done["ops.run_log"].files_after == 1
    assert sum(m.vacuumed_files for m in done.values()) > 0
    # a second run finds nothing to do: no partition got a file since (Z-order is not redone)
    again = maintenance.run(spark, lake, ["silver.transactions", "gold.merchant_daily_kpis"])
    assert [(m.compacted_files, m.files_after) for m in again] == [(0, done[m.table].files_after) for m in again]


def test_unknown_table_names_are_listed(built: tp.Built) -> None:
    with pytest.raises(PipelineError, match=r"unknown table\(s\) silver\.nope \(known: .*silver\.transactions"):
        maintenance.targets(built.lake, ["silver.nope"])


def test_files_without_statistics_get_them(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "nostats")
    spark.conf.set("spark.databricks.delta.stats.collect", "false")
    try:
        spark.range(0, 1000, 1, 2).write.format("delta").save(path)
        spark.range(1000, 1500, 1, 1).write.format("delta").mode("append").save(path)
    finally:
        spark.conf.unset("spark.databricks.delta.stats.collect")
    assert maintenance.refresh_stats(spark, path) >= 2
    assert maintenance.refresh_stats(spark, path) == 0  # now every file has them
    last = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version", ascending=False).first()
    assert last["operation"] == "COMPUTE STATS"
    assert spark.read.format("delta").load(path).where("id >= 1200").count() == 300
