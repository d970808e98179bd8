"""Feature definitions of the payments domain, and the fraud model's input columns.

Two gold feature tables (declared in ``conf/tables/gold/*_features.yaml``):

* ``customer_features``: one row per payment, the customer's state just before it (its own
  payment and any later one excluded): payments, amount sum / mean / standard deviation over
  each window, distinct merchants and devices over 24 h, the devices seen over 30 d, the previous
  payment's instant. Stamped one microsecond before the payment (``feature_time``), so the
  point-in-time join of that payment finds it, and no later row.
* ``merchant_features``: one row per merchant and hour with activity, stamped at the hour's end:
  payments and chargebacks *received* over 30 d and their ratio (a chargeback counts from its
  arrival, never from the payment's date).

:func:`transaction_features` turns payments into model inputs: the state of both entities
strictly before each payment (point-in-time join), the customer's attributes valid at that
instant (SCD2), and what the payment itself says against them (amount z-score, hours since the
previous payment, new device, IP country against home country, local hour).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.config import FeatureSpec
from lakehouse.features.engine import window
from lakehouse.features.pit import latest_state, live_join, point_in_time_join, time_range
from lakehouse.instants import utc
from lakehouse.payments.gold import changed_keys
from lakehouse.payments.reference import COUNTRIES

# A chargeback names a payment made at most this long before it arrived (card-network rules
# allow 120 days); used to bound the payments read to place a chargeback at its merchant.
CHARGEBACK_WINDOW = timedelta(days=120)
_CHANGED = ("insert", "delete", "update_preimage", "update_postimage")


def _since(df: DataFrame, time_col: str, since: datetime | None, date_col: str | None = None) -> DataFrame:
    if since is None:
        return df
    if date_col:  # the partition column: Delta reads only the days from ``since`` on
        df = df.where(F.col(date_col) >= F.lit(utc(since).date()))
    return df.where(F.col(time_col) >= F.lit(since))


def _touched_rows(changes: DataFrame, key: str, columns: tuple[str, ...]) -> DataFrame:
    """Change rows (pre- and post-images) of the keys whose ``columns`` changed."""
    keys = changed_keys(changes, key, columns).distinct()
    return changes.where(F.col("_change_type").isin(*_CHANGED)).join(keys, key, "left_semi")


# ---------------------------------------------------------------------------------------------
# customer_features
# ---------------------------------------------------------------------------------------------

_CUSTOMER_INPUTS = ("customer_id", "event_time", "merchant_id", "device_id", "amount_reporting")


def customer_events(tables: Mapping[str, DataFrame], since: datetime | None) -> DataFrame:
    """One row per payment (declined ones too: a fraudster's attempts are activity)."""
    tx = _since(tables["transactions"], "event_time", since, "event_date")
    return tx.where(F.col("customer_id").isNotNull() & F.col("event_time").isNotNull()).select(
        "customer_id",
        "event_time",
        "transaction_id",
        "event_date",
        "merchant_id",
        "device_id",
        F.col("amount_reporting").alias("amount"),
    )


def customer_touched(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame]) -> DataFrame:
    """(customer, instant) of each payment added or altered in what the features read (a new
    status alone changes no feature)."""
    if "transactions" not in changes:
        return tables["transactions"].select("customer_id", "event_time").limit(0)
    return _touched_rows(changes["transactions"], "transaction_id", _CUSTOMER_INPUTS).select("customer_id", "event_time")


def activity(events: DataFrame, fs: FeatureSpec) -> list[Column]:
    """The customer's state just before each payment, over each window (t - w, t): payments,
    and the sum, mean and sample standard deviation of their amounts; the instant the values
    hold at (``feature_time``, one microsecond before the payment) and the previous payment's.

    The sums are taken over the exact decimal amounts (and their squares) and only then turned
    into doubles: the result does not depend on the order Spark adds the rows in, so every run,
    full or incremental, local or on a cluster, writes the same bits.
    """
    amount = F.col("amount").cast("decimal(18,2)")
    out = [
        F.timestamp_micros(F.unix_micros(F.col(fs.time)) - 1).alias("feature_time"),
        F.max(fs.time).over(window(fs, fs.windows[-1][0], before=True)).alias("last_event_time"),
    ]
    for label, _ in fs.windows:
        w = window(fs, label, before=True)
        n = F.count("transaction_id").over(w)
        total = F.sum(amount).over(w).cast("double")
        squares = F.sum(amount * amount).over(w).cast("double")
        var = (squares - total * total / n) / (n - 1)
        out += [
            n.alias(f"tx_count_{label}"),
            F.coalesce(total, F.lit(0.0)).alias(f"amount_sum_{label}"),
            F.when(n > 0, total / n).alias(f"amount_mean_{label}"),
            F.when(n > 1, F.sqrt(F.greatest(var, F.lit(0.0)))).alias(f"amount_std_{label}"),
        ]
    return out


