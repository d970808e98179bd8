"""Config is checked before Spark starts: every error names the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.config import interpolate, load_env, load_tables
from lakehouse.errors import ConfigError
from lakehouse.tables import Lake
from tests.conftest import CONF


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    dst = tmp_path / "conf"
    shutil.copytree(CONF, dst)
    return dst


def test_env_overlay_interpolation_and_overrides(conf: Path) -> None:
    env = load_env(
        conf, "local", ["spark.sql.shuffle.partitions=3", "reporting_currency=usd"], environ={"LAKEHOUSE_ROOT": "s3a://bucket/lake"}
    )
    assert env.lake_root == "s3a://bucket/lake"
    assert env.paths.raw == "s3a://bucket/lake/raw"
    assert env.paths.tables == "s3a://bucket/lake/tables"
    assert env.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert env.spark.conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"  # from base
    assert env.spark.master == "local[2]"
    assert env.reporting_currency == "USD"
    assert env.pipeline.gold_rebuild_below_mib == 64  # from base
    assert load_env(conf, "local", ["pipeline.gold_rebuild_below_mib=0.5"], environ={}).pipeline.gold_rebuild_below_mib == 0.5
    cluster = load_env(conf, "cluster", environ={"SPARK_MASTER_URL": "spark://10.0.0.1:7077", "LAKEHOUSE_ROOT": "hdfs://nn:8020/lake"})
    assert cluster.spark.master == "spark://10.0.0.1:7077"
    assert cluster.lake_root == "hdfs://nn:8020/lake"
    assert cluster.spark.conf["spark.sql.shuffle.partitions"] == "512"
    assert cluster.spark.python_archive == "build/pyenv.tar.gz"
    # a cluster's lake must be named: no silent local default
    with pytest.raises(ConfigError, match="cluster.yaml: .lake_root: environment variable LAKEHOUSE_ROOT is not set"):
        load_env(conf, "cluster", environ={})


def test_submit_args_ship_the_packed_python_environment(conf: Path, tmp_path: Path) -> None:
    from lakehouse.cli import submit_args

    missing = load_env(conf, "cluster", [f"spark.python_archive={tmp_path}/none.tar.gz"], environ={"LAKEHOUSE_ROOT": "/lake"})
    with pytest.raises(ConfigError, match=r"spark.python_archive: .*none.tar.gz does not exist: build it with `make pyenv`"):
        submit_args(missing, None)
    (tmp_path / "env.tar.gz").write_bytes(b"")
    env = load_env(conf, "cluster", [f"spark.python_archive={tmp_path}/env.tar.gz"], environ={"LAKEHOUSE_ROOT": "/lake"})
    args = submit_args(env, "spark://h:7077")
    assert args[args.index("--archives") + 1] == f"{tmp_path}/env.tar.gz#environment"
    assert "spark.pyspark.python=./environment/bin/python" in args and args[1] == "spark://h:7077"
    assert "--archives" not in submit_args(load_env(conf, "local", environ={}), None)


def test_default_lake_root_is_local_and_absolute(conf: Path) -> None:
    env = load_env(conf, "local", environ={})
    assert env.lake_root.endswith("/lakehouse-data") and env.lake_root.startswith("/")


def test_config_hash_changes_with_settings(conf: Path) -> None:
    a = load_env(conf, "local", environ={})
    b = load_env(conf, "local", ["spark.sql.shuffle.partitions=3"], environ={})
    assert a.config_hash != b.config_hash
    assert a.config_hash == load_env(conf, "local", environ={}).config_hash


def test_interpolation_without_default_names_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"f.yaml: lake_root: environment variable NOPE is not set"):
        interpolate("${NOPE}/x", "f.yaml", "lake_root", {})
    assert interpolate("${A:-d}/${B}", "f", "k", {"B": "b"}) == "d/b"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("lake_rot: /x\n", "lake_rot", "unknown key"),
        ("spark:\n  master: 3\n", "spark.master", "expected str"),
        ("spark:\n  mastr: local\n", "spark.mastr", "unknown key"),
        ("reporting_currency: EURO\n", "reporting_currency", "not an ISO 4217 code"),
        ("spark: [1, 2\n", "line", "not valid YAML"),
        ("paths:\n  rw: /x\n", "paths.rw", "unknown key"),
        ("maintenance:\n  retention_hours: -1\n", "maintenance.retention_hours", "not a whole number"),
        ("maintenance:\n  keep: 3\n", "maintenance.keep", "unknown key"),
        ("pipeline:\n  gold_rebuild_below_mib: lots\n", "pipeline.gold_rebuild_below_mib", "not a number of MiB"),
        ("pipeline:\n  gold_rebuild_below_mib: -1\n", "pipeline.gold_rebuild_below_mib", "not a number of MiB"),
    ],
)
def test_bad_env_file_names_file_and_key(conf: Path, text: str, key: str, problem: str) -> None:
    (conf / "env" / "local.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_env(conf, "local", environ={})
    assert info.value.file.endswith("local.yaml")
    assert key in (info.value.key or "")
    assert problem in info.value.problem


def test_unknown_environment(conf: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment 'prod' .known: cluster, local"):
        load_env(conf, "prod")


def test_bad_override(conf: Path) -> None:
    with pytest.raises(ConfigError, match="--conf: nonsense: unknown key"):
        load_env(conf, "local", ["nonsense=1"], environ={})


def test_tables_load_and_resolve(conf: Path) -> None:
    tables = load_tables(conf)
    tx = tables["silver.transactions"]
    assert tx.keys == ("transaction_id",)
    assert tx.partition_by == ("event_date",)
    assert (tx.zorder_by, tx.retention_hours, tables["silver.merchants"].zorder_by) == (("customer_id", "merchant_id"), None, ())
    assert tx.upstream == ("bronze.transactions", "silver.fx_rates", "silver.customers", "silver.merchants")
    assert [e.name for e in tx.expectations if e.severity == "fail"] == [
        "transaction_id_not_null",
        "event_date_not_null",
        "amount_reporting_positive",
    ]
    assert tx.transform_fn().__name__ == "build_transactions"
    lake = Lake(load_env(conf, "local", ["lake_root=/lake"], environ={}), tables)
    assert lake.path("silver.transactions") == "/lake/tables/silver/transactions"
    assert lake.quarantine_path("silver.transactions") == "/lake/tables/quarantine/transactions"
    assert lake.raw_path("bronze.transactions") == "/lake/raw/transactions"
    order = [s.name for s in lake.layer("silver")]
    assert order.index("silver.fx_rates") < order.index("silver.transactions")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "key", "problem"),
    [
        ("silver/transactions.yaml", "owner:", "ownr:", "ownr", "unknown key"),
        ("silver/transactions.yaml", "owner: payments-data@marketplace.example\n", "", "owner", "required key is missing"),
        ("silver/transactions.yaml", "keys: [transaction_id]", "keys: transaction_id", "keys", "expected list"),
        ("silver/transactions.yaml", "silver.fx_rates,", "silver.fx_ratez,", "upstream[1]", "unknown table 'silver.fx_ratez'"),
        ("silver/transactions.yaml", "amount decimal(18,2),", "amount decimal(18,2,", "schema", "unparseable DDL"),
        ("silver/transactions.yaml", "build_transactions", "build_transactionz", "transform", "has no function"),
        ("silver/transactions.yaml", "partition_by: [event_date]", "partition_by: [event_day]", "partition_by", "not in the schema"),
        ("silver/transactions.yaml", "mode: merge", "mode: overwrite", "mode", "not valid for silver"),
        ("silver/transactions.yaml", "zorder_by: [customer_id,", "zorder_by: [customer,", "zorder_by", "not in the schema"),
        ("silver/transactions.yaml", "zorder_by: [customer_id,", "zorder_by: [event_date,", "zorder_by", "is a partition column"),
        ("gold/merchant_daily_kpis.yaml", "replace_by: event_date", "replace_by: event_day", "replace_by", "not in the schema"),
        ("gold/merchant_daily_kpis.yaml", "replace_by: event_date\n", "", "replace_by", "mode replace_where needs the column"),
        ("gold/customer_360.yaml", "keys: [customer_id]", "keys: [customer_id]\nreplace_by: customer_id", "replace_by", "only for mode"),
        ("silver/transactions.yaml", "rows_per_day: 30000000", "rows_per_day: many", "expected_scale.rows_per_day", "whole number > 0"),
        ("silver/transactions.yaml", "row_bytes: 148", "row_bytes: 148, days: 1", "expected_scale.days", "unknown key"),
        # the layout rule: a day's partition must hold ~1 GB at the expected scale
        ("silver/transactions.yaml", "rows_per_day: 30000000", "rows_per_day: 3000000", "partition_by", "would hold ~444 MB"),
        (
            "silver/chargebacks.yaml",
            "zorder_by: [chargeback_date]",
            "partition_by: [chargeback_date]",
            "partition_by",
            "~10 MB at the expected scale (86,000 rows x 116 B), below the ~1 GB",
        ),
        (
            "silver/transactions.yaml",
            "partition_by: [event_date]",
            "partition_by: [event_date]\nretention_hours: 1.5",
            "retention_hours",
            "expected int",
        ),
        ("bronze/transactions.yaml", "format: json", "format: xml", "source.format", "'xml' is not one of"),
        ("bronze/transactions.yaml", "format: json", "format: json\n  topic: payments", "source.topic", "not a key of a json source"),
        ("bronze/transactions_stream.yaml", "  topic: payments\n", "", "source.topic", "required key is missing"),
        (
            "bronze/transactions.yaml",
            "format: json",
            "format: json\n  max_record_bytes: 10",
            "source.max_record_bytes",
            "not a key of a json",
        ),
        ("bronze/transactions_stream.yaml", "topic: payments", "topic: payments\n  max_record_bytes: 0", "source.max_record_bytes", "> 0"),
        ("bronze/transactions_stream.yaml", "topic: payments", "topic: payments\n  path: x", "source.path", "not a key of a kafka source"),
        (
            "bronze/transactions_stream.yaml",
            "topic: payments",
            "topic: payments\n  schema_drift: evolve",
            "source.schema_drift",
            "a kafka source rescues or fails",
        ),
        (
            "silver/transactions.yaml",
            "streamed_from: bronze.transactions_stream",
            "streamed_from: bronze.transactions",
            "streamed_from",
            "'bronze.transactions' is not a stream table (stream tables: bronze.transactions_stream)",
        ),
        ("gold/customer_360.yaml", "keys: [customer_id]", "keys: [customer_id]\nstreamed_from: x", "streamed_from", "only silver tables"),
        (
            "silver/transactions.yaml",
            "check: in_set",
            "check: in_sett",
            "expectations[8] (currency_known).check",
            "unknown check 'in_sett'",
        ),
        (
            "silver/transactions.yaml",
            "args: {column: amount, max: 1000000}",
            "args: {col: amount}",
            "expectations[7] (amount_in_range).check",
            "takes no argument col",
        ),
        (
            "silver/transactions.yaml",
            "args: {column: transaction_id}\n    severity: quarantine",
            "severity: quarantine",
            "expectations[1] (transaction_id_present).check",
            "needs argument column",
        ),
        ("silver/transactions.yaml", "severity: warn", "severity: warning", "expectations[13] (customer_known).severity", "not one of"),
        ("silver/transactions.yaml", "name: amount_positive", "name: amount_valid", "expectations[6] (amount_valid).name", "another rule"),
        ("silver/transactions.yaml", "    expr: amount > 0\n", "", "expectations[6] (amount_positive)", "exactly one of check"),
        (
            "silver/transactions.yaml",
            "max: 0.02}\n    severity: warn",
            "max: 0.02}\n    severity: quarantine",
            "expectations[18] (device_id_mostly_present).severity",
            "warn or fail, not quarantine",
        ),
        (
            "silver/transactions.yaml",
            "table: silver.customers}",
            "table: silver.chargebacks}",
            "expectations.customer_known.args.table",
            "must be one of the upstream",
        ),
        (
            "gold/customer_360.yaml",
            "severity: fail",
            "severity: quarantine",
            "expectations[0] (customer_id_not_null).severity",
            "gold tables have no quarantine",
        ),
    ],
)
def test_bad_table_file_names_file_and_key(conf: Path, file: str, old: str, new: str, key: str, problem: str) -> None:
    _edit(conf / "tables" / file, old, new)
    with pytest.raises(ConfigError) as info:
        load_tables(conf)
    assert info.value.file.endswith(file)
    assert info.value.key == key
    assert problem in info.value.problem


def test_a_stream_feeding_silver_must_carry_the_fields_of_its_batch_source(conf: Path) -> None:
    _edit(
        conf / "tables" / "bronze" / "transactions_stream.yaml",
        "status string, updated_at string",
        "status string, updated_at string, note string",
    )
    with pytest.raises(ConfigError) as info:
        load_tables(conf)
    assert info.value.file.endswith("silver/transactions.yaml") and info.value.key == "streamed_from"
    assert "does not declare the same fields as bronze.transactions (one transform types both): note string" in info.value.problem


def test_unknown_table_name_lists_known(conf: Path) -> None:
    lake = Lake(load_env(conf, "local", environ={}), load_tables(conf))
    with pytest.raises(Exception, match="unknown table 'silver.nope' .known: bronze.chargebacks"):
        lake.path("silver.nope")
