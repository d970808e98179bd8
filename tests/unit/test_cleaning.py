from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.payments.reference import country_aliases
from lakehouse.transforms.cleaning import (
    normalize_email,
    normalize_name,
    normalize_string,
    to_iso_country,
    try_date,
    try_decimal,
    try_timestamp,
)


def test_normalize_string(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("  a   b ", "a b"), ("", None), ("   ", None), (None, None), ("x\ty", "x y")], "raw string, expected string"
    ).withColumn("got", normalize_string(F.col("raw")))
    assert_column_equality(df, "got", "expected")


def test_normalize_email_and_name(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("  ANNA.M@Mail.Example ", "anna.m@mail.example", "ANNA ", "Anna"), ("b@x.io", "b@x.io", "de Vries", "de Vries")],
        "email string, email_exp string, name string, name_exp string",
    ).select(normalize_email(F.col("email")).alias("e"), "email_exp", normalize_name(F.col("name")).alias("n"), "name_exp")
    assert_column_equality(df, "e", "email_exp")
    assert_column_equality(df, "n", "name_exp")


def test_to_iso_country_maps_every_spelling(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("DE", "DE"),
            ("de ", "DE"),
            ("Germany", "DE"),
            (" DEU", "DE"),
            ("Deutschland", "DE"),
            ("uk", "GB"),
            ("Atlantis", None),
            (None, None),
        ],
        "raw string, expected string",
    ).withColumn("got", to_iso_country(F.col("raw"), country_aliases()))
    assert_column_equality(df, "got", "expected")


def test_try_parsers_return_null_instead_of_failing(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("2026-03-01T14:22:05+01:00", "1985-02-28", "12.5"),
            ("2026-02-30T25:61:00+01:00", "31.02.1985", "-"),
            ("yesterday", "1985-02-31", "1e30"),
        ],
        "ts string, d string, amount string",
    ).select(
        try_timestamp(F.col("ts"), "yyyy-MM-dd'T'HH:mm:ssXXX").alias("ts"),
        try_date(F.col("d")).alias("d"),
        try_decimal(F.col("amount")).alias("amount"),
    )
    expected = spark.createDataFrame(
        [(datetime(2026, 3, 1, 13, 22, 5), date(1985, 2, 28), Decimal("12.50")), (None, None, None), (None, None, None)],
        "ts timestamp, d date, amount decimal(18,2)",
    )
    assert_df_equality(df, expected, ignore_nullable=True)
