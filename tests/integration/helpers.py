"""Helpers for the integration tests (a deliberately broken transform, table snapshots)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from lakehouse.io import delta
from lakehouse.tables import Lake
from tests.conftest import REPO


def broken_transactions(batch: DataFrame, fx_rates: DataFrame, reporting_currency: str = "EUR") -> DataFrame:
    """Returns a frame that does not match the declared schema: the write must be refused."""
    from lakehouse.payments.silver import build_transactions

    return build_transactions(batch, fx_rates, reporting_currency).drop("channel")


SOURCES = ("chargebacks", "customers", "fx_rates", "merchants", "transactions")
BRONZE_SILVER = tuple(f"{layer}.{source}" for layer in ("bronze", "silver") for source in SOURCES)
# Every bronze and silver table and the two gold marts: one written by replaceWhere
# (merchant_daily_kpis), one by MERGE on its key (customer_360, which also time-travels to the
# versions its last run read). Tests of the run machinery (faults, maintenance) build these only:
# the feature tables go through the same gold runner (run log, input versions, MERGE) and their
# incremental builds are checked against full recomputes in test_pipeline, while here they would
# add about a fifth to every run.
WITHOUT_FEATURES = (*BRONZE_SILVER, "gold.customer_360", "gold.merchant_daily_kpis")
# What the fraud model reads: bronze, silver and the feature tables (not the marts).
FOR_THE_MODEL = (*BRONZE_SILVER, "gold.customer_features", "gold.merchant_features")


def restricted(args: Sequence[str], tables: Sequence[str]) -> list[str]:
    """A pipeline job's ``args`` restricted to ``tables`` (none: all), unless they name tables themselves."""
    return [*args] if not tables or "--tables" in args else [*args, "--tables", ",".join(tables)]


def all_tables(lake: Lake) -> list[tuple[str, str]]:
    names = [s.name for layer in ("bronze", "silver", "gold") for s in lake.layer(layer)]
    out = [(n, lake.path(n)) for n in names]
    out += [(f"quarantine.{lake.spec(n).short_name}", lake.quarantine_path(n)) for n in names if n.startswith("silver.")]
    return out


def versions(spark: SparkSession, lake: Lake) -> dict[str, int | None]:
    return {name: delta.version(spark, path) for name, path in all_tables(lake)}


def full_recompute(spark: SparkSession, lake: Lake, name: str) -> DataFrame:
    """A gold table computed from scratch from the lake's current silver tables."""
    spec = lake.spec(name)
    tables = {lake.spec(u).short_name: spark.read.format("delta").load(lake.path(u)) for u in spec.upstream}
    fn = spec.transform_fn()
    full = fn(tables, None, spec=spec) if spec.features else fn(tables, None)
    return delta.check_schema(full, delta.schema_of(spark, spec.schema), name)


def manifest_totals(spark: SparkSession, raw_root: str) -> dict[str, dict[str, int]]:
    """Per source, what the generator's manifests say the lake must hold: records delivered,
    landed in silver, quarantined, duplicates."""
    from lakehouse.pipeline.generate import read_manifests

    totals = {s: {"records": 0, "landed": 0, "quarantined": 0, "duplicates": 0} for s in SOURCES}
    for m in read_manifests(spark, raw_root).values():
        for source, v in m["sources"].items():
            totals[source]["records"] += v["records"]
            for k in ("landed", "quarantined", "duplicates"):
                totals[source][k] += v["expected"][k]
    return totals


def accounting(spark: SparkSession, lake: Lake) -> dict[str, dict[str, int]]:
    """Per source, what the lake holds, in the terms of :func:`manifest_totals`."""
    from lakehouse.pipeline.summary import reconcile

    recon = {r.table: r for r in reconcile(spark, lake)}
    return {
        s: {"records": r.bronze, "landed": r.silver, "quarantined": r.quarantined, "duplicates": r.duplicates}
        for s in SOURCES
        for r in [recon[f"silver.{s}"]]
    }


def sigkilled(point: str, job: str, *args: str) -> None:
    """Run ``jobs/<job>.py args`` in its own process with ``LAKEHOUSE_FAULT=point``
    (:mod:`lakehouse.faults`); it must die there by SIGKILL."""
    env = {**os.environ, "LAKEHOUSE_FAULT": point, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [sys.executable, f"jobs/{job}.py", *args, "--conf", "spark.sql.shuffle.partitions=2"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, f"{point}: expected SIGKILL, got {done.returncode}\n{done.stderr[-3000:]}"
