"""Silver transforms of the payments domain: bronze rows -> typed, cleaned, checked rows.

Each function is pure: it takes the bronze increment (and any reference tables) and returns the
table's declared columns, typed and cleaned; a value that does not parse becomes null. Whether a
row is valid is not decided here but by the table's expectations (``conf/tables/silver/*.yaml``),
which may also read the helper columns a transform adds (``__card_ok``, ``__fx_found``) and the
runner's ``__in`` (the bronze record as delivered), carried through untouched.

Example (in a notebook)::

    typed = build_fx_rates(spark.read.format("delta").load(".../bronze/fx_rates"))
    typed.where("rate IS NULL").show()
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.payments.reference import CURRENCIES, country_aliases
from lakehouse.transforms.cleaning import (
    normalize_code,
    normalize_email,
    normalize_name,
    normalize_string,
    to_iso_country,
    try_date,
    try_decimal,
    try_timestamp,
)
from lakehouse.transforms.dedup import record_hash

ISO_TS_OFFSET = "yyyy-MM-dd'T'HH:mm:ssXXX"  # 2026-03-01T14:22:05+01:00, also ...Z
PLAIN_TS = "yyyy-MM-dd HH:mm:ss"
MAX_AMOUNT = 1_000_000
KNOWN_CURRENCIES = tuple(c for c, _ in CURRENCIES)
LUHN_MAX_DIGITS = 19
"""The longest card number (PAN) ISO/IEC 7812 allows."""


def luhn_ok(card: Column) -> Column:
    """True when a digit string passes the Luhn check and is at most 19 digits long (the longest
    card number ISO/IEC 7812 allows); null stays null. Spark's ``luhn_check`` (since 3.5): one
    call the code generator compiles, false for a string with a non-digit."""
    return F.call_function("luhn_check", card) & (F.length(card) <= LUHN_MAX_DIGITS)


def carried(df: DataFrame) -> list[str]:
    """The runner's ``__`` columns and the lineage columns to keep."""
    return [c for c in df.columns if c.startswith("__")] + [c for c in ("_source_file", "_ingested_at") if c in df.columns]


def fx_to(amount: Column, rate_from: Column, rate_to: Column) -> Column:
    """Convert with EUR-based rates (1 EUR = rate units): amount / rate_from * rate_to."""
    return F.round(amount / rate_from * rate_to, 2).cast("decimal(18,2)")


def fx_found(currency: Column, day: Column) -> Column:
    """True when both rates of the row's day were found; null when no lookup was possible
    (unknown currency or no date), so only the rule about those fires."""
    return F.when(currency.isin(*KNOWN_CURRENCIES) & day.isNotNull(), F.col("__rate_from").isNotNull() & F.col("__rate_to").isNotNull())


def rates_of_day(fx_rates: DataFrame) -> DataFrame:
    """``(rate_date, currency, rate)`` including EUR at 1 for every day that has rates."""
    days = fx_rates.select("rate_date").distinct()
    eur = days.select("rate_date", F.lit("EUR").alias("currency"), F.lit(1).cast("decimal(18,8)").alias("rate"))
    return fx_rates.select("rate_date", F.col("quote_currency").alias("currency"), "rate").unionByName(eur)


def build_fx_rates(batch: DataFrame) -> DataFrame:
    """Daily EUR reference rates: one row per (rate_date, quote_currency)."""
    rate_date = try_date(F.col("rate_date"))
    rate = try_decimal(F.col("rate"), 18, 8)
    quote = normalize_code(F.col("quote_currency"))
    base = normalize_code(F.col("base_currency"))
    out = batch.select(
        rate_date.alias("rate_date"),
        base.alias("base_currency"),
        quote.alias("quote_currency"),
        rate.alias("rate"),
        *carried(batch),
    )
    return out.withColumn("_record_hash", record_hash(["rate_date", "quote_currency", "rate"]))


def build_customers(batch: DataFrame) -> DataFrame:
    """CRM customers: normalised names, emails, ISO countries; ``valid_from`` = the export's ``updated_at``."""
    birth = try_date(F.col("birth_date"))
    signup = try_date(F.col("signup_date"))
    updated = try_timestamp(F.col("updated_at"), PLAIN_TS)
    country = to_iso_country(F.col("country"), country_aliases())
    email = normalize_email(F.col("email"))
    out = batch.select(
        normalize_code(F.col("customer_id")).alias("customer_id"),
        normalize_name(F.col("first_name")).alias("first_name"),
        normalize_name(F.col("last_name")).alias("last_name"),
        email.alias("email"),
        F.regexp_replace(normalize_string(F.col("phone")), r"[^0-9+]", "").alias("phone"),
        birth.alias("birth_date"),
        normalize_string(F.col("street")).alias("street"),
        normalize_string(F.col("city")).alias("city"),
        normalize_string(F.col("postcode")).alias("postcode"),
        country.alias("country_code"),
        signup.alias("signup_date"),
        updated.alias("valid_from"),
        *carried(batch),
    )
    return out.withColumn("_record_hash", record_hash(CUSTOMER_TRACKED + ("valid_from",)))


CUSTOMER_TRACKED = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "street",
    "city",
    "postcode",
    "country_code",
    "signup_date",
)


