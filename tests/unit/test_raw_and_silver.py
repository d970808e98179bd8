"""Bronze parsing and the silver transforms of the payments domain, on inline rows."""

from __future__ import annotations

import random
from datetime import date, datetime
from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.io.raw import arrival_date_of, parse_json_lines
from lakehouse.payments.generator import CUSTOMER_COLUMNS, luhn_complete
from lakehouse.payments.silver import build_customers, build_fx_rates, build_transactions, luhn_ok
from lakehouse.pipeline.silver import with_input
from lakehouse.quality.checks import CheckContext
from lakehouse.quality.expectations import ERRORS, apply_expectations
from tests.conftest import CONF

TABLES = load_tables(CONF)
BRONZE_META = ", _corrupt_record string, _rescued_data string, _source_file string, _arrival_date date, _ingested_at timestamp"


def errors_by_key(spark: SparkSession, table: str, typed: DataFrame, key: str, tables: dict[str, DataFrame] | None = None) -> dict:
    """Apply the table's row rules (as declared in conf) and return ``{key: rules broken}``."""
    spec = TABLES[table]
    rules = [e for e in spec.expectations if not e.table_level]
    checked = apply_expectations(typed, rules, lambda e: CheckContext(table, e.name, spec.keys, (tables or {}).get))
    try:
        return {r[key]: r[ERRORS] for r in checked.df.select(key, ERRORS).collect()}
    finally:
        checked.unpersist()


TX_FIELDS = [
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "event_time",
    "channel",
    "card_number",
    "device_id",
    "ip_address",
    "status",
    "updated_at",
]
TX_DDL = ", ".join(f"{c} string" for c in TX_FIELDS)


def test_parse_json_lines_keeps_every_line(spark: SparkSession) -> None:
    lines = spark.createDataFrame(
        [
            ('{"a": "1", "b": {"x": 1}}', "f1"),
            ('{"a": "2", "wallet": "apple_pay", "n": 5}', "f1"),
            ('{"a": "3", "b": ', "f2"),
            ("   ", "f2"),
        ],
        "value string, _source_file string",
    )
    got = parse_json_lines(lines, "a string, b string", ["a", "b"])
    expected = spark.createDataFrame(
        [
            ("1", '{"x":1}', None, None, "f1"),
            ("2", None, '{"wallet":"apple_pay","n":"5"}', None, "f1"),
            (None, None, None, '{"a": "3", "b": ', "f2"),
        ],
        "a string, b string, _rescued_data string, _corrupt_record string, _source_file string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_arrival_date_from_landing_folder(spark: SparkSession) -> None:
    df = spark.createDataFrame([("file:/l/raw/tx/arrival_date=2026-01-05/part-0.txt",), ("/elsewhere/x.json",)], "p string")
    got = [r[0] for r in df.select(arrival_date_of(F.col("p"))).collect()]
    assert got == [date(2026, 1, 5), None]


def test_luhn_generated_numbers_are_valid_and_a_typo_is_not(spark: SparkSession) -> None:
    df = spark.createDataFrame([("453201511283036",), ("400000000000000",)], "p string").select(luhn_complete(F.col("p")).alias("card"))
    cards = [r.card for r in df.collect()]
    assert cards == ["4532015112830366", "4000000000000002"]
    checked = spark.createDataFrame([(c,) for c in cards] + [("4532015112830367",)], "c string").select(luhn_ok(F.col("c")).alias("ok"))
    assert [r.ok for r in checked.collect()] == [True, True, False]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_silvers_luhn_check_agrees_with_the_textbook_algorithm(spark: SparkSession) -> None:
    rng = random.Random(7)
    cards = [None, "0", "18", "79927398713", "79927398710", "4111111111111111", "41111111111111112", "4111-1111", "1" * 19, "1" * 20]
    cards += ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19))) for _ in range(400)]
    cards += [luhn for luhn in ("4532015112830366", "6011000990139424", "378282246310005", "4222222222222")]

    def expected(c: str | None) -> bool | None:
        if c is None:
            return None
        return c.isdigit() and len(c) <= 19 and _luhn_ok(c)

    got = spark.createDataFrame([(c,) for c in cards], "card string").select("card", luhn_ok(F.col("card")).alias("ok"))
    want = spark.createDataFrame([(c, expected(c)) for c in cards], "card string, ok boolean")
    assert_df_equality(got, want, ignore_row_order=True)
    assert sum(1 for c in cards if expected(c)) > 20  # the sample holds valid numbers, not only invalid ones


def _fx(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(date(2026, 1, 2), "EUR", "USD", Decimal("1.10000000")), (date(2026, 1, 2), "EUR", "GBP", Decimal("0.80000000"))],
        "rate_date date, base_currency string, quote_currency string, rate decimal(18,8)",
    )


def _tx(spark: SparkSession, rows: list[dict[str, str | None]]) -> DataFrame:
    base = {
        "transaction_id": "tx_1",
        "customer_id": "c00000001",
        "merchant_id": " M000001",
        "amount": "110.00",
        "currency": "usd",
        "event_time": "2026-01-02T10:00:00+01:00",
        "channel": "WEB",
        "card_number": "4532 0151 1283 0366",
        "device_id": "dev_1",
        "ip_address": "85.1.2.3",
        "status": "Approved",
        "updated_at": "2026-01-02T09:00:02Z",
    }
    data = [tuple({**base, **r}.get(c) for c in TX_FIELDS) + (None, None, "f", date(2026, 1, 2), None) for r in rows]
    return with_input(spark.createDataFrame(data, TX_DDL + BRONZE_META))


