"""Schema drift policies of a source (rescue, evolve, fail) and a changed field type."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path
from types import MappingProxyType

import pytest
from pyspark.sql import SparkSession

from lakehouse.config import ConfigError, load_tables
from lakehouse.errors import SchemaDriftError
from lakehouse.io import delta
from lakehouse.pipeline import bronze, silver
from lakehouse.pipeline.replay import Selection, replay_table
from lakehouse.quality.expectations import Expectation
from lakehouse.runlog import RunLog, new_run_id
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def doc(mid: str, **extra: object) -> str:
    d = {
        "merchant_id": mid,
        "name": f"Shop {mid}",
        "category": {"mcc": "5942", "name": "books"},
        "address": {"city": "Berlin", "country": "DE"},
        "risk": {"tier": "low", "score": "0.2"},
        "onboarded_at": "2020-01-01",
        "updated_at": "2026-01-01T10:00:00Z",
        **extra,
    }
    return json.dumps(d)


def land(root: Path, source: str, day: str, lines: list[str]) -> Path:
    folder = root / "raw" / source / f"arrival_date={day}"
    folder.mkdir(parents=True)
    f = folder / "part-0.txt"
    f.write_text("\n".join(lines) + "\n")
    return f


def lake_with(root: Path, table: str, policy: str) -> Lake:
    lake = Lake(env_for(root), load_tables(CONF))
    spec = lake.spec(table)
    assert spec.source is not None
    changed = dataclasses.replace(spec, source=dataclasses.replace(spec.source, schema_drift=policy))
    return Lake(lake.env, MappingProxyType({**lake.specs, table: changed}))


def runlog(spark: SparkSession, lake: Lake) -> RunLog:
    return RunLog(spark, lake, "test", new_run_id(), date(2026, 1, 2))


def test_rescue_keeps_unknown_fields_and_a_changed_type_is_quarantined(spark: SparkSession, tmp_path: Path) -> None:
    lake = lake_with(tmp_path, "bronze.merchants", "rescue")
    land(
        tmp_path,
        "merchants",
        "2026-01-01",
        [doc("M1"), doc("M2", website="m2.example"), doc("M3", risk={"tier": "low", "score": {"v": 1}})],
    )
    rl = runlog(spark, lake)
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), rl)
    b = spark.read.format("delta").load(lake.path("bronze.merchants"))
    assert "website" not in b.columns
    assert json.loads(b.where("merchant_id = 'M2'").first()._rescued_data) == {"website": "m2.example"}
    drift_metric = rl.entries[-1].quality["schema_drift"]
    assert (drift_metric.severity, drift_metric.failed, drift_metric.observed) == ("warn", 1, 1.0)
    silver.build_table(spark, lake, lake.spec("silver.merchants"), rl)
    q = spark.read.format("delta").load(lake.quarantine_path("silver.merchants")).collect()
    assert [(json.loads(r.record)["merchant_id"], r.errors) for r in q] == [("M3", ["risk_score_valid"])]
    assert json.loads(q[0].record)["risk"]["score"] == '{"v":1}'  # the original value is kept, not nulled
    assert sorted(r[0] for r in spark.read.format("delta").load(lake.path("silver.merchants")).select("merchant_id").collect()) == [
        "M1",
        "M2",
    ]


def test_evolve_adds_the_new_field_as_a_column_of_bronze_and_silver(spark: SparkSession, tmp_path: Path) -> None:
    lake = lake_with(tmp_path, "bronze.merchants", "evolve")
    land(tmp_path, "merchants", "2026-01-01", [doc("M1")])
    rl = runlog(spark, lake)
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), rl)
    silver.build_table(spark, lake, lake.spec("silver.merchants"), rl)
    land(tmp_path, "merchants", "2026-01-02", [doc("M2", website="m2.example"), doc("M3")])
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), rl)
    land(tmp_path, "merchants", "2026-01-03", [doc("M4", website="m4.example", loyalty="gold")])
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), rl)
    b = spark.read.format("delta").load(lake.path("bronze.merchants"))
    got = {r.merchant_id: (r.website, r.loyalty, r._rescued_data) for r in b.collect()}
    assert got == {"M1": (None, None, None), "M2": ("m2.example", None, None), "M3": (None, None, None), "M4": ("m4.example", "gold", None)}
    silver.build_table(spark, lake, lake.spec("silver.merchants"), rl)
    s = spark.read.format("delta").load(lake.path("silver.merchants"))
    assert {r.merchant_id: (r.website, r.loyalty) for r in s.collect()} == {
        "M1": (None, None),
        "M2": ("m2.example", None),
        "M3": (None, None),
        "M4": ("m4.example", "gold"),
    }
    # A record with an evolved field, quarantined by a (too strict) rule, then replayed once the
    # rule is gone: the evolved field comes back with it.
    spec = lake.spec("silver.merchants")
    strict = Expectation("no_m5", "quarantine", "a rule that turns out wrong", expr="merchant_id <> 'M5'")
    strict_lake = Lake(
        lake.env, MappingProxyType({**lake.specs, spec.name: dataclasses.replace(spec, expectations=(*spec.expectations, strict))})
    )
    land(tmp_path, "merchants", "2026-01-04", [doc("M5", website="m5.example", loyalty="silver")])
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), rl)
    silver.build_table(spark, strict_lake, strict_lake.spec(spec.name), rl)
    q = spark.read.format("delta").load(lake.quarantine_path(spec.name)).collect()
    assert [(json.loads(r.record)["website"], r.errors) for r in q] == [("m5.example", ["no_m5"])]
    replay_table(spark, lake, spec, rl, Selection(rule="no_m5"))
    s = spark.read.format("delta").load(lake.path(spec.name)).where("merchant_id = 'M5'")
    assert [(r.website, r.loyalty) for r in s.collect()] == [("m5.example", "silver")]
    assert spark.read.format("delta").load(lake.quarantine_path(spec.name)).count() == 0


def test_fail_refuses_the_batch_naming_file_and_field(spark: SparkSession, tmp_path: Path) -> None:
    lake = lake_with(tmp_path, "bronze.merchants", "fail")
    land(tmp_path, "merchants", "2026-01-01", [doc("M1")])
    bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), runlog(spark, lake))
    before = delta.version(spark, lake.path("bronze.merchants"))
    bad = land(tmp_path, "merchants", "2026-01-02", [doc("M2", website="m2.example"), doc("M3")])
    for _ in range(2):  # refused again on a rerun: the checkpoint did not move past the file
        with pytest.raises(
            SchemaDriftError,
            match=rf"bronze.merchants: schema drift .*website \(1 record\(s\), e.g. .*{bad.parent.name}/part-0.txt\); source policy is fail",  # noqa: E501
        ):
            bronze.ingest_table(spark, lake, lake.spec("bronze.merchants"), runlog(spark, lake))
        assert delta.version(spark, lake.path("bronze.merchants")) == before


def test_csv_header_drift_fails_and_evolve_needs_json(spark: SparkSession, tmp_path: Path) -> None:
    lake = lake_with(tmp_path, "bronze.customers", "fail")
    header = "customer_id,first_name,last_name,email,phone,birth_date,street,city,postcode,country,signup_date,updated_at,loyalty_tier"
    land(tmp_path, "customers", "2026-01-01", [header, "C1,A,B,a@b.io,1,1990-01-01,s,c,1,DE,2025-01-01,2026-01-01 10:00:00,gold"])
    with pytest.raises(SchemaDriftError, match=r"bronze.customers: schema drift .*loyalty_tier \(1 record"):
        bronze.ingest_table(spark, lake, lake.spec("bronze.customers"), runlog(spark, lake))
    assert not delta.is_delta(spark, lake.path("bronze.customers"))
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    f = conf / "tables" / "bronze" / "customers.yaml"
    f.write_text(f.read_text().replace("  path: customers\n", "  path: customers\n  schema_drift: evolve\n"))
    with pytest.raises(ConfigError, match="source.schema_drift: evolve needs a self-describing format"):
        load_tables(conf)