def build_merchants(batch: DataFrame) -> DataFrame:
    """Merchant API documents, flattened: category, address and risk become columns."""
    updated = try_timestamp(F.col("updated_at"), ISO_TS_OFFSET)
    country = to_iso_country(F.col("address.country"), country_aliases())
    score = normalize_string(F.col("risk.score")).try_cast("double")
    tier = F.lower(normalize_string(F.col("risk.tier")))
    out = batch.select(
        normalize_code(F.col("merchant_id")).alias("merchant_id"),
        normalize_string(F.col("name")).alias("merchant_name"),
        normalize_string(F.col("category.mcc")).alias("mcc"),
        F.lower(normalize_string(F.col("category.name"))).alias("category"),
        normalize_string(F.col("address.city")).alias("city"),
        country.alias("country_code"),
        tier.alias("risk_tier"),
        score.alias("risk_score"),
        try_date(F.col("onboarded_at")).alias("onboarded_at"),
        updated.alias("updated_at"),
        *carried(batch),
    )
    return out.withColumn(
        "_record_hash",
        record_hash(
            [
                "merchant_id",
                "merchant_name",
                "mcc",
                "category",
                "city",
                "country_code",
                "risk_tier",
                "risk_score",
                "onboarded_at",
                "updated_at",
            ]
        ),
    )


def _with_reporting_amount(df: DataFrame, fx_rates: DataFrame, reporting_currency: str, date_col: str) -> DataFrame:
    """Join the rate of the row's currency and of the reporting currency on the row's date."""
    rates = rates_of_day(fx_rates)
    src = rates.select(F.col("rate_date").alias("__fx_date"), F.col("currency").alias("__fx_cur"), F.col("rate").alias("__rate_from"))
    rep = rates.where(F.col("currency") == reporting_currency).select(
        F.col("rate_date").alias("__rep_date"), F.col("rate").alias("__rate_to")
    )
    out = df.join(src, (df[date_col] == src["__fx_date"]) & (df["currency"] == src["__fx_cur"]), "left")
    out = out.join(rep, out[date_col] == rep["__rep_date"], "left").drop("__fx_date", "__fx_cur", "__rep_date")
    return out


def build_transactions(batch: DataFrame, fx_rates: DataFrame, reporting_currency: str = "EUR") -> DataFrame:
    """Gateway payments: typed, amounts converted with the FX rates of the payment's (UTC) day."""
    event_time = try_timestamp(F.col("event_time"), ISO_TS_OFFSET)
    card = F.regexp_replace(F.coalesce(F.col("card_number"), F.lit("")), r"\D", "")
    typed = batch.select(
        normalize_string(F.col("transaction_id")).alias("transaction_id"),
        normalize_code(F.col("customer_id")).alias("customer_id"),
        normalize_code(F.col("merchant_id")).alias("merchant_id"),
        event_time.alias("event_time"),
        F.to_date(event_time).alias("event_date"),
        try_decimal(F.col("amount")).alias("amount"),
        normalize_code(F.col("currency")).alias("currency"),
        F.lower(normalize_string(F.col("channel"))).alias("channel"),
        F.when(F.length(card) >= 12, F.sha2(card, 256)).alias("card_fingerprint"),
        F.when(F.length(card) >= 12, F.substring(card, -4, 4)).alias("card_last4"),
        luhn_ok(F.when(card != "", card)).alias("__card_ok"),
        normalize_string(F.col("device_id")).alias("device_id"),
        normalize_string(F.col("ip_address")).alias("ip_address"),
        F.lower(normalize_string(F.col("status"))).alias("status"),
        try_timestamp(F.col("updated_at"), ISO_TS_OFFSET).alias("updated_at"),
        F.col("_rescued_data"),
        *carried(batch),
    )
    typed = _with_reporting_amount(typed, fx_rates, reporting_currency, "event_date")
    out = typed.select(
        "transaction_id",
        "customer_id",
        "merchant_id",
        "event_time",
        "event_date",
        "amount",
        "currency",
        fx_to(F.col("amount"), F.col("__rate_from"), F.col("__rate_to")).alias("amount_reporting"),
        F.lit(reporting_currency).alias("reporting_currency"),
        "channel",
        "card_fingerprint",
        "card_last4",
        "device_id",
        "ip_address",
        "status",
        "updated_at",
        F.col("_rescued_data").alias("extra_fields"),
        "__card_ok",
        fx_found(F.col("currency"), F.col("event_date")).alias("__fx_found"),
        *carried(batch),
    )
    return out.withColumn(
        "_record_hash",
        record_hash(
            [
                "transaction_id",
                "customer_id",
                "merchant_id",
                "event_time",
                "amount",
                "currency",
                "channel",
                "card_fingerprint",
                "device_id",
                "ip_address",
                "status",
                "updated_at",
            ]
        ),
    )


def build_chargebacks(batch: DataFrame, fx_rates: DataFrame, reporting_currency: str = "EUR") -> DataFrame:
    """Acquirer chargebacks (the fraud labels), amounts converted on the chargeback's day."""
    typed = batch.select(
        normalize_string(F.col("chargeback_id")).alias("chargeback_id"),
        normalize_string(F.col("transaction_id")).alias("transaction_id"),
        normalize_string(F.col("reason_code")).alias("reason_code"),
        try_decimal(F.col("amount")).alias("amount"),
        normalize_code(F.col("currency")).alias("currency"),
        try_date(F.col("chargeback_date")).alias("chargeback_date"),
        try_timestamp(F.col("received_at"), PLAIN_TS).alias("received_at"),
        *carried(batch),
    )
    typed = _with_reporting_amount(typed, fx_rates, reporting_currency, "chargeback_date")
    out = typed.select(
        "chargeback_id",
        "transaction_id",
        "reason_code",
        "amount",
        "currency",
        fx_to(F.col("amount"), F.col("__rate_from"), F.col("__rate_to")).alias("amount_reporting"),
        "chargeback_date",
        "received_at",
        fx_found(F.col("currency"), F.col("chargeback_date")).alias("__fx_found"),
        *carried(batch),
    )
    return out.withColumn(
        "_record_hash",
        record_hash(["chargeback_id", "transaction_id", "reason_code", "amount", "currency", "chargeback_date", "received_at"]),
    )