def variety(events: DataFrame, fs: FeatureSpec) -> list[Column]:
    """Just before each payment: distinct merchants and devices over 24 h, the devices seen over
    30 d (sorted)."""
    day, month = window(fs, "24h", before=True), window(fs, "30d", before=True)
    return [
        F.size(F.collect_set("merchant_id").over(day)).alias("merchants_24h"),
        F.size(F.collect_set("device_id").over(day)).alias("devices_24h"),
        F.array_sort(F.collect_set("device_id").over(month)).alias("devices_30d"),
    ]


# ---------------------------------------------------------------------------------------------
# merchant_features
# ---------------------------------------------------------------------------------------------


def _hour_end(ts: Column) -> Column:
    return F.date_trunc("hour", ts) + F.expr("INTERVAL 1 HOUR")


def _chargebacks_at_merchants(tables: Mapping[str, DataFrame], chargebacks: DataFrame, since: datetime | None) -> DataFrame:
    """``chargebacks`` with the merchant of their payment."""
    tx = tables["transactions"]
    if since is not None:
        tx = tx.where(F.col("event_date") >= F.lit(utc(since - CHARGEBACK_WINDOW).date()))
    return chargebacks.join(tx.select("transaction_id", "merchant_id"), "transaction_id")


def merchant_events(tables: Mapping[str, DataFrame], since: datetime | None) -> DataFrame:
    """One row per merchant and hour with payments or arriving chargebacks, at the hour's end."""
    tx = _since(tables["transactions"], "event_time", since, "event_date").where(F.col("event_time").isNotNull())
    cb = _chargebacks_at_merchants(tables, _since(tables["chargebacks"], "received_at", since), since)
    hits = tx.select("merchant_id", _hour_end(F.col("event_time")).alias("feature_time"), F.lit(1).alias("tx"), F.lit(0).alias("cb"))
    hits = hits.unionByName(
        cb.where(F.col("received_at").isNotNull()).select(
            "merchant_id", _hour_end(F.col("received_at")).alias("feature_time"), F.lit(0).alias("tx"), F.lit(1).alias("cb")
        )
    )
    return (
        hits.where(F.col("merchant_id").isNotNull())
        .groupBy("merchant_id", "feature_time")
        .agg(F.sum("tx").cast("bigint").alias("transactions_1h"), F.sum("cb").cast("bigint").alias("chargebacks_1h"))
    )


def merchant_touched(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame]) -> DataFrame:
    """(merchant, hour end) of each payment or chargeback added, removed or moved."""
    parts = []
    if "transactions" in changes:
        rows = _touched_rows(changes["transactions"], "transaction_id", ("merchant_id", "event_time"))
        parts.append(rows.select("merchant_id", _hour_end(F.col("event_time")).alias("feature_time")))
    if "chargebacks" in changes:
        rows = _touched_rows(changes["chargebacks"], "chargeback_id", ("transaction_id", "received_at"))
        placed = _chargebacks_at_merchants(tables, rows.drop("merchant_id"), None)
        parts.append(placed.select("merchant_id", _hour_end(F.col("received_at")).alias("feature_time")))
    if not parts:
        return tables["transactions"].select("merchant_id", F.lit(None).cast("timestamp").alias("feature_time")).limit(0)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.where(F.col("feature_time").isNotNull())


