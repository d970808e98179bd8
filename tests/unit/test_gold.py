from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError
from lakehouse.payments.gold import changed_keys, customer_360, merchant_daily_kpis, with_recency

TX = "transaction_id string, customer_id string, merchant_id string, event_date date, amount_reporting decimal(18,2), status string"


def _tables(spark: SparkSession) -> dict[str, DataFrame]:
    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    tx = spark.createDataFrame(
        [
            ("t1", "C1", "M1", d1, Decimal("10.00"), "approved"),
            ("t2", "C2", "M1", d1, Decimal("30.00"), "approved"),
            ("t3", "C1", "M1", d1, Decimal("20.00"), "declined"),
            ("t4", "C1", "M1", d1, Decimal("100.00"), "approved"),
            ("t5", "C1", "M2", d2, Decimal("5.00"), "approved"),
        ],
        TX,
    )
    cb = spark.createDataFrame(
        [("cb1", "t4", Decimal("100.00"))], "chargeback_id string, transaction_id string, amount_reporting decimal(18,2)"
    )
    merchants = spark.createDataFrame(
        [("M1", "Nova Shop", "electronics"), ("M2", "Blue Books", "books")], "merchant_id string, merchant_name string, category string"
    )
    customers = spark.createDataFrame(
        [
            ("C1", "Anna", "Old", "DE", "Bonn", date(2025, 1, 1), datetime(2025, 1, 1), False),
            ("C1", "Anna", "Müller", "DE", "Berlin", date(2025, 1, 1), datetime(2026, 1, 1), True),
            ("C2", "Ben", "Smith", "GB", "London", date(2025, 6, 1), datetime(2025, 6, 1), True),
            ("C3", "Cleo", "Nopay", "FR", "Paris", date(2025, 6, 1), datetime(2025, 6, 1), True),
        ],
        "customer_id string, first_name string, last_name string, country_code string, city string, signup_date date, "
        "valid_from timestamp, is_current boolean",
    )
    return {"transactions": tx, "chargebacks": cb, "merchants": merchants, "customers": customers}