def test_build_transactions_types_converts_and_flags(spark: SparkSession) -> None:
    batch = _tx(
        spark,
        [
            {},
            {"transaction_id": "tx_2", "amount": "-5"},
            {"transaction_id": "tx_3", "currency": "US$"},
            {"transaction_id": "tx_4", "event_time": "yesterday"},
            {"transaction_id": "tx_5", "customer_id": None},
            {"transaction_id": "tx_6", "event_time": "2026-01-03T10:00:00+01:00"},  # no FX rate that day
            {"transaction_id": "tx_7", "card_number": "4532015112830367"},
            {"transaction_id": "tx_8", "amount": "98765432.10", "currency": "GBP"},
        ],
    )
    got = build_transactions(batch, _fx(spark), "GBP")
    refs = {
        "silver.customers": spark.createDataFrame([("C00000001",)], "customer_id string"),
        "silver.merchants": spark.createDataFrame([("M000001",)], "merchant_id string"),
    }
    assert errors_by_key(spark, "silver.transactions", got, "transaction_id", refs) == {
        "tx_1": [],
        "tx_2": ["amount_positive"],
        "tx_3": ["currency_known"],
        "tx_4": ["event_time_valid"],
        "tx_5": ["customer_id_present"],
        "tx_6": ["fx_rate_known"],
        "tx_7": ["card_number_valid"],
        "tx_8": ["amount_in_range"],
    }
    ok = got.where("transaction_id = 'tx_1'").select(
        "customer_id",
        "merchant_id",
        "event_time",
        "event_date",
        "amount",
        "currency",
        "amount_reporting",
        "channel",
        "card_last4",
        "status",
    )
    expected = spark.createDataFrame(
        [
            (
                "C00000001",
                "M000001",
                datetime(2026, 1, 2, 9, 0),
                date(2026, 1, 2),
                Decimal("110.00"),
                "USD",
                Decimal("80.00"),
                "web",
                "0366",
                "approved",
            )
        ],
        "customer_id string, merchant_id string, event_time timestamp, event_date date, amount decimal(18,2), "
        "currency string, amount_reporting decimal(18,2), channel string, card_last4 string, status string",
    )
    assert_df_equality(ok, expected, ignore_nullable=True)
    assert "4532015112830366" not in str(got.where("transaction_id = 'tx_1'").drop("__in").first().asDict().values())


def test_build_customers_normalises(spark: SparkSession) -> None:
    cols = CUSTOMER_COLUMNS
    rows = [
        (
            "c1",
            "ANNA ",
            " Müller",
            "  ANNA.M@MAIL.EXAMPLE",
            "+49 151 123",
            "1990-01-31",
            "1  Main Street",
            "Berlin",
            "10115",
            "Deutschland",
            "2025-01-01",
            "2026-01-01 10:00:00",
        ),
        ("", "B", "C", "b@x.io", "1", "1990-01-01", "s", "c", "1", "FR", "2025-01-01", "2026-01-01 10:00:00"),
        ("c3", "B", "C", "b@x.io", "1", "31.02.1985", "s", "c", "1", "Atlantis", "2025-01-01", "2026-01-01 10:00:00"),
    ]
    batch = with_input(
        spark.createDataFrame([r + (None, None, "f", None, None) for r in rows], ", ".join(f"{c} string" for c in cols) + BRONZE_META)
    )
    got = build_customers(batch)
    errors = errors_by_key(spark, "silver.customers", got, "customer_id")
    assert errors == {"C1": [], None: ["customer_id_present"], "C3": ["birth_date_valid", "country_known"]}
    c1 = got.where("customer_id = 'C1'").select("first_name", "last_name", "email", "phone", "street", "country_code", "valid_from")
    expected = spark.createDataFrame(
        [("Anna", "Müller", "anna.m@mail.example", "+49151123", "1 Main Street", "DE", datetime(2026, 1, 1, 10))],
        "first_name string, last_name string, email string, phone string, street string, country_code string, valid_from timestamp",
    )
    assert_df_equality(c1, expected, ignore_nullable=True)


def test_build_fx_rates(spark: SparkSession) -> None:
    rows = [("2026-01-02", "EUR", "usd", "1.1"), ("2026-01-02", "EUR", "XYZ", "1.1"), ("x", "EUR", "GBP", "0"), (None, None, None, None)]
    batch = with_input(
        spark.createDataFrame(
            [r + (None if r[0] else "not,a,row", None, "f", None, None) for r in rows],
            "rate_date string, base_currency string, quote_currency string, rate string" + BRONZE_META,
        )
    )
    errors = errors_by_key(spark, "silver.fx_rates", build_fx_rates(batch), "quote_currency")
    assert errors == {"USD": [], "XYZ": ["currency_known"], "GBP": ["rate_date_valid", "rate_positive"], None: ["well_formed"]}