def chargeback_rate(events: DataFrame, fs: FeatureSpec) -> list[Column]:
    """Payments and chargebacks received over 30 d, and chargebacks per payment."""
    w = window(fs, "30d")
    tx, cb = F.sum("transactions_1h").over(w), F.sum("chargebacks_1h").over(w)
    return [
        tx.alias("transactions_30d"),
        cb.alias("chargebacks_30d"),
        F.when(tx > 0, cb / tx).alias("chargeback_rate_30d"),
    ]


# ---------------------------------------------------------------------------------------------
# The model's inputs
# ---------------------------------------------------------------------------------------------

CUSTOMER_STATE = (
    *[f"{kind}_{w}" for w in ("1h", "24h", "7d", "30d") for kind in ("tx_count", "amount_sum", "amount_mean", "amount_std")],
    "merchants_24h",
    "devices_24h",
    "devices_30d",
    "last_event_time",
)
MERCHANT_STATE = ("transactions_30d", "chargebacks_30d", "chargeback_rate_30d")
MAX_AGE = timedelta(days=30)

FEATURES = (
    "payment_amount",
    "log_amount",
    "amount_z_30d",
    "amount_ratio_7d",
    "hours_since_previous",
    "log_hours_since_previous",
    "tx_count_1h",
    "tx_count_24h",
    "tx_count_7d",
    "tx_count_30d",
    "amount_sum_24h",
    "amount_mean_30d",
    "amount_std_30d",
    "merchants_24h",
    "devices_24h",
    "new_device",
    "country_mismatch",
    "local_hour",
    "night",
    "merchant_transactions_30d",
    "merchant_chargeback_rate_30d",
)
"""The fraud model's input columns, all double, never null (see :func:`transaction_features`)."""

AGE_BANDS = ((0, "<25"), (25, "25-34"), (35, "35-49"), (50, "50-64"), (65, "65+"))


def ip_country(ip: Column) -> Column:
    """The country an IPv4 address is registered in (the first octet's block; a GeoIP lookup in
    a real system), null if unknown."""
    octet = F.split(ip, r"\.").getItem(0)
    blocks = F.create_map(*[x for c in COUNTRIES for x in (F.lit(str(c[6])), F.lit(c[0]))])
    return blocks[octet]


def utc_offset_hours(country: Column) -> Column:
    offsets = F.create_map(*[x for c in COUNTRIES for x in (F.lit(c[0]), F.lit(c[5]))])
    return F.coalesce(offsets[country], F.lit(0))


def age_band(birth_date: Column, at: Column) -> Column:
    years = F.floor(F.months_between(F.to_date(at), birth_date) / 12)
    band = F.lit(None).cast("string")
    for low, name in AGE_BANDS:
        band = F.when(years >= low, F.lit(name)).otherwise(band)
    return band


def customers_as_of(events: DataFrame, customers: DataFrame) -> DataFrame:
    """``events`` with the customer's ``home_country`` and ``birth_date`` from the SCD2 version
    in force at the event (a payment made before the customer's first record arrived takes that
    first record: country and birth date do not depend on when the CRM exported them)."""
    first = F.row_number().over(Window.partitionBy("customer_id").orderBy("valid_from"))
    versions = customers.select(
        F.col("customer_id").alias("__cid"),
        "valid_from",
        "valid_to",
        (first == 1).alias("__first"),
        F.col("country_code").alias("home_country"),
        "birth_date",
    )
    cond = (
        (F.col("customer_id") == F.col("__cid"))
        & ((F.col("valid_from") <= F.col("event_time")) | F.col("__first"))
        & (F.col("valid_to").isNull() | (F.col("event_time") < F.col("valid_to")))
    )
    return events.join(versions, cond, "left").drop("__cid", "valid_from", "valid_to", "__first")


def transaction_features(
    events: DataFrame,
    customer_features: DataFrame,
    merchant_features: DataFrame,
    customers: DataFrame,
) -> DataFrame:
    """Payments (silver.transactions rows) with the model's :data:`FEATURES` and the groups
    fairness is measured over (``home_country``, ``age_band``).

    Each payment gets its customer's and merchant's state from strictly before it (never its own
    row, never a later one), at most 30 days old; a missing state means no history (counts 0).
    """
    bounds = time_range(events, "event_time")
    df = customers_as_of(events, customers)
    df = point_in_time_join(
        df,
        customer_features,
        "customer_id",
        "event_time",
        feature_time="feature_time",
        columns=CUSTOMER_STATE,
        max_age=MAX_AGE,
        prefix="c_",
        partition_column="event_date",
        time_bounds=bounds,
    )
    df = point_in_time_join(
        df,
        merchant_features,
        "merchant_id",
        "event_time",
        feature_time="feature_time",
        columns=MERCHANT_STATE,
        max_age=MAX_AGE,
        prefix="m_",
        time_bounds=bounds,
    )
    return with_features(df, list(events.columns))


