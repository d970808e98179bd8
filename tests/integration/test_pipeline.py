"""The whole pipeline on a temporary lake, checked against the generator's manifest."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from deltalake import DeltaTable as RsDeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import EnvConfig, load_tables
from lakehouse.errors import PipelineError, ReconciliationError, SourceError
from lakehouse.io import delta, delta_log
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline import bronze, silver
from lakehouse.pipeline.generate import generate_raw_zone, read_manifests
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.pipeline.summary import reconcile
from lakehouse.runlog import RunLog, new_run_id
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for
from tests.integration.helpers import all_tables, manifest_totals, restricted, versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOURCES = {"customers", "merchants", "transactions", "chargebacks", "fx_rates"}


@dataclass
class Built:
    root: Path
    env: EnvConfig
    lake: Lake
    params: GeneratorParams
    # records landed by hand (not by the generator), per source: records, landed, quarantined, duplicates
    extra: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    tables: tuple[str, ...] = ()  # the tables the lake's runs build (all if empty)
    # gold built incrementally however small the lake (pipeline.gold_rebuild_below_mib=0), for
    # tests of that path; otherwise a lake this small has its gold rebuilt in full
    incremental_gold: bool = False


def run_pipeline(built: Built, *args: str) -> None:
    incremental = ["--conf", "pipeline.gold_rebuild_below_mib=0"] if built.incremental_gold else []
    assert pipeline_main(["--conf", f"lake_root={built.root}", *incremental, "--no-summary", *restricted(args, built.tables)]) == 0


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("lake")
    env = env_for(root)
    # this module checks the incremental gold path against full recomputes
    b = Built(root, env, Lake(env, load_tables(CONF)), GeneratorParams(scale=0.01, days=4), incremental_gold=True)
    generate_raw_zone(spark, b.params, env.paths.raw, env.paths.truth)
    run_pipeline(b)
    yield b


def expected_totals(spark: SparkSession, built: Built) -> dict[str, dict[str, int]]:
    """What the generator's manifests say, plus the records a test delivered by hand."""
    totals = manifest_totals(spark, built.env.paths.raw)
    for source, extra in built.extra.items():
        for k, n in extra.items():
            totals[source][k] += n
    return totals


def count(spark: SparkSession, path: str) -> int:
    return spark.read.format("delta").load(path).count()


def check_accounting(spark: SparkSession, built: Built) -> None:
    lake = built.lake
    totals = expected_totals(spark, built)
    recon = {r.table: r for r in reconcile(spark, lake)}
    for source in SOURCES:
        exp = totals[source]
        r = recon[f"silver.{source}"]
        got = {"records": r.bronze, "landed": r.silver, "quarantined": r.quarantined, "duplicates": r.duplicates}
        assert got == exp, f"{source}: pipeline {got} != manifest {exp}"


def test_row_accounting_matches_the_manifest_exactly(spark: SparkSession, built: Built) -> None:
    totals = expected_totals(spark, built)
    assert totals["transactions"]["quarantined"] > 0 and totals["transactions"]["duplicates"] > 0
    check_accounting(spark, built)


def test_quarantine_holds_original_records_and_rules(spark: SparkSession, built: Built) -> None:
    q = spark.read.format("delta").load(built.lake.quarantine_path("silver.transactions"))
    rules = {r for row in q.select("errors").collect() for r in row.errors}
    assert {"well_formed", "amount_positive", "currency_known", "event_time_valid"} <= rules
    malformed = q.where(F.array_contains("errors", "well_formed")).first()
    assert json.loads(malformed.record)["_corrupt_record"].startswith('{"transaction_id"')
    assert malformed.source_file.endswith(".txt") and "arrival_date=" in malformed.source_file


def test_schema_drift_is_rescued_not_dropped(spark: SparkSession, built: Built) -> None:
    day = built.params.day(built.params.drift_day)
    bronze_tx = spark.read.format("delta").load(built.lake.path("bronze.transactions"))
    drifted = bronze_tx.where(F.col("_arrival_date") == F.lit(day))
    assert drifted.count() > 0
    assert drifted.where(F.col("_rescued_data").contains('"wallet"') | F.col("_corrupt_record").isNotNull()).count() == drifted.count()
    silver_tx = spark.read.format("delta").load(built.lake.path("silver.transactions"))
    assert silver_tx.where(F.col("extra_fields").contains("wallet")).count() > 0