def test_merchant_daily_kpis_full_build(spark: SparkSession) -> None:
    got = merchant_daily_kpis(_tables(spark), None)
    expected = spark.createDataFrame(
        [
            (
                date(2026, 1, 1),
                "M1",
                "Nova Shop",
                "electronics",
                4,
                3,
                Decimal("140.00"),
                0.75,
                1,
                0.3333,
                2,
                Decimal("25.00"),
                Decimal("89.50"),
            ),
            (date(2026, 1, 2), "M2", "Blue Books", "books", 1, 1, Decimal("5.00"), 1.0, 0, 0.0, 1, Decimal("5.00"), Decimal("5.00")),
        ],
        "event_date date, merchant_id string, merchant_name string, category string, transactions bigint, approved bigint, "
        "amount_reporting decimal(18,2), approval_rate double, chargebacks bigint, chargeback_rate double, distinct_customers bigint, "
        "p50_amount decimal(18,2), p95_amount decimal(18,2)",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_merchant_daily_kpis_recomputes_only_the_touched_merchant_days(spark: SparkSession) -> None:
    """An incremental build returns every row of the touched dates (the table is replaced by
    date), aggregating only the touched (date, merchant) pairs and keeping the table's other rows."""
    tables = _tables(spark)
    extra = spark.createDataFrame([("t6", "C2", "M2", date(2026, 1, 1), Decimal("7.00"), "approved")], TX)
    tables["transactions"] = tables["transactions"].unionByName(extra)
    full = merchant_daily_kpis(tables, None)
    # the stored rows carry a marker, so a kept row is told from a recomputed one
    tables["merchant_daily_kpis"] = full.withColumn("transactions", F.lit(999).cast("bigint"))
    marked = tables["merchant_daily_kpis"]

    # a chargeback on t4 (day 1, M1): M1's day 1 recomputed, M2's day 1 kept, day 2 left out
    changes = {"chargebacks": spark.createDataFrame([("t4", "insert")], "transaction_id string, _change_type string")}
    got = merchant_daily_kpis(tables, changes)
    expected = full.where("event_date = DATE'2026-01-01' AND merchant_id = 'M1'").unionByName(
        marked.where("event_date = DATE'2026-01-01' AND merchant_id = 'M2'")
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)

    # a new payment of M2 on day 2: that pair only
    changes = {
        "transactions": spark.createDataFrame(
            [(date(2026, 1, 2), "M2", "insert")], "event_date date, merchant_id string, _change_type string"
        )
    }
    got = merchant_daily_kpis(tables, changes)
    assert_df_equality(got, full.where("event_date = DATE'2026-01-02'"), ignore_row_order=True, ignore_nullable=True)

    del tables["merchant_daily_kpis"]
    with pytest.raises(PipelineError, match="needs the table's current rows"):
        merchant_daily_kpis(tables, changes)


def test_customer_360(spark: SparkSession) -> None:
    got = customer_360(_tables(spark), None).drop("first_name", "last_name", "signup_date", "attributes_since", "spend_by_category")
    expected = spark.createDataFrame(
        [
            (
                "C1",
                "DE",
                "Berlin",
                3,
                Decimal("115.00"),
                Decimal("100.00"),
                Decimal("15.00"),
                1,
                Decimal("38.33"),
                date(2026, 1, 1),
                date(2026, 1, 2),
                ["electronics", "books"],
            ),
            (
                "C2",
                "GB",
                "London",
                1,
                Decimal("30.00"),
                Decimal("0.00"),
                Decimal("30.00"),
                0,
                Decimal("30.00"),
                date(2026, 1, 1),
                date(2026, 1, 1),
                ["electronics"],
            ),
            ("C3", "FR", "Paris", 0, Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), 0, None, None, None, []),
        ],
        "customer_id string, country_code string, city string, frequency bigint, gross_spend decimal(18,2), "
        "charged_back decimal(18,2), lifetime_value decimal(18,2), chargebacks bigint, avg_amount decimal(18,2), "
        "first_transaction_date date, last_transaction_date date, favourite_categories array<string>",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    recency = with_recency(customer_360(_tables(spark), None), date(2026, 1, 12)).where("customer_id = 'C1'").first()
    assert recency.recency_days == 10


def test_customer_360_spend_by_category(spark: SparkSession) -> None:
    row = customer_360(_tables(spark), None).where("customer_id = 'C1'").first()
    assert [(s.category, s.spend) for s in row.spend_by_category] == [("books", Decimal("5.00")), ("electronics", Decimal("110.00"))]


CDF_TX = (
    "transaction_id string, customer_id string, merchant_id string, event_date date, status string, _change_type string, "
    "_commit_version bigint"
)
CB = "chargeback_id string, transaction_id string, amount_reporting decimal(18,2)"


def _incremental(
    spark: SparkSession, before: dict[str, DataFrame], after: dict[str, DataFrame], changes: dict[str, DataFrame]
) -> list[str]:
    """The incremental rows equal a full recount of the same customers."""
    after = {**after, "customer_360": customer_360(before, None)}
    got = customer_360(after, changes, previous=before)
    touched = [r.customer_id for r in got.select("customer_id").collect()]
    expected = customer_360(after, None).where(F.col("customer_id").isin(touched))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    return touched


def test_customer_360_adds_what_the_changes_make_a_difference_of(spark: SparkSession) -> None:
    before = _tables(spark)
    d1, d5 = date(2026, 1, 1), date(2026, 1, 5)
    after = dict(before)
    after["transactions"] = (
        before["transactions"]
        .where("transaction_id != 't3'")
        .unionByName(spark.createDataFrame([("t3", "C1", "M1", d1, Decimal("20.00"), "approved")], TX))  # declined -> approved
        .unionByName(spark.createDataFrame([("t6", "C2", "M2", d5, Decimal("8.00"), "approved")], TX))  # a new payment
    )
    after["chargebacks"] = before["chargebacks"].unionByName(
        spark.createDataFrame(
            [("cb2", "t2", Decimal("30.00"))], "chargeback_id string, transaction_id string, amount_reporting decimal(18,2)"
        )
    )
    changes = {
        "transactions": spark.createDataFrame(
            [
                ("t3", "C1", "M1", d1, "declined", "update_preimage", 2),
                ("t3", "C1", "M1", d1, "approved", "update_postimage", 2),
                ("t6", "C2", "M2", d5, "approved", "insert", 2),
            ],
            CDF_TX,
        ),
        "chargebacks": spark.createDataFrame([("t2", "insert")], "transaction_id string, _change_type string"),
        "customers": spark.createDataFrame([("C3", "update_postimage")], "customer_id string, _change_type string"),
    }
    assert sorted(_incremental(spark, before, after, changes)) == ["C1", "C2", "C3"]


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_customer_360_recounts_a_customer_whose_payment_went_away(spark: SparkSession) -> None:
    before = _tables(spark)
    after = dict(before)
    # t5 (C1's only day-2 payment) is declined after all: C1's last day goes back to day 1
    after["transactions"] = before["transactions"].withColumn(
        "status", F.when(F.col("transaction_id") == "t5", F.lit("declined")).otherwise(F.col("status"))
    )
    d2 = date(2026, 1, 2)
    changes = {
        "transactions": spark.createDataFrame(
            [("t5", "C1", "M2", d2, "approved", "update_preimage", 2), ("t5", "C1", "M2", d2, "declined", "update_postimage", 2)], CDF_TX
        )
    }
    assert _incremental(spark, before, after, changes) == ["C1"]
    row = customer_360({**after, "customer_360": customer_360(before, None)}, changes, previous=before).first()
    assert (row.last_transaction_date, row.favourite_categories) == (date(2026, 1, 1), ["electronics"])


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_customer_360_follows_a_merchants_new_category_and_a_payment_moved_to_another_day(spark: SparkSession) -> None:
    before = _tables(spark)
    d1, d3 = date(2026, 1, 1), date(2026, 1, 3)
    after = dict(before)
    # M2 (C1's books) is re-categorised; t2 (C2's) was dated a day too early; M1's new name counts for nobody
    after["merchants"] = spark.createDataFrame(
        [("M1", "Nova Shop GmbH", "electronics"), ("M2", "Blue Books", "media")],
        "merchant_id string, merchant_name string, category string",
    )
    after["transactions"] = before["transactions"].withColumn(
        "event_date", F.when(F.col("transaction_id") == "t2", F.lit(d3)).otherwise(F.col("event_date"))
    )
    m = "merchant_id string, merchant_name string, category string, _change_type string, _commit_version bigint"
    changes = {
        "merchants": spark.createDataFrame(
            [
                ("M1", "Nova Shop", "electronics", "update_preimage", 2),
                ("M1", "Nova Shop GmbH", "electronics", "update_postimage", 2),
                ("M2", "Blue Books", "books", "update_preimage", 3),
                ("M2", "Blue Books", "media", "update_postimage", 3),
            ],
            m,
        ),
        "transactions": spark.createDataFrame(
            [("t2", "C2", "M1", d1, "approved", "update_preimage", 2), ("t2", "C2", "M1", d3, "approved", "update_postimage", 2)], CDF_TX
        ),
    }
    assert sorted(_incremental(spark, before, after, changes)) == ["C1", "C2"]
    got = customer_360({**after, "customer_360": customer_360(before, None)}, changes, previous=before)
    rows = {r.customer_id: r for r in got.collect()}
    assert [(s.category, s.spend) for s in rows["C1"].spend_by_category] == [("electronics", Decimal("110.00")), ("media", Decimal("5.00"))]
    assert (rows["C2"].first_transaction_date, rows["C2"].last_transaction_date) == (d3, d3)


def test_customer_360_incremental_needs_the_previous_tables(spark: SparkSession) -> None:
    changes = {"customers": spark.createDataFrame([("C2", "insert")], "customer_id string, _change_type string")}
    with pytest.raises(PipelineError, match="previous"):
        customer_360(_tables(spark), changes)


def test_changed_keys_ignores_updates_of_other_columns(spark: SparkSession) -> None:
    cdf = spark.createDataFrame(
        [
            ("M1", "Nova", "electronics", 0.1, "update_preimage", 3),
            ("M1", "Nova", "electronics", 0.9, "update_postimage", 3),  # only the risk score changed
            ("M2", "Blue", "books", 0.1, "update_preimage", 3),
            ("M2", "Blue Books", "books", 0.1, "update_postimage", 3),  # renamed
            ("M3", "New", "books", 0.5, "insert", 3),
        ],
        "merchant_id string, merchant_name string, category string, risk_score double, _change_type string, _commit_version bigint",
    )
    assert sorted(r[0] for r in changed_keys(cdf, "merchant_id", ["merchant_name"]).collect()) == ["M2", "M3"]
    assert sorted({r[0] for r in changed_keys(cdf, "merchant_id").collect()}) == ["M1", "M2", "M3"]
    tables = _tables(spark)
    tables["merchant_daily_kpis"] = merchant_daily_kpis(tables, None)
    assert merchant_daily_kpis(tables, {"merchants": cdf.where("merchant_id = 'M1'")}).count() == 0
    renamed = merchant_daily_kpis(tables, {"merchants": cdf.where("merchant_id = 'M2'")})
    assert [r.event_date for r in renamed.select("event_date").distinct().collect()] == [date(2026, 1, 2)]


def test_time_travel_to_the_last_runs_inputs_only_within_the_retention(spark: SparkSession, tmp_path) -> None:  # noqa: ANN001
    from lakehouse.config import load_tables
    from lakehouse.pipeline.gold import readable
    from lakehouse.tables import Lake
    from tests.conftest import CONF, env_for

    lake = Lake(env_for(tmp_path), load_tables(CONF))
    spark.createDataFrame([(1,)], "x int").write.format("delta").save(lake.path("silver.fx_rates"))
    assert readable(spark, lake, {"silver.fx_rates": 0})  # committed just now, retention 168 h
    assert not readable(spark, lake, {"silver.fx_rates": 1})  # no such commit (or its log is cleaned up)
    short = Lake(env_for(tmp_path, "maintenance.retention_hours=1"), lake.specs)
    assert not readable(spark, short, {"silver.fx_rates": 0})  # within the hour's margin of VACUUM


def test_mismatched_keys_compare_whole_rows_nulls_and_nested_values_included(spark: SparkSession) -> None:
    from lakehouse.pipeline.gold import mismatched_keys

    schema = "customer_id string, frequency bigint, last date, spend array<struct<category:string,spend:decimal(18,2)>>"
    row = ("C1", 2, date(2026, 1, 2), [("books", Decimal("5.00"))])
    recount = spark.createDataFrame([row, ("C2", 1, None, []), ("C3", 1, None, [])], schema)
    stored = spark.createDataFrame(
        [
            row,  # equal
            ("C2", 1, None, []),  # equal, with a null on both sides
            ("C3", 1, date(2026, 1, 1), []),  # a null recounted, a value stored
            ("C4", 1, None, []),  # stored only
        ],
        schema,
    )
    assert sorted(r.customer_id for r in mismatched_keys(stored, recount, ["customer_id"]).collect()) == ["C3", "C4"]
    nested = spark.createDataFrame([("C1", 2, date(2026, 1, 2), [("books", Decimal("5.01"))])], schema)
    assert [r.customer_id for r in mismatched_keys(nested, recount.limit(1), ["customer_id"]).collect()] == ["C1"]
    assert mismatched_keys(recount, recount, ["customer_id"]).count() == 0