def live_transaction_features(
    events: DataFrame,
    customer_state: DataFrame,
    merchant_state: DataFrame,
    customers: DataFrame,
) -> DataFrame:
    """:func:`transaction_features` for live payments (later than every feature row): each joins
    its customer's and merchant's newest state (:func:`live_state`, broadcast) instead of a
    point-in-time join over 30 days of feature rows; the same rules (strictly before, at most 30
    days old) and the same feature columns."""
    df = customers_as_of(events, customers)
    df = live_join(df, customer_state, "customer_id", "event_time", CUSTOMER_STATE, MAX_AGE, "c_")
    df = live_join(df, merchant_state, "merchant_id", "event_time", MERCHANT_STATE, MAX_AGE, "m_")
    return with_features(df, list(events.columns))


def live_state(customer_features: DataFrame, merchant_features: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The newest state of every customer and merchant, for :func:`live_transaction_features`."""
    return (
        latest_state(customer_features, "customer_id", "feature_time", CUSTOMER_STATE),
        latest_state(merchant_features, "merchant_id", "feature_time", MERCHANT_STATE),
    )


def with_features(df: DataFrame, keep: list[str]) -> DataFrame:
    """Rows with the customer's (``c_*``) and merchant's (``m_*``) state attached: ``keep`` with
    the model's :data:`FEATURES` and the fairness groups. One definition for batch and live."""
    amount = F.col("amount_reporting").cast("double")
    mean30, std30 = F.col("c_amount_mean_30d"), F.col("c_amount_std_30d")
    hours = (F.unix_micros(F.col("event_time")) - F.unix_micros(F.col("c_last_event_time"))) / 3.6e9
    ipc = ip_country(F.col("ip_address"))
    local_hour = F.hour(F.col("event_time") + F.make_dt_interval(F.lit(0), utc_offset_hours(F.col("home_country"))))
    cols = {
        "payment_amount": amount,
        "log_amount": F.log1p(amount),
        "amount_z_30d": F.when(std30 > 0, (amount - mean30) / std30).otherwise(F.lit(0.0)),
        "amount_ratio_7d": F.when(F.col("c_amount_mean_7d") > 0, amount / F.col("c_amount_mean_7d")).otherwise(F.lit(1.0)),
        "hours_since_previous": F.coalesce(hours, F.lit(MAX_AGE.total_seconds() / 3600)),
        "log_hours_since_previous": F.log1p(F.coalesce(hours, F.lit(MAX_AGE.total_seconds() / 3600))),
        "tx_count_1h": F.col("c_tx_count_1h"),
        "tx_count_24h": F.col("c_tx_count_24h"),
        "tx_count_7d": F.col("c_tx_count_7d"),
        "tx_count_30d": F.col("c_tx_count_30d"),
        "amount_sum_24h": F.col("c_amount_sum_24h"),
        "amount_mean_30d": mean30,
        "amount_std_30d": std30,
        "merchants_24h": F.col("c_merchants_24h"),
        "devices_24h": F.col("c_devices_24h"),
        "new_device": ~F.coalesce(F.array_contains(F.col("c_devices_30d"), F.col("device_id")), F.lit(False)),
        "country_mismatch": F.coalesce(ipc != F.col("home_country"), F.lit(False)),
        "local_hour": local_hour,
        "night": local_hour < 6,
        "merchant_transactions_30d": F.col("m_transactions_30d"),
        "merchant_chargeback_rate_30d": F.col("m_chargeback_rate_30d"),
    }
    features = [F.coalesce(cols[name].cast("double"), F.lit(0.0)).alias(name) for name in FEATURES]
    return df.select(*keep, "home_country", age_band(F.col("birth_date"), F.col("event_time")).alias("age_band"), *features)