def test_every_table_opens_in_delta_rs_with_the_same_rows(spark: SparkSession, built: Built) -> None:
    for name, path in all_tables(built.lake):
        rs = RsDeltaTable(path).to_pyarrow_table()
        df = spark.read.format("delta").load(path)
        assert rs.num_rows == df.count(), name
    spec = built.lake.spec("silver.transactions")
    rs_ids = sorted(RsDeltaTable(built.lake.path(spec.name)).to_pyarrow_table(columns=["transaction_id"]).column(0).to_pylist())
    spark_ids = sorted(r[0] for r in spark.read.format("delta").load(built.lake.path(spec.name)).select("transaction_id").collect())
    assert rs_ids == spark_ids


def test_silver_keys_are_unique_and_partitioned(spark: SparkSession, built: Built) -> None:
    tx = spark.read.format("delta").load(built.lake.path("silver.transactions"))
    assert tx.count() == tx.select("transaction_id").distinct().count()
    assert tx.where(F.col("status") == "pending").count() < tx.count() * 0.05  # updates won
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{built.lake.path('silver.transactions')}`").first()
    assert detail.partitionColumns == ["event_date"]
    cust = spark.read.format("delta").load(built.lake.path("silver.customers"))
    assert cust.where("is_current").count() == cust.select("customer_id").distinct().count()


def test_gold_matches_a_full_recompute(spark: SparkSession, built: Built) -> None:
    """Every gold table, marts and feature tables, built incrementally run after run, equals its
    transform over the whole of silver."""
    lake = built.lake
    for spec in lake.layer("gold"):
        if built.tables and spec.name not in built.tables:
            continue
        tables = {lake.spec(u).short_name: spark.read.format("delta").load(lake.path(u)) for u in spec.upstream}
        fn = spec.transform_fn()
        full = fn(tables, None, spec=spec) if spec.features else fn(tables, None)
        stored = spark.read.format("delta").load(lake.path(spec.name))
        assert_df_equality(stored, full.select(*stored.columns), ignore_row_order=True, ignore_nullable=True)


def test_second_run_with_no_new_raw_files_changes_no_table(spark: SparkSession, built: Built) -> None:
    before = versions(spark, built.lake)
    run_pipeline(built)
    assert versions(spark, built.lake) == before
    check_accounting(spark, built)


def test_a_new_raw_batch_is_ingested_alone(spark: SparkSession, built: Built) -> None:
    lake = built.lake
    before = {s: count(spark, lake.path(f"bronze.{s}")) for s in SOURCES}
    built.params = dataclasses.replace(built.params, days=5)
    result = generate_raw_zone(spark, built.params, built.env.paths.raw, built.env.paths.truth)
    new_day = built.params.day(4).isoformat()
    assert result.new_days == [new_day]
    manifest = read_manifests(spark, built.env.paths.raw)[new_day]
    run_pipeline(built, "--layers", "bronze")
    for s in SOURCES:
        added = count(spark, lake.path(f"bronze.{s}")) - before[s]
        assert added == manifest["sources"][s]["records"], s
    tx = spark.read.format("delta").load(lake.path("bronze.transactions"))
    assert tx.where(F.col("_arrival_date") == F.lit(built.params.day(4))).count() == manifest["sources"]["transactions"]["records"]
    gold_before = delta.version(spark, lake.path("gold.merchant_daily_kpis"))
    run_pipeline(built, "--layers", "silver,gold")
    check_accounting(spark, built)
    # gold was updated incrementally (replaceWhere on the touched days), and still equals a full recompute
    hist = spark.sql(f"DESCRIBE HISTORY delta.`{lake.path('gold.merchant_daily_kpis')}`").where(F.col("version") > gold_before)
    ops = [r.operationParameters.get("predicate", "") for r in hist.collect()]
    assert ops and all("event_date IN" in p for p in ops), ops
    assert delta_log.latest_stamp(spark, lake.path("gold.customer_360"), "gold.customer_360").operation == "MERGE"
    test_gold_matches_a_full_recompute(spark, built)


def test_date_filters_read_only_the_files_of_those_dates(spark: SparkSession, built: Built) -> None:
    """Partition pruning on silver.transactions, file skipping by min/max statistics on the
    unpartitioned gold.merchant_daily_kpis (after the incremental run above it holds several
    files), counted from the executed plan's scan metrics."""
    for name in ("silver.transactions", "gold.merchant_daily_kpis"):
        table = spark.read.format("delta").load(built.lake.path(name))
        files = table.select(F.col("_metadata.file_path").alias("f"), "event_date")
        newest = table.agg(F.max("event_date")).first()[0]
        holding = files.where(F.col("event_date") == newest).select("f").distinct().count()
        total = files.select("f").distinct().count()
        read = delta.files_read(table.where(F.col("event_date") == F.lit(newest)))
        assert 1 <= read == holding < total, (name, read, holding, total)


def _write_crm_batch(root: str, day: str, lines: list[str]) -> None:
    folder = Path(root) / "customers" / f"arrival_date={day}"
    folder.mkdir(parents=True)
    header = "customer_id,first_name,last_name,email,phone,birth_date,street,city,postcode,country,signup_date,updated_at"
    (folder / "crm-export.csv").write_text("\n".join([header, *lines]) + "\n")


def test_scd2_history_of_a_customer_updated_twice(spark: SparkSession, built: Built) -> None:
    lake = built.lake
    cust = spark.read.format("delta").load(lake.path("silver.customers"))
    first = cust.where("customer_id = 'C00000007'").orderBy("valid_from").collect()
    base = first[-1]
    row = "C00000007,Anna,Muster,{email},+49 1,{birth},{street},Berlin,10115,DE,{signup},{ts}"
    fmt = {"birth": base.birth_date.isoformat(), "signup": base.signup_date.isoformat()}
    _write_crm_batch(
        built.env.paths.raw,
        "2026-02-10",
        [
            row.format(email="anna@new.example", street="1 New Street", ts="2026-02-10 09:00:00", **fmt),
            row.format(email="anna@new.example", street="1 New Street", ts="2026-02-10 09:00:00", **fmt),  # re-sent
        ],
    )
    _write_crm_batch(
        built.env.paths.raw,
        "2026-02-11",
        [
            row.format(email="anna@newer.example", street="2 Newer Street", ts="2026-02-11 18:30:00", **fmt),
        ],
    )
    built.extra["customers"] = {"records": 3, "landed": 2, "quarantined": 0, "duplicates": 1}
    # a stored sum already off by one for the customer this run touches: customer_360 adds the
    # change's difference to it, and the run's recount of the rows it wrote catches it
    c360 = DeltaTable.forPath(spark, lake.path("gold.customer_360"))
    c360.update("customer_id = 'C00000007'", {"frequency": "frequency + 1"})
    with pytest.raises(ReconciliationError, match=r"gold\.customer_360: 1 of the rows version \d+ wrote differ .* e\.g\. C00000007$"):
        run_pipeline(built)
    failed = spark.read.format("delta").load(lake.ops_path("run_log")).where("table = 'gold.customer_360'").orderBy(F.desc("ended_at"))
    assert failed.first().status == "failed"
    c360.update("customer_id = 'C00000007'", {"frequency": "frequency - 1"})
    run_pipeline(built)  # the gold tables after customer_360, which that run did not reach
    check_accounting(spark, built)
    hist = spark.read.format("delta").load(lake.path("silver.customers")).where("customer_id = 'C00000007'").orderBy("valid_from")
    got = [(r.email, r.valid_from.isoformat(sep=" "), r.valid_to and r.valid_to.isoformat(sep=" "), r.is_current) for r in hist.collect()]
    assert got[-3:] == [
        (base.email, base.valid_from.isoformat(sep=" "), "2026-02-10 09:00:00", False),
        ("anna@new.example", "2026-02-10 09:00:00", "2026-02-11 18:30:00", False),
        ("anna@newer.example", "2026-02-11 18:30:00", None, True),
    ]
    assert len(got) == len(first) + 2
    c360 = spark.read.format("delta").load(lake.path("gold.customer_360")).where("customer_id = 'C00000007'").first()
    assert (c360.first_name, c360.last_name) == ("Anna", "Muster")
    before = versions(spark, lake)
    run_pipeline(built)
    assert versions(spark, lake) == before


def test_a_failed_write_leaves_the_table_intact_and_the_next_run_recovers(spark: SparkSession, built: Built) -> None:
    lake = built.lake
    broken = dataclasses.replace(lake.spec("silver.transactions"), transform="tests.integration.helpers.broken_transactions")
    broken_lake = Lake(lake.env, MappingProxyType({**lake.specs, broken.name: broken}))
    built.params = dataclasses.replace(built.params, days=6)
    generate_raw_zone(spark, built.params, built.env.paths.raw, built.env.paths.truth)
    run_pipeline(built, "--layers", "bronze")
    v_before = delta.version(spark, lake.path("silver.transactions"))
    n_before = count(spark, lake.path("silver.transactions"))
    runlog = RunLog(spark, broken_lake, "test", new_run_id(), built.params.day(5))
    with pytest.raises(Exception, match="channel missing"):
        silver.build_table(spark, broken_lake, broken, runlog)
    assert delta.version(spark, lake.path("silver.transactions")) == v_before
    assert count(spark, lake.path("silver.transactions")) == n_before
    failed = spark.read.format("delta").load(lake.ops_path("run_log")).where(f"run_id = '{runlog.run_id}'").first()
    assert failed.status == "failed" and "channel missing" in failed.error
    # the fixed code picks up the same bronze rows; meanwhile a quarantined record was deleted
    # behind the pipeline's back: the run that changes the table next fails its accounting,
    # naming the table and the rows missing, and is marked failed (its data commits stand)
    quarantine = DeltaTable.forPath(spark, lake.quarantine_path("silver.transactions"))
    # (a record of an earlier run: the failed run's rejects are replaced by the retry's, on their batch key)
    record = quarantine.toDF().where(F.col("run_id") != runlog.run_id).select("record").first()["record"]
    matching = quarantine.toDF().where(F.col("record") == record)
    rows = matching.collect()
    gone = spark.createDataFrame(rows, matching.schema)  # the rows themselves, not a view of the table
    lost = len(rows)
    quarantine.delete(F.col("record") == record)
    pattern = (
        r"reconciliation failed: silver\.transactions: bronze \d+ != silver \d+ \+ quarantined \d+ \+ duplicates \d+ "
        rf"\(\+{lost} rows\); run (\S+) is marked failed"
    )
    with pytest.raises(ReconciliationError, match=pattern) as caught:
        run_pipeline(built)
    run_id = re.search(pattern, str(caught.value)).group(1)  # type: ignore[union-attr]
    ended = spark.read.format("delta").load(lake.ops_path("run_log")).where(f"run_id = '{run_id}' AND table = '*' AND status != 'started'")
    assert [(r.status, "reconciliation" in r.error) for r in ended.collect()] == [("failed", True)]
    gone.write.format("delta").mode("append").save(lake.quarantine_path("silver.transactions"))  # put back
    check_accounting(spark, built)


def test_missing_raw_folder_and_empty_batch_fail_clearly(spark: SparkSession, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    lake = Lake(env, load_tables(CONF))
    runlog = RunLog(spark, lake, "test", new_run_id(), GeneratorParams().start_date)
    spec = lake.spec("bronze.transactions")
    with pytest.raises(SourceError, match=r"bronze.transactions: raw folder .*/raw/transactions does not exist"):
        bronze.ingest_table(spark, lake, spec, runlog)
    (Path(env.paths.raw) / "transactions" / "arrival_date=2026-01-01").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"empty batch: .*arrival_date=2026-01-01 holds no data files"):
        bronze.ingest_table(spark, lake, spec, runlog)
    assert not delta.is_delta(spark, lake.path("bronze.transactions"))
    with pytest.raises(PipelineError, match="upstream bronze.transactions has no Delta table"):
        silver.build_table(spark, lake, lake.spec("silver.transactions"), runlog)


def test_a_source_with_nothing_delivered_yet_is_skipped_or_if_required_stops_the_run(spark: SparkSession, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    lake = Lake(env, load_tables(CONF))
    generate_raw_zone(spark, GeneratorParams(scale=0.005, days=1), env.paths.raw, env.paths.truth)
    shutil.rmtree(Path(env.paths.raw) / "chargebacks")  # declared, never delivered
    pick = "bronze.customers,bronze.chargebacks,silver.customers,silver.chargebacks"
    assert pipeline_main(["--conf", f"lake_root={tmp_path}", "--no-summary", "--layers", "bronze,silver", "--tables", pick]) == 0
    made = {n: delta.is_delta(spark, lake.path(n)) for n in pick.split(",")}
    assert made == {"bronze.customers": True, "bronze.chargebacks": False, "silver.customers": True, "silver.chargebacks": False}
    spec = lake.spec("bronze.chargebacks")
    assert spec.source is not None
    required = dataclasses.replace(spec, source=dataclasses.replace(spec.source, required=True))
    strict = Lake(env, MappingProxyType({**lake.specs, spec.name: required}))
    with pytest.raises(SourceError, match=r"bronze.chargebacks: nothing delivered to .*/raw/chargebacks yet and the source is required"):
        bronze.undelivered(spark, strict, None)
