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
    got = customer_360(_tables(spark), None).drop("first_name", "last_name", "signup_date", "attributes_since")
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


def test_customer_360_incremental_keys(spark: SparkSession) -> None:
    changes = {"customers": spark.createDataFrame([("C2", "insert")], "customer_id string, _change_type string")}
    got = customer_360(_tables(spark), changes)
    assert [r.customer_id for r in got.collect()] == ["C2"]


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
