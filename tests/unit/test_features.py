"""Feature tables, the point-in-time join and labels: leak traps and exact values."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.errors import ConfigError, PipelineError
from lakehouse.features.engine import build
from lakehouse.features.labels import fraud_labels
from lakehouse.features.payments import transaction_features
from lakehouse.features.pit import latest_state, live_join, point_in_time_join
from tests.conftest import CONF

T0 = datetime(2026, 3, 10, 12, 0, 0)
TX = (
    "transaction_id string, customer_id string, merchant_id string, event_time timestamp, event_date date, "
    "amount_reporting decimal(18,2), device_id string, ip_address string, status string"
)
CB = "chargeback_id string, transaction_id string, reason_code string, received_at timestamp"
CUSTOMERS = "customer_id string, country_code string, birth_date date, valid_from timestamp, valid_to timestamp"


@pytest.fixture(scope="module")
def specs():  # noqa: ANN201
    return load_tables(CONF)


def _tx(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame([(*r[:4], r[3].date(), *r[4:]) for r in rows], TX)


def _at(**kw: float) -> datetime:
    return T0 + timedelta(**kw)


# ---------------------------------------------------------------------------------------------
# point-in-time join
# ---------------------------------------------------------------------------------------------


def test_the_join_takes_the_latest_row_strictly_before_each_event(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("e1", "C1", T0), ("e2", "C1", _at(hours=2)), ("e3", "C2", T0), ("e4", "C3", T0), ("e5", "C4", T0)],
        "event_id string, customer_id string, event_time timestamp",
    )
    features = spark.createDataFrame(
        [
            ("C1", _at(hours=-1), 1),
            ("C1", _at(minutes=-5), 2),  # the latest before e1
            ("C1", T0, 3),  # stamped at e1's own instant: not known before it
            ("C1", _at(seconds=1), 4),  # one second after e1: the trap
            ("C1", _at(hours=3), 5),  # after e2
            ("C2", _at(days=-40), 6),  # older than max_age for e3
            ("C3", _at(seconds=1), 7),  # only a row after e4
        ],
        "customer_id string, event_time timestamp, f int",
    )
    got = point_in_time_join(events, features, "customer_id", "event_time", max_age=timedelta(days=30), prefix="c_")
    expected = spark.createDataFrame(
        [
            ("e1", "C1", T0, 2, _at(minutes=-5)),
            ("e2", "C1", _at(hours=2), 4, _at(seconds=1)),
            ("e3", "C2", T0, None, None),
            ("e4", "C3", T0, None, None),
            ("e5", "C4", T0, None, None),
        ],
        "event_id string, customer_id string, event_time timestamp, c_f int, c_as_of timestamp",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_live_join_equals_the_point_in_time_join_for_events_after_every_feature_row(spark: SparkSession) -> None:
    features = spark.createDataFrame(
        [
            ("C1", _at(days=-40), 1),
            ("C1", _at(minutes=-5), 2),
            ("C1", _at(minutes=-5), 2),
            ("C2", _at(days=-31), 3),  # older than 30 days at the events: no state
            ("C3", _at(hours=-1), 4),
        ],
        "customer_id string, feature_time timestamp, f int",
    )
    events = spark.createDataFrame(
        [("e1", "C1", T0), ("e2", "C1", _at(hours=2)), ("e3", "C2", T0), ("e4", "C3", T0), ("e5", "C4", T0)],
        "event_id string, customer_id string, event_time timestamp",
    )
    age = timedelta(days=30)
    pit = point_in_time_join(events, features, "customer_id", "event_time", "feature_time", ["f"], age, "c_")
    live = live_join(events, latest_state(features, "customer_id", "feature_time", ["f"]), "customer_id", "event_time", ["f"], age, "c_")
    assert_df_equality(live, pit, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True)
    assert sorted((r.event_id, r.c_f) for r in live.collect()) == [("e1", 2), ("e2", 2), ("e3", None), ("e4", 4), ("e5", None)]
    # a state at or after the event is not used (no look-ahead), where the point-in-time join
    # would take an earlier row: live events are later than every feature row
    early = spark.createDataFrame([("e0", "C3", _at(hours=-1))], "event_id string, customer_id string, event_time timestamp")
    got = live_join(early, latest_state(features, "customer_id", "feature_time", ["f"]), "customer_id", "event_time", ["f"], age, "c_")
    assert [r.c_f for r in got.collect()] == [None]


def test_the_join_prunes_feature_rows_outside_the_events_time_range(spark: SparkSession) -> None:
    events = spark.createDataFrame([("C1", T0)], "customer_id string, event_time timestamp")
    features = spark.createDataFrame(
        [("C1", _at(days=-3), _at(days=-3).date(), 1), ("C1", _at(days=-1), _at(days=-1).date(), 2)],
        "customer_id string, event_time timestamp, event_date date, f int",
    )
    got = point_in_time_join(events, features, "customer_id", "event_time", max_age=timedelta(days=2), partition_column="event_date")
    assert [r["f"] for r in got.collect()] == [2]
    # the plan filters the feature rows by date (partition pruning on a Delta table)
    plan = got._jdf.queryExecution().optimizedPlan().toString()
    assert re.search(r"event_date#\d+ >= ", plan), plan


def test_the_join_names_a_missing_column(spark: SparkSession) -> None:
    events = spark.createDataFrame([("C1", T0)], "customer_id string, event_time timestamp")
    features = spark.createDataFrame([("C1", T0, 1)], "customer_id string, ts timestamp, f int")
    with pytest.raises(PipelineError, match=r"features have no column 'event_time'"):
        point_in_time_join(events, features, "customer_id", "event_time")


# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------


def test_labels_respect_the_chargebacks_arrival_and_maturity(spark: SparkSession) -> None:
    as_of = datetime(2026, 5, 1)
    tx = _tx(
        spark,
        [
            ("old_fraud", "C1", "M1", datetime(2026, 3, 1), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("old_clean", "C1", "M1", datetime(2026, 3, 1), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("old_dispute", "C1", "M1", datetime(2026, 3, 2), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("young_fraud", "C1", "M1", datetime(2026, 4, 25), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("young_open", "C1", "M1", datetime(2026, 4, 25), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("late_chargeback", "C1", "M1", datetime(2026, 3, 1), Decimal("10.00"), "d", "85.1.1.1", "approved"),
            ("future", "C1", "M1", datetime(2026, 5, 2), Decimal("10.00"), "d", "85.1.1.1", "approved"),
        ],
    )
    cb = spark.createDataFrame(
        [
            ("cb1", "old_fraud", "10.4", datetime(2026, 3, 20)),
            ("cb2", "old_dispute", "13.1", datetime(2026, 3, 20)),  # a dispute, not fraud
            ("cb3", "young_fraud", "10.4", datetime(2026, 4, 28)),  # known already: a positive
            ("cb4", "late_chargeback", "10.4", datetime(2026, 5, 3)),  # arrives after as_of: unknown then
        ],
        CB,
    )
    got = fraud_labels(tx, cb, as_of, maturity_days=30).select("transaction_id", "label", "label_time")
    expected = spark.createDataFrame(
        [
            ("old_fraud", 1, datetime(2026, 3, 20)),
            ("old_clean", 0, datetime(2026, 3, 31)),
            ("old_dispute", 0, datetime(2026, 4, 1)),
            ("young_fraud", 1, datetime(2026, 4, 28)),
            ("late_chargeback", 0, datetime(2026, 3, 31)),
        ],
        "transaction_id string, label int, label_time timestamp",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # a month later the late chargeback has arrived and turns its payment positive
    later = fraud_labels(tx, cb, datetime(2026, 6, 1), maturity_days=30).where("transaction_id = 'late_chargeback'")
    assert [r["label"] for r in later.collect()] == [1]


# ---------------------------------------------------------------------------------------------
# feature tables
# ---------------------------------------------------------------------------------------------


def _payments(spark: SparkSession) -> DataFrame:
    return _tx(
        spark,
        [
            ("t1", "C1", "M1", _at(days=-40), Decimal("10.00"), "dA", "85.1.1.1", "approved"),
            ("t2", "C1", "M1", _at(days=-2), Decimal("20.00"), "dA", "85.1.1.1", "approved"),
            ("t3", "C1", "M2", _at(minutes=-30), Decimal("30.00"), "dA", "85.1.1.1", "declined"),
            ("t4", "C1", "M3", T0, Decimal("100.00"), "dB", "66.1.1.1", "approved"),
            ("t5", "C2", "M1", T0, Decimal("7.00"), "dC", "81.1.1.1", "approved"),
        ],
    )


def test_customer_features_hold_the_state_just_before_each_payment(spark: SparkSession, specs) -> None:  # noqa: ANN001
    rows = {r["transaction_id"]: r for r in build({"transactions": _payments(spark)}, None, spec=specs["gold.customer_features"]).collect()}
    t4 = rows["t4"]  # before T0: t3 (30 min earlier, 30.00), t2 (2 days, 20.00); t1 is 40 days old
    assert (t4["tx_count_1h"], t4["tx_count_24h"], t4["tx_count_7d"], t4["tx_count_30d"]) == (1, 1, 2, 2)
    assert (t4["amount_sum_1h"], t4["amount_mean_1h"], t4["amount_std_1h"]) == (30.0, 30.0, None)
    assert (t4["amount_mean_30d"], t4["amount_std_30d"]) == (25.0, pytest.approx(math.sqrt(50)))
    assert (t4["merchants_24h"], t4["devices_24h"], t4["devices_30d"]) == (1, 1, ["dA"])  # not its own device dB
    assert (t4["feature_time"], t4["last_event_time"]) == (T0 - timedelta(microseconds=1), _at(minutes=-30))
    t1 = rows["t1"]  # nothing before it
    assert (t1["tx_count_30d"], t1["amount_sum_30d"], t1["amount_mean_30d"], t1["devices_30d"], t1["last_event_time"]) == (
        0,
        0.0,
        None,
        [],
        None,
    )
    assert rows["t3"]["tx_count_30d"] == 1 and rows["t5"]["tx_count_30d"] == 0


def test_an_incremental_build_redoes_only_the_touched_customers_from_the_first_touched_payment(spark: SparkSession, specs) -> None:  # noqa: ANN001
    spec = specs["gold.customer_features"]
    tx = _payments(spark)
    new = _tx(spark, [("t6", "C1", "M1", _at(minutes=-10), Decimal("50.00"), "dA", "85.1.1.1", "approved")])
    changes = {"transactions": new.withColumn("_change_type", F.lit("insert")).withColumn("_commit_version", F.lit(7))}
    got = build({"transactions": tx.unionByName(new)}, changes, spec=spec)
    full = build({"transactions": tx.unionByName(new)}, None, spec=spec)
    # t6 and the payment after it (t4) of C1; nothing of C2 and nothing of C1 before t6
    assert sorted(r["transaction_id"] for r in got.collect()) == ["t4", "t6"]
    assert_df_equality(got, full.where("transaction_id IN ('t4', 't6')"), ignore_row_order=True)
    # a new status alone changes no feature: nothing to redo
    status = tx.where("transaction_id = 't2'")
    flip = status.withColumn("_change_type", F.lit("update_preimage")).unionByName(
        status.withColumn("status", F.lit("declined")).withColumn("_change_type", F.lit("update_postimage"))
    )
    assert build({"transactions": tx}, {"transactions": flip.withColumn("_commit_version", F.lit(8))}, spec=spec).count() == 0


def test_merchant_features_count_a_chargeback_from_its_arrival_only(spark: SparkSession, specs) -> None:  # noqa: ANN001
    tx = _payments(spark)
    cb = spark.createDataFrame([("cb1", "t2", "10.4", _at(hours=5, minutes=20))], CB)
    feats = build({"transactions": tx, "chargebacks": cb}, None, spec=specs["gold.merchant_features"])
    m1 = {r["feature_time"]: r for r in feats.where("merchant_id = 'M1'").collect()}
    # hour ends: t1's, t2's, t5's (T0 -> 13:00) and the chargeback's (17:20 -> 18:00)
    assert sorted(m1) == [_at(days=-40, hours=1), _at(days=-2, hours=1), _at(hours=1), _at(hours=6)]
    assert (m1[_at(hours=1)]["transactions_30d"], m1[_at(hours=1)]["chargebacks_30d"]) == (2, 0)  # t1 is 40 days old
    assert (m1[_at(hours=6)]["chargebacks_30d"], m1[_at(hours=6)]["chargeback_rate_30d"]) == (1, 0.5)
    # a payment at M1 after the chargeback was made but before it arrived does not see it
    events = _tx(
        spark,
        [
            ("before", "C9", "M1", _at(hours=4), Decimal("5.00"), "dZ", "85.1.1.1", "approved"),
            ("after", "C9", "M1", _at(hours=7), Decimal("5.00"), "dZ", "85.1.1.1", "approved"),
        ],
    )
    seen = point_in_time_join(events, feats, "merchant_id", "event_time", "feature_time", max_age=timedelta(days=30), prefix="m_")
    got = {r["transaction_id"]: r["m_chargebacks_30d"] for r in seen.collect()}
    assert got == {"before": 0, "after": 1}


def test_transaction_features_compare_each_payment_with_the_state_before_it(spark: SparkSession, specs) -> None:  # noqa: ANN001
    tx = _payments(spark)
    cust_f = build({"transactions": tx}, None, spec=specs["gold.customer_features"])
    merch_f = build({"transactions": tx, "chargebacks": spark.createDataFrame([], CB)}, None, spec=specs["gold.merchant_features"])
    customers = spark.createDataFrame(
        [
            ("C1", "GB", date(1990, 6, 1), datetime(2026, 1, 1), _at(minutes=-10)),  # moved to Germany 10 minutes ago
            ("C1", "DE", date(1990, 6, 1), _at(minutes=-10), None),
            ("C2", "GB", date(2004, 6, 1), _at(days=1), None),  # first record arrived after the payment
        ],
        CUSTOMERS,
    )
    got = {r["transaction_id"]: r for r in transaction_features(tx, cust_f, merch_f, customers).collect()}
    t4 = got["t4"]  # 100 EUR on a new device from a US address, right after t3
    assert (t4["tx_count_1h"], t4["tx_count_30d"], t4["hours_since_previous"]) == (1.0, 2.0, 0.5)
    assert t4["amount_z_30d"] == pytest.approx((100 - 25) / math.sqrt(50))
    assert (t4["new_device"], t4["country_mismatch"], t4["local_hour"]) == (1.0, 1.0, 13.0)  # DE: UTC+1
    assert (t4["home_country"], t4["age_band"]) == ("DE", "35-49")
    t3 = got["t3"]  # same device, German address, customer still in GB then
    assert (t3["new_device"], t3["country_mismatch"], t3["local_hour"], t3["home_country"]) == (0.0, 1.0, 11.0, "GB")
    t5 = got["t5"]  # no history at all: counts 0, z 0, hours since the previous = the 30-day horizon
    assert (t5["tx_count_30d"], t5["amount_z_30d"], t5["hours_since_previous"], t5["new_device"]) == (0.0, 0.0, 720.0, 1.0)
    assert (t5["home_country"], t5["age_band"], t5["country_mismatch"]) == ("GB", "<25", 0.0)
    assert t4["merchant_transactions_30d"] == 0.0 and got["t5"]["merchant_transactions_30d"] == 1.0  # M1 had t2


def test_a_features_block_is_checked(specs) -> None:  # noqa: ANN001
    from lakehouse.config import parse_table

    spec = specs["gold.customer_features"]
    import yaml

    data = yaml.safe_load(open(spec.file).read())
    for change, key, message in [
        ({"windows": ["1h", "3 weeks"]}, "features.windows[1]", "not a duration"),
        ({"entity": "client_id"}, "features.entity", "not in the schema"),
        ({"colour": "red"}, "features.colour", "unknown key"),
        ({"definitions": ["lakehouse.features.payments.nope"]}, "features.definitions[0]", "no function 'nope'"),
    ]:
        bad = dict(data, features=dict(data["features"], **change))
        with pytest.raises(ConfigError) as err:
            parse_table(bad, spec.file)
        assert err.value.key == key and message in str(err.value), (change, str(err.value))
    assert dataclasses.replace(spec.features, windows=(("1h", 3600),)).lookback == 3600
