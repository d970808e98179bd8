"""The generator is deterministic, day-local, and its manifest matches what it wrote."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.payments import generator as g


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_same_parameters_same_records_and_days_do_not_depend_on_horizon(spark: SparkSession) -> None:
    p = g.GeneratorParams(scale=0.003, days=3)
    a = g.records_by_source(spark, p, 3)["transactions"].select("arrival_day", "line")
    b = g.records_by_source(spark, p, 3)["transactions"].select("arrival_day", "line")
    assert_df_equality(a, b, ignore_row_order=True)
    longer = g.records_by_source(spark, g.GeneratorParams(scale=0.003, days=5), 5)["transactions"]
    assert_df_equality(a.where("arrival_day < 2"), longer.select("arrival_day", "line").where("arrival_day < 2"), ignore_row_order=True)


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_manifest_counts_every_line(spark: SparkSession) -> None:
    p = g.GeneratorParams(scale=0.01, days=4)
    recs = g.records_by_source(spark, p, 4)
    for source, df in recs.items():
        counts = g.manifest_counts(df)
        total = df.count()
        assert sum(d["records"] for d in counts.values()) == total, source
        for day in counts.values():
            e = day["expected"]
            assert e["landed"] + e["quarantined"] + e["duplicates"] == day["records"], source
    tx = g.manifest_counts(recs["transactions"])
    kinds = {k for d in tx.values() for k in d["defects"]}
    assert {
        "malformed_json",
        "missing_required_field",
        "negative_amount",
        "unknown_currency",
        "unparseable_timestamp",
        "duplicate_update",
        "duplicate_resend",
    } <= kinds


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_fraud_has_signal_and_truth_stays_out_of_the_raw_lines(spark: SparkSession) -> None:
    p = g.GeneratorParams(scale=0.05, days=2)
    truth = g.fraud_truth(spark, p, 2)
    rates = {r.f_burst: r.rate for r in truth.groupBy("f_burst").agg(F.avg(F.col("is_fraud").cast("double")).alias("rate")).collect()}
    assert rates[True] > 5 * rates[False]
    lines = g.records_by_source(spark, p, 2)["transactions"]
    assert lines.where(F.col("line").contains("fraud")).count() == 0


def test_skew_a_few_merchants_carry_much_of_the_traffic(spark: SparkSession) -> None:
    p = g.GeneratorParams(scale=0.05, days=1)
    cust = g.customer_versions(spark, p, 1)
    bases = g.transaction_bases(spark, p, 1, cust)
    per = [r["count"] for r in bases.groupBy("merchant_id").count().orderBy(F.desc("count")).collect()]
    top = sum(per[: max(1, len(per) // 20)])
    assert top / sum(per) > 0.3  # the top 5% of merchants carry over 30% of payments
