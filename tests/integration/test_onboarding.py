"""docs/onboarding.md, followed literally: a CSV outside the sample domain onboarded in YAML alone.

Every file the page shows (the three table declarations and the four raw files) is read from the
page itself, written where the page says, and the page's command is run after each delivery; the
tables are then compared whole with what the page says they hold.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from lakehouse.config import load_env, load_tables
from lakehouse.io import delta_log
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.pipeline.summary import reconcile
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = REPO / "docs" / "onboarding.md"
FILE = re.compile(r"^File `([^`]+)`:\n\n```\w*\n(.*?)^```$", re.M | re.S)
TABLES = "bronze.air_quality,silver.air_quality,gold.air_quality_daily"


def page_files() -> dict[str, str]:
    return {path: body for path, body in FILE.findall(PAGE.read_text(encoding="utf-8"))}


def test_the_page_shows_every_file_and_runs_the_command_the_test_runs() -> None:
    files = page_files()
    assert sorted(p for p in files if p.startswith("conf/")) == [
        "conf/tables/bronze/air_quality.yaml",
        "conf/tables/gold/air_quality_daily.yaml",
        "conf/tables/silver/air_quality.yaml",
    ]
    assert len([p for p in files if p.startswith("raw/")]) == 4
    assert f"./spark-submit.sh pipeline --tables {TABLES}\n" in PAGE.read_text(encoding="utf-8")
    # YAML alone: no transform names Python code
    assert not any("transform:" in body for body in files.values())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


SILVER = "location_id bigint, location string, parameter string, units string, measured_at timestamp, value double, lat double, lon double"
GOLD = "location_id bigint, parameter string, day date, readings bigint, mean_value double, max_value double"
PARIS = (2178, "Paris Centre")
LYON = (8118, "Lyon Gerland")


def silver_rows(lyon_11h: float, new_hour: bool) -> list[tuple]:
    paris = [
        (*PARIS, p, "µg/m³", at, v, 48.8566, 2.3522)
        for p, at, v in [("pm25", utc(2026, 11, 1, 9), 12.4), ("pm25", utc(2026, 11, 1, 10), 15.1), ("no2", utc(2026, 11, 1, 9), 31.0)]
    ]
    lyon = [(*LYON, "pm25", "µg/m³", utc(2026, 11, 1, 10), lyon_11h, 45.7272, 4.83)]
    if new_hour:
        lyon.append((*LYON, "pm25", "µg/m³", utc(2026, 11, 2, 9), 6.0, 45.7272, 4.83))
    return paris + lyon


def gold_rows(lyon_11h: float, new_hour: bool) -> list[tuple]:
    rows = [
        (2178, "pm25", date(2026, 11, 1), 2, 13.75, 15.1),
        (2178, "no2", date(2026, 11, 1), 1, 31.0, 31.0),
        (8118, "pm25", date(2026, 11, 1), 1, lyon_11h, lyon_11h),
    ]
    return rows + ([(8118, "pm25", date(2026, 11, 2), 1, 6.0, 6.0)] if new_hour else [])


def test_onboarding_a_csv_in_yaml_alone_end_to_end(spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf, root = tmp_path / "conf", tmp_path / "lake"
    shutil.copytree(CONF, conf)
    files = page_files()
    for path, body in files.items():
        if path.startswith("conf/"):
            (tmp_path / path).write_text(body, encoding="utf-8")
    lake = Lake(load_env(conf, "local", [f"lake_root={root}"]), load_tables(conf))
    raw = [p for p in files if p.startswith("raw/")]

    def deliver(day: str) -> None:
        for p in raw:
            if f"arrival_date={day}/" in p:
                target = root / p
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(files[p], encoding="utf-8")

    def run(summary: bool = False) -> None:
        args = ["--conf-dir", str(conf), "--conf", f"lake_root={root}", "--tables", TABLES]
        assert pipeline_main([*args] if summary else [*args, "--no-summary"]) == 0

    def table(name: str):  # noqa: ANN202
        return spark.read.format("delta").load(lake.path(name))

    def check(lyon_11h: float, new_hour: bool) -> None:
        got = table("silver.air_quality").select(*[c.split()[0] for c in SILVER.split(", ")])
        assert_df_equality(got, spark.createDataFrame(silver_rows(lyon_11h, new_hour), SILVER), ignore_row_order=True, ignore_nullable=True)
        assert_df_equality(
            table("gold.air_quality_daily"),
            spark.createDataFrame(gold_rows(lyon_11h, new_hour), GOLD),
            ignore_row_order=True,
            ignore_nullable=True,
        )

    # the first delivery: 7 records, 3 of them bad, one rule each
    deliver("2026-11-02")
    run(summary=True)
    out = capsys.readouterr().out
    assert "silver.air_quality" in out and "quarantine.air_quality" in out
    assert "transactions" not in out and "customer_360" not in out  # the summary speaks of these tables only
    check(8.2, new_hour=False)
    q = spark.read.format("delta").load(lake.quarantine_path("silver.air_quality"))
    errors = sorted(tuple(r.errors) for r in q.collect())
    assert errors == [("measured_at_valid",), ("value_valid",), ("value_valid",)]
    assert [(r.bronze, r.silver, r.quarantined, r.duplicates) for r in reconcile(spark, lake, ["silver.air_quality"])] == [(7, 4, 3, 0)]

    # an identical re-send and a new hour: duplicates, not updates
    deliver("2026-11-03")
    run()
    merged = delta_log.latest_stamp(spark, lake.path("silver.air_quality"), "silver.air_quality")
    assert merged is not None and (merged.metrics["numTargetRowsInserted"], merged.metrics.get("numTargetRowsUpdated", 0)) == (1, 0)
    check(8.2, new_hour=True)
    assert [(r.bronze, r.silver, r.quarantined, r.duplicates) for r in reconcile(spark, lake, ["silver.air_quality"])] == [(15, 5, 6, 4)]

    # a correction: the latest delivery of a key wins, and gold follows
    deliver("2026-11-04")
    run()
    check(8.4, new_hour=True)
    assert [(r.bronze, r.silver, r.quarantined, r.duplicates) for r in reconcile(spark, lake, ["silver.air_quality"])] == [(16, 5, 6, 5)]
