"""Anomaly checks of the profile job against a constructed history: null shares per column,
failure rates per rule, schema drift and rows read, each alert with its value and baseline."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import load_tables
from lakehouse.io import delta
from lakehouse.quality import metrics as quality_metrics
from lakehouse.quality.profile import PROFILE_SCHEMA, Alert, anomalies
from lakehouse.runlog import SCHEMA as RUN_LOG_SCHEMA
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for


def _at(day: int) -> datetime:
    return datetime(2026, 1, day, 6, 0, tzinfo=timezone.utc)


def _write(spark: SparkSession, path: str, ddl: str, rows: list[dict[str, Any]]) -> None:
    schema = delta.schema_of(spark, ddl)
    delta.append_rows(spark, path, [tuple(r.get(f.name) for f in schema.fields) for r in rows], schema, "test rows")


# Null share per (table, column) and profile run; profile-05 is the run checked.
NULL_SHARES: dict[tuple[str, str], dict[str, float]] = {
    # history 0.0625, 0.125, 0.0625, 0.125: median 0.09375, deviations all 0.03125 (MAD 0.03125);
    # far when off by more than max(0.02, 0.5 * 0.09375, 4 * 1.4826 * 0.03125 = 0.1853): 0.5 is
    ("silver.customers", "email"): {
        "profile-01": 0.0625,
        "profile-02": 0.125,
        "profile-03": 0.0625,
        "profile-04": 0.125,
        "profile-05": 0.5,
    },
    # history all 0.5: median 0.5, MAD 0; a drop to 0.0 is off by 0.5 > max(0.02, 0.25, 0): an
    # alert too (null shares are flagged both ways)
    ("silver.transactions", "ip_address"): {f"profile-0{i}": 0.5 for i in range(1, 5)} | {"profile-05": 0.0},
    # history 0.125, 0.25, 0.375, 0.25: median 0.25, deviations 0.125, 0, 0.125, 0 (MAD 0.0625);
    # 0.5 is off by 0.25 < max(0.02, 0.125, 4 * 1.4826 * 0.0625 = 0.3707): noisy column, no alert
    ("silver.customers", "phone"): {"profile-01": 0.125, "profile-02": 0.25, "profile-03": 0.375, "profile-04": 0.25, "profile-05": 0.5},
    # history all 0.0: 0.015625 is off by less than the floor 0.02: no alert
    ("silver.transactions", "device_id"): {f"profile-0{i}": 0.0 for i in range(1, 5)} | {"profile-05": 0.015625},
    # one earlier run only (a new column): fewer than min_history (3) values, no alert
    ("silver.merchants", "website"): {"profile-04": 0.0, "profile-05": 1.0},
    # gone from the latest run: nothing to compare
    ("silver.merchants", "fax"): {f"profile-0{i}": 0.0 for i in range(1, 5)},
}

# Failed of evaluated per (table, rule, level) and pipeline run; run-05 is the run checked.
FAILURES: dict[tuple[str, str, str], dict[str, tuple[int, int]]] = {
    # rates 0.01, 0.012, 0.008, 0.01: median 0.01, deviations 0, 0.002, 0.002, 0 (MAD 0.001);
    # 0.05 is off by 0.04 > max(0.005, 1.0 * 0.01, 4 * 1.4826 * 0.001 = 0.0059) and above: alert
    ("silver.transactions", "currency_known", "row"): {
        "run-01": (10, 1000),
        "run-02": (12, 1000),
        "run-03": (8, 1000),
        "run-04": (10, 1000),
        "run-05": (50, 1000),
    },
    # rates 0.03, 0.034, 0.026, 0.03: median 0.03 (MAD 0.002); 0.05 is off by 0.02 < max(0.005,
    # 1.0 * 0.03, 0.0119): no alert
    ("silver.transactions", "fx_rate_known", "row"): {
        "run-01": (30, 1000),
        "run-02": (34, 1000),
        "run-03": (26, 1000),
        "run-04": (30, 1000),
        "run-05": (50, 1000),
    },
    # a table-level rule has no failure rate: never compared
    ("silver.transactions", "volume_as_usual", "table"): {f"run-0{i}": (0, 1) for i in range(1, 5)} | {"run-05": (1, 1)},
    # two earlier runs evaluated it (the others had no rows): fewer than 3 rates, no alert
    ("silver.customers", "country_known", "row"): {
        "run-01": (5, 500),
        "run-02": (5, 500),
        "run-03": (0, 0),
        "run-04": (0, 0),
        "run-05": (250, 500),
    },
    # not evaluated in the latest run: nothing to compare
    ("silver.customers", "email_valid", "row"): {f"run-0{i}": (5, 500) for i in range(1, 5)} | {"run-05": (0, 0)},
}

# Schema drift checks: (table, run, fields found, ok).
DRIFT = [
    ("bronze.transactions", "run-05", 2.0, False),  # this run's drift: an alert
    ("bronze.customers", "run-05", 0.0, True),  # checked, no drift
    ("bronze.merchants", "run-03", 1.0, False),  # drift of an earlier run
]

# Rows read per (table, run, status).
ROWS_READ: list[tuple[str, str, str, int]] = [
    # succeeded runs read 1000, 1040, 960, 1000: median 1000.0, deviations 0, 40, 40, 0 (MAD 20);
    # 2500 is off by 1500 > max(10, 1.0 * 1000, 4 * 1.4826 * 20 = 118.6): alert. The failed runs'
    # 5000 rows are no baseline (with them the median would be 1020).
    ("silver.transactions", "run-01", "succeeded", 1000),
    ("silver.transactions", "run-02", "succeeded", 1040),
    ("silver.transactions", "run-02b", "failed", 5000),
    ("silver.transactions", "run-03", "succeeded", 960),
    ("silver.transactions", "run-03b", "failed", 5000),
    ("silver.transactions", "run-04", "succeeded", 1000),
    ("silver.transactions", "run-05", "succeeded", 2500),
    # 500, 520, 480, 500 then 600: off by 100 < max(10, 500, 118.6): no alert
    ("silver.customers", "run-01", "succeeded", 500),
    ("silver.customers", "run-02", "succeeded", 520),
    ("silver.customers", "run-03", "succeeded", 480),
    ("silver.customers", "run-04", "succeeded", 500),
    ("silver.customers", "run-05", "succeeded", 600),
]


def _day(run: str) -> int:
    return int(run.split("-")[1][:2])


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_anomalies_flag_exactly_the_figures_far_from_their_history(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(env_for(tmp_path), load_tables(CONF))
    profiles = [
        {
            "run_id": run,
            "table": table,
            "column": column,
            "type": "string",
            "rows": 1024,
            "nulls": int(share * 1024),
            "null_share": share,
            "distinct_approx": 10,
            "outliers": 0,
            "profiled_at": _at(_day(run)),
        }
        for (table, column), series in NULL_SHARES.items()
        for run, share in series.items()
    ]
    _write(spark, lake.ops_path("quality_profiles"), PROFILE_SCHEMA, profiles)
    metric_rows = [
        {
            "run_id": run,
            "job": "pipeline",
            "table": table,
            "rule": rule,
            "severity": "quarantine",
            "check": "expr",
            "level": level,
            "evaluated": evaluated,
            "passed": evaluated - failed,
            "failed": failed,
            "warned": 0,
            "quarantined": failed,
            "ok": failed == 0,
            "run_date": date(2026, 1, _day(run)),
            "recorded_at": _at(_day(run)),
        }
        for (table, rule, level), series in FAILURES.items()
        for run, (failed, evaluated) in series.items()
    ]
    metric_rows += [
        {
            "run_id": run,
            "job": "pipeline",
            "table": table,
            "rule": "schema_drift",
            "severity": "warn",
            "check": "drift:rescue",
            "level": "table",
            "evaluated": 1,
            "passed": int(ok),
            "failed": int(not ok),
            "warned": int(not ok),
            "quarantined": 0,
            "observed": fields,
            "threshold": "no unexpected or missing fields",
            "ok": ok,
            "run_date": date(2026, 1, _day(run)),
            "recorded_at": _at(_day(run)),
        }
        for table, run, fields, ok in DRIFT
    ]
    _write(spark, lake.ops_path("quality_metrics"), quality_metrics.SCHEMA, metric_rows)
    runs = [
        {
            "run_id": run,
            "job": "pipeline",
            "table": table,
            "status": status,
            "run_date": date(2026, 1, _day(run)),
            "started_at": _at(_day(run)),
            "ended_at": _at(_day(run)),
            "rows_read": rows,
        }
        for table, run, status, rows in ROWS_READ
    ]
    _write(spark, lake.ops_path("run_log"), RUN_LOG_SCHEMA, runs)

    got = anomalies(spark, lake, "profile-05", "run-05")

    expected = [
        Alert("silver.customers", "null_share", "email", 0.5, 0.09375, "silver.customers.email: 50.0% nulls, usually 9.4%"),
        Alert("silver.transactions", "null_share", "ip_address", 0.0, 0.5, "silver.transactions.ip_address: 0.0% nulls, usually 50.0%"),
        Alert(
            "silver.transactions",
            "failure_rate",
            "currency_known",
            50 / 1000,
            10 / 1000,
            "silver.transactions: rule currency_known failed 5.00% of rows, usually 1.00%",
        ),
        Alert(
            "bronze.transactions",
            "schema_drift",
            "drift:rescue",
            2.0,
            0.0,
            "bronze.transactions: 2 unexpected or missing field(s) (drift:rescue)",
        ),
        Alert("silver.transactions", "row_count", "rows_read", 2500.0, 1000.0, "silver.transactions: 2500 rows read, usually 1000"),
    ]
    # the order of alerts within a kind follows the rows' order in the tables: compare sorted
    key = lambda a: (a.kind, a.table, a.subject)  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)
