"""A deterministic, Spark-native generator of the raw zone (card payments of a marketplace).

Every value is a pure function of ``(seed, entity, day)`` computed with ``xxhash64`` — no Python
random, no ``rand()`` — so the same parameters give byte-identical records on one core or on a
cluster, and day ``d`` is the same whether it is generated alone or with its neighbours. Adding a
day later ("tomorrow's batch") writes only that day's folders.

Per arrival day it writes, one folder per source::

    raw/customers/arrival_date=YYYY-MM-DD/     CSV export from the CRM (initial load, then updates)
    raw/merchants/arrival_date=YYYY-MM-DD/     JSON documents as the merchant API returns them
    raw/transactions/arrival_date=YYYY-MM-DD/  JSON lines from the payment gateway
    raw/chargebacks/arrival_date=YYYY-MM-DD/   CSV from the acquirer, 1-60 days after the payment
    raw/fx_rates/arrival_date=YYYY-MM-DD/      daily CSV of EUR reference rates
    raw/_manifests/YYYY-MM-DD.json             what was written and injected (counts per defect)

and, outside the raw zone, each transaction's true fraud probability (``truth/fraud_labels``) and
every defective line with its defect (``truth/defects``).

Defects are injected at known rates, each defective record carrying exactly one defect, and the
manifest states what the pipeline must do with every record: land it, quarantine it, or count it
as a duplicate of one that landed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.payments.reference import CATEGORIES, CHANNELS, COUNTRIES, CURRENCIES

log = logging.getLogger(__name__)

SOURCES = ("customers", "merchants", "transactions", "chargebacks", "fx_rates")
TXNS_PER_DAY_AT_SF1 = 1_000_000 / 30  # scale factor 1 = 1M transactions over 30 days
CUSTOMERS_AT_SF1 = 50_000
MERCHANTS_AT_SF1 = 2_000
FX_HISTORY_DAYS = 120

# Transaction defects: (kind, share of base records). Each goes to quarantine in silver.
TXN_DEFECTS: tuple[tuple[str, float], ...] = (
    ("malformed_json", 0.002),
    ("missing_required_field", 0.003),
    ("negative_amount", 0.002),
    ("absurd_amount", 0.001),
    ("unknown_currency", 0.002),
    ("unparseable_timestamp", 0.002),
)
TXN_UPDATE_RATE = 0.02  # key-level duplicate: a status update re-sends the transaction
TXN_RESEND_RATE = 0.01  # exact duplicate: the same line sent again
TXN_LATE_RATE = 0.01  # event 2-10 days before its arrival day
BURST_RATE = 0.01  # share of transactions in velocity bursts
CUSTOMER_UPDATE_RATE = 0.01  # share of customers whose details change on a given day
CUSTOMER_DEFECT_RATE = 0.002  # per defect kind, on the initial export
CUSTOMER_RESEND_RATE = 0.005
MERCHANT_UPDATE_RATE = 0.02
CHARGEBACK_FRAUD_RATE = 0.85
CHARGEBACK_DISPUTE_RATE = 0.002

CUSTOMER_COLUMNS = (
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "street",
    "city",
    "postcode",
    "country",
    "signup_date",
    "updated_at",
)
CHARGEBACK_COLUMNS = (
    "chargeback_id",
    "transaction_id",
    "reason_code",
    "amount",
    "currency",
    "chargeback_date",
    "received_at",
)
FX_COLUMNS = ("rate_date", "base_currency", "quote_currency", "rate")

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Klara",
    "Luca",
    "Mia",
    "Noah",
    "Olivia",
    "Paul",
    "Rosa",
    "Sven",
    "Tara",
    "Yusuf",
    "Zoé",
    "Ömer",
)
LAST_NAMES = (
    "Müller",
    "Schmidt",
    "Martin",
    "Bernard",
    "Smith",
    "Jones",
    "de Vries",
    "García",
    "Rossi",
    "Nowak",
    "Andersson",
    "Keller",
    "Johnson",
    "Sato",
    "Dubois",
    "O'Brien",
    "Fischer",
    "Weber",
)
CITIES = ("Berlin", "Paris", "London", "Amsterdam", "Madrid", "Rome", "Warsaw", "Stockholm", "Zurich", "New York", "Tokyo")
STREETS = ("Main Street", "Hauptstraße", "Rue de la Paix", "High Street", "Calle Mayor", "Via Roma", "Kerkstraat", "Storgatan")
MERCHANT_WORDS = ("Nova", "Blue", "Atlas", "Pixel", "Urban", "Green", "Swift", "Lumen", "Orbit", "Maple", "Vertex", "Harbor")
MERCHANT_SUFFIX = ("Shop", "Store", "Market", "Goods", "Labs", "Outlet", "Supply", "Trading")


@dataclass(frozen=True)
class GeneratorParams:
    """What to generate. Day ``d`` depends only on these (never on how many days there are)."""

    scale: float = 0.1
    start_date: date = date(2026, 1, 1)
    days: int = 30
    seed: int = 42
    drift_day: int = 3  # the batch in which transactions gain an extra field (schema drift)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")

    @property
    def txns_per_day(self) -> int:
        return max(1, round(TXNS_PER_DAY_AT_SF1 * self.scale))

    @property
    def customers(self) -> int:
        return max(200, round(CUSTOMERS_AT_SF1 * self.scale))

    @property
    def merchants(self) -> int:
        return max(30, round(MERCHANTS_AT_SF1 * self.scale))

    def day(self, d: int) -> date:
        return self.start_date + timedelta(days=d)

    def identity(self) -> dict[str, object]:
        """The parameters that must match for two runs to write the same raw zone."""
        out = asdict(self)
        out.pop("days")
        out["start_date"] = self.start_date.isoformat()
        return out


# ------------------------------------------------------------------------------------------
# Deterministic randomness
# ------------------------------------------------------------------------------------------

_MOD = 2_147_483_647


def uniform(seed: int, salt: str, *cols: Column | str) -> Column:
    """A uniform double in [0, 1) that depends only on ``seed``, ``salt`` and ``cols``."""
    return F.pmod(F.xxhash64(F.lit(seed), F.lit(salt), *cols), F.lit(_MOD)) / F.lit(float(_MOD))


def normal(seed: int, salt: str, *cols: Column | str) -> Column:
    """A standard normal draw (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, salt + ":1", *cols) * 0.999999 + 0.0000005
    u2 = uniform(seed, salt + ":2", *cols)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def pick(values: Sequence[object], u: Column) -> Column:
    """The element of ``values`` at ``floor(u * len)`` (u uniform in [0, 1))."""
    arr = F.array(*[F.lit(v) for v in values])
    return F.element_at(arr, (F.floor(u * len(values)) + 1).cast("int"))


def pick_weighted(values: Sequence[object], weights: Sequence[float], u: Column) -> Column:
    total = sum(weights)
    expr: Column | None = None
    acc = 0.0
    for v, w in zip(values[:-1], weights[:-1], strict=True):
        acc += w / total
        expr = F.when(u < acc, F.lit(v)) if expr is None else expr.when(u < acc, F.lit(v))
    last = F.lit(values[-1])
    return last if expr is None else expr.otherwise(last)


def token(seed: int, prefix: str, *cols: Column | str, length: int = 16) -> Column:
    """A stable identifier like ``tx_3f9a...``."""
    digest = F.sha2(F.concat_ws("|", F.lit(str(seed)), F.lit(prefix), *[F.col(c) if isinstance(c, str) else c for c in cols]), 256)
    return F.concat(F.lit(prefix + "_"), F.substring(digest, 1, length))


def luhn_complete(payload15: Column) -> Column:
    """Append the Luhn check digit to a 15-digit string, giving a valid 16-digit card number."""
    digits = F.transform(F.split(payload15, ""), lambda x: x.cast("int"))

    def term(acc: Column, j: Column) -> Column:
        d = F.element_at(digits, F.lit(16) - j)
        doubled = F.when(d * 2 > 9, d * 2 - 9).otherwise(d * 2)
        return acc + F.when(j % 2 == 1, doubled).otherwise(d)

    total = F.aggregate(F.sequence(F.lit(1), F.lit(15)), F.lit(0), term)
    check = (F.lit(10) - total % 10) % 10
    return F.concat(payload15, check.cast("string"))


def _digits(seed: int, salt: str, n: int, *cols: Column | str) -> Column:
    return F.lpad(F.pmod(F.xxhash64(F.lit(seed), F.lit(salt), *cols), F.lit(10**n)).cast("string"), n, "0")


# ------------------------------------------------------------------------------------------
# Entities
# ------------------------------------------------------------------------------------------


def _country_of(seed: int, salt: str, *cols: Column | str) -> Column:
    return pick_weighted([c[0] for c in COUNTRIES], [c[7] for c in COUNTRIES], uniform(seed, salt, *cols))


def _country_map(index: int) -> Column:
    """A map column alpha-2 -> the field at ``index`` of COUNTRIES."""
    return F.create_map(*[x for c in COUNTRIES for x in (F.lit(c[0]), F.lit(c[index]))])


def customer_versions(spark: SparkSession, p: GeneratorParams, through_day: int) -> DataFrame:
    """Every customer record the CRM exports on days ``0..through_day-1`` (before defects).

    Columns: the CSV columns plus ``arrival_day``, ``_kind`` ('initial' or 'update') and the
    hidden attributes the transaction generator needs (``_country_code``, ``_mu``).
    """
    s = p.seed
    c = p.customers
    cid = F.concat(F.lit("C"), F.lpad(F.col("idx").cast("string"), 8, "0"))
    base = spark.range(c).withColumnRenamed("id", "idx").withColumn("arrival_day", F.lit(0)).withColumn("_kind", F.lit("initial"))
    if through_day > 1:
        upd = (
            spark.range(c * (through_day - 1))
            .select((F.col("id") % c).alias("idx"), (F.col("id") / c).cast("int").alias("day0"))
            .withColumn("arrival_day", F.col("day0") + 1)
            .drop("day0")
            .where(uniform(s, "cust_upd", "idx", "arrival_day") < CUSTOMER_UPDATE_RATE)
            .withColumn("_kind", F.lit("update"))
        )
        base = base.unionByName(upd)
    code = _country_of(s, "cust_country", "idx")
    first = pick(FIRST_NAMES, uniform(s, "first", "idx"))
    last = pick(LAST_NAMES, uniform(s, "last", "idx"))
    # The email, street and city change with each update (a move, a new address).
    version = F.when(F.col("_kind") == "initial", F.lit(0)).otherwise(F.col("arrival_day"))
    email_local = F.lower(F.regexp_replace(F.concat_ws(".", first, last), "[^A-Za-z.]", ""))
    domain = pick(("mail.example", "post.example", "inbox.example"), uniform(s, "dom", "idx", version))
    email = F.concat(
        email_local,
        F.when(version > 0, F.concat(F.lit("+"), version.cast("string"))).otherwise(F.lit("")),
        F.lit("."),
        (F.col("idx") % 997).cast("string"),
        F.lit("@"),
        domain,
    )
    # Sources are messy: stray spaces and capitals the silver layer must normalise.
    messy = uniform(s, "messy", "idx", version)
    email = F.when(messy < 0.05, F.concat(F.lit("  "), F.upper(email))).otherwise(email)
    name_first = F.when(messy > 0.95, F.concat(F.upper(first), F.lit(" "))).otherwise(first)
    country_repr = uniform(s, "crepr", "idx", version)
    country_txt = (
        F.when(country_repr < 0.6, code)
        .when(country_repr < 0.75, F.lower(code))
        .when(country_repr < 0.9, _country_map(2)[code])
        .otherwise(F.concat(F.lit(" "), _country_map(1)[code]))
    )
    birth = F.date_add(F.lit(date(1950, 1, 1)), (uniform(s, "birth", "idx") * 365 * 55).cast("int"))
    signup = F.date_sub(F.lit(p.start_date), (uniform(s, "signup", "idx") * 1000).cast("int") + 1)
    arrival = F.date_add(F.lit(p.start_date), F.col("arrival_day"))
    updated = F.timestamp_seconds(
        F.unix_timestamp(arrival.cast("timestamp")) + (uniform(s, "cupd_t", "idx", "arrival_day") * 86000).cast("long")
    )
    return base.select(
        "idx",
        "arrival_day",
        "_kind",
        cid.alias("customer_id"),
        name_first.alias("first_name"),
        last.alias("last_name"),
        email.alias("email"),
        F.concat(F.lit("+"), _digits(s, "phone_cc", 2, "idx"), F.lit(" "), _digits(s, "phone", 9, "idx")).alias("phone"),
        F.date_format(birth, "yyyy-MM-dd").alias("birth_date"),
        F.concat(
            (uniform(s, "hno", "idx", version) * 200 + 1).cast("int").cast("string"),
            F.lit(" "),
            pick(STREETS, uniform(s, "street", "idx", version)),
        ).alias("street"),
        pick(CITIES, uniform(s, "city", "idx", version)).alias("city"),
        _digits(s, "postcode", 5, "idx", version).alias("postcode"),
        country_txt.alias("country"),
        F.date_format(signup, "yyyy-MM-dd").alias("signup_date"),
        F.date_format(updated, "yyyy-MM-dd HH:mm:ss").alias("updated_at"),
        code.alias("_country_code"),
        F.exp(F.lit(3.0) + F.lit(0.8) * normal(s, "habit", "idx")).alias("_mu"),
    )


def merchant_versions(spark: SparkSession, p: GeneratorParams, through_day: int) -> DataFrame:
    """Every merchant document the API returns on days ``0..through_day-1`` (before defects)."""
    s = p.seed
    m = p.merchants
    base = spark.range(m).withColumnRenamed("id", "idx").withColumn("arrival_day", F.lit(0)).withColumn("_kind", F.lit("initial"))
    if through_day > 1:
        upd = (
            spark.range(m * (through_day - 1))
            .select((F.col("id") % m).alias("idx"), ((F.col("id") / m).cast("int") + 1).alias("arrival_day"))
            .where(uniform(s, "m_upd", "idx", "arrival_day") < MERCHANT_UPDATE_RATE)
            .withColumn("_kind", F.lit("update"))
        )
        base = base.unionByName(upd)
    version = F.when(F.col("_kind") == "initial", F.lit(0)).otherwise(F.col("arrival_day"))
    cat_u = uniform(s, "m_cat", "idx")
    code = _country_of(s, "m_country", "idx")
    score = F.round(uniform(s, "m_risk", "idx", version), 3)
    arrival = F.date_add(F.lit(p.start_date), F.col("arrival_day"))
    updated = F.timestamp_seconds(
        F.unix_timestamp(arrival.cast("timestamp")) + (uniform(s, "m_upd_t", "idx", "arrival_day") * 86000).cast("long")
    )
    doc = F.struct(
        F.concat(F.lit("M"), F.lpad(F.col("idx").cast("string"), 6, "0")).alias("merchant_id"),
        F.concat_ws(" ", pick(MERCHANT_WORDS, uniform(s, "mw1", "idx")), pick(MERCHANT_SUFFIX, uniform(s, "mw2", "idx"))).alias("name"),
        F.struct(pick([c[0] for c in CATEGORIES], cat_u).alias("mcc"), pick([c[1] for c in CATEGORIES], cat_u).alias("name")).alias(
            "category"
        ),
        F.struct(
            pick(CITIES, uniform(s, "m_city", "idx")).alias("city"),
            F.when(uniform(s, "m_cc", "idx") < 0.7, code).otherwise(_country_map(2)[code]).alias("country"),
        ).alias("address"),
        F.struct(F.when(score < 0.6, "low").when(score < 0.9, "medium").otherwise("high").alias("tier"), score.alias("score")).alias(
            "risk"
        ),
        F.date_format(F.date_sub(F.lit(p.start_date), (uniform(s, "m_onb", "idx") * 2000).cast("int") + 1), "yyyy-MM-dd").alias(
            "onboarded_at"
        ),
        F.date_format(updated, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("updated_at"),
    )
    return base.select("idx", "arrival_day", "_kind", doc.alias("doc"))


def transaction_bases(spark: SparkSession, p: GeneratorParams, through_day: int, customers: DataFrame) -> DataFrame:
    """One row per payment made on days ``0..through_day-1``, with its fraud truth and defect kind."""
    s = p.seed
    n = p.txns_per_day
    c = p.customers
    m = p.merchants
    k = F.col("k")
    day = (k / n).cast("int")
    seq = k % n
    rng = spark.range(n * through_day).withColumnRenamed("id", "k").select("k", day.alias("day"), seq.alias("seq"))
    burst = uniform(s, "burst", "k") < BURST_RATE
    group = F.concat_ws("-", F.col("day").cast("string"), (F.col("seq") / 6).cast("long").cast("string"))
    cust_idx = F.when(burst, F.pmod(F.xxhash64(F.lit(s), F.lit("burst_c"), group), F.lit(c))).otherwise(
        F.floor(F.pow(uniform(s, "cust", "k"), F.lit(1.6)) * c).cast("long")
    )
    merch_idx = F.floor(F.pow(uniform(s, "merch", "k"), F.lit(3.0)) * m).cast("long")
    df = rng.select(
        "k",
        "day",
        "seq",
        burst.alias("f_burst"),
        cust_idx.alias("cidx"),
        merch_idx.alias("midx"),
        (uniform(s, "spike", "k") < 0.02).alias("f_spike"),
        (uniform(s, "newdev", "k") < 0.05).alias("f_new_device"),
        (uniform(s, "mismatch", "k") < 0.04).alias("f_country_mismatch"),
        (uniform(s, "night", "k") < 0.08).alias("f_night"),
        group.alias("burst_group"),
    )
    cust = customers.where(F.col("_kind") == "initial").select(
        F.col("idx").alias("cidx"), "customer_id", F.col("_country_code").alias("cust_country"), F.col("_mu").alias("mu")
    )
    df = df.join(F.broadcast(cust), "cidx")
    # Local time of the payment in the customer's zone; a burst shares a base time.
    hour = F.when(F.col("f_night"), (uniform(s, "h_n", "k") * 6).cast("int")).otherwise((uniform(s, "h_d", "k") * 17).cast("int") + 7)
    secs = hour * 3600 + (uniform(s, "sec", "k") * 3600).cast("int")
    burst_secs = (uniform(s, "b_t", "burst_group") * 86000).cast("int") + (F.col("seq") % 6) * (uniform(s, "b_gap", "k") * 90).cast("int")
    late = uniform(s, "late", "k") < TXN_LATE_RATE
    event_day = F.when(late, F.col("day") - 2 - (uniform(s, "late_d", "k") * 9).cast("int")).otherwise(F.col("day"))
    offset = _country_map(5)[F.col("cust_country")]
    local_ts = F.timestamp_seconds(
        F.unix_timestamp(F.date_add(F.lit(p.start_date), event_day).cast("timestamp"))
        + F.when(F.col("f_burst"), burst_secs).otherwise(secs)
    )
    utc_ts = F.timestamp_seconds(F.unix_timestamp(local_ts) - offset * 3600)
    # A payment cannot arrive before it happened: when the UTC instant falls on the day after
    # the arrival day (an evening in New York), the payment moves one day earlier.
    too_late = F.to_date(utc_ts) > F.date_add(F.lit(p.start_date), event_day)
    local_ts = F.when(too_late, local_ts - F.expr("INTERVAL 1 DAY")).otherwise(local_ts)
    utc_ts = F.when(too_late, utc_ts - F.expr("INTERVAL 1 DAY")).otherwise(utc_ts)
    amount_eur = (
        F.col("mu")
        * F.exp(F.lit(0.5) * normal(s, "amt", "k"))
        * F.when(F.col("f_spike"), F.lit(5.0) + uniform(s, "spike_x", "k") * 15).otherwise(F.lit(1.0))
    )
    merchant_country = _country_of(s, "m_country", "midx")
    currency = F.when(uniform(s, "cur", "k") < 0.9, _country_map(4)[merchant_country]).otherwise(_country_map(4)[F.col("cust_country")])
    rate0 = F.create_map(*[x for cur, r in CURRENCIES for x in (F.lit(cur), F.lit(r))])
    logit = (
        F.lit(-6.0)
        + F.col("f_burst").cast("int") * 2.5
        + F.col("f_spike").cast("int") * 2.2
        + F.col("f_new_device").cast("int") * 1.5
        + F.col("f_country_mismatch").cast("int") * 1.8
        + F.col("f_night").cast("int") * 1.0
    )
    p_fraud = F.lit(1.0) / (F.lit(1.0) + F.exp(-logit))
    ip_country = F.when(
        F.col("f_country_mismatch"),
        pick([x[0] for x in COUNTRIES], uniform(s, "ipc", "k")),
    ).otherwise(F.col("cust_country"))
    ip_country = F.when(F.col("f_country_mismatch") & (ip_country == F.col("cust_country")), F.lit("US")).otherwise(ip_country)
    ip_country = F.when(F.col("f_country_mismatch") & (F.col("cust_country") == "US") & (ip_country == "US"), F.lit("DE")).otherwise(
        ip_country
    )
    ip = F.concat_ws(
        ".",
        _country_map(6)[ip_country].cast("string"),
        *[(uniform(s, f"ip{i}", "k") * 254 + 1).cast("int").cast("string") for i in range(3)],
    )
    card = luhn_complete(F.concat(pick(("4", "5"), uniform(s, "brand", "cidx")), _digits(s, "card", 14, "cidx")))
    device = F.when(F.col("f_new_device"), token(s, "dev", "k", length=12)).otherwise(token(s, "dev", "cidx", length=12))
    defect_u = uniform(s, "defect", "k")
    defect: Column = F.lit(None).cast("string")
    acc = 0.0
    whens = None
    for kind, rate in TXN_DEFECTS:
        acc += rate
        whens = F.when(defect_u < acc, F.lit(kind)) if whens is None else whens.when(defect_u < acc, F.lit(kind))
    defect = whens.otherwise(F.lit(None).cast("string")) if whens is not None else defect
    df = df.select(
        "k",
        "day",
        "customer_id",
        "cust_country",
        "f_burst",
        "f_spike",
        "f_new_device",
        "f_country_mismatch",
        "f_night",
        token(s, "tx", "k", length=24).alias("transaction_id"),
        F.concat(F.lit("M"), F.lpad(F.col("midx").cast("string"), 6, "0")).alias("merchant_id"),
        currency.alias("currency"),
        F.round(amount_eur * rate0[currency], 2).alias("amount"),
        local_ts.alias("local_ts"),
        utc_ts.alias("utc_ts"),
        offset.alias("offset_h"),
        pick(CHANNELS, uniform(s, "chan", "k")).alias("channel"),
        card.alias("card_number"),
        device.alias("device_id"),
        ip.alias("ip_address"),
        p_fraud.alias("fraud_probability"),
        (uniform(s, "is_fraud", "k") < p_fraud).alias("is_fraud"),
        defect.alias("defect"),
        late.alias("is_late"),
    )
    plain = F.col("defect").isNull()
    return df.select(
        "*",
        (plain & (uniform(s, "upd", "k") < TXN_UPDATE_RATE)).alias("has_update"),
        (plain & (uniform(s, "resend", "k") < TXN_RESEND_RATE)).alias("has_resend"),
        F.when(uniform(s, "fu_day", "k") < 0.5, F.col("day")).otherwise(F.col("day") + 1).alias("followup_day"),
    )


def _iso_with_offset(ts: Column, offset_h: Column) -> Column:
    sign = F.when(offset_h < 0, F.lit("-")).otherwise(F.lit("+"))
    off = F.concat(sign, F.lpad(F.abs(offset_h).cast("string"), 2, "0"), F.lit(":00"))
    return F.concat(F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss"), off)


def transaction_records(p: GeneratorParams, bases: DataFrame) -> DataFrame:
    """The gateway's JSON lines: base records, status updates and re-sends, with defects.

    Columns: ``arrival_day``, ``line`` (the JSON text), ``transaction_id``, ``_role``
    ('base', 'update', 'resend') and ``defect``.
    """
    s = p.seed
    final_status = F.when(F.col("is_fraud") & (uniform(s, "fdecl", "k") < 0.3), F.lit("declined")).otherwise(
        F.when(uniform(s, "decl", "k") < 0.05, F.lit("declined")).otherwise(F.lit("approved"))
    )
    updated_base = F.col("utc_ts") + F.expr("INTERVAL 2 SECONDS")
    updated_later = F.timestamp_seconds(F.unix_timestamp("utc_ts") + 300 + (uniform(s, "upd_t", "k") * 7000).cast("long"))
    event_time = _iso_with_offset(F.col("local_ts"), F.col("offset_h"))
    amount = F.col("amount").cast("decimal(18,2)")
    amount = (
        F.when(F.col("defect") == "negative_amount", -amount)
        .when(F.col("defect") == "absurd_amount", F.lit(98765432.10).cast("decimal(18,2)"))
        .otherwise(amount)
    )
    currency = F.when(F.col("defect") == "unknown_currency", pick(("XXX", "EURO", "US$", "ABC"), uniform(s, "badcur", "k"))).otherwise(
        F.col("currency")
    )
    event_time = F.when(
        F.col("defect") == "unparseable_timestamp",
        pick(("2026-02-30T25:61:00+01:00", "yesterday", "31/12/2025 11:59 PM", ""), uniform(s, "badts", "k")),
    ).otherwise(event_time)
    is_missing = F.col("defect").eqNullSafe("missing_required_field")
    missing_customer = is_missing & (uniform(s, "which_missing", "k") < 0.5)
    missing_merchant = is_missing & ~missing_customer

    def record(status: Column, updated: Column) -> Column:
        fields = [
            F.col("transaction_id").alias("transaction_id"),
            F.when(~missing_customer, F.col("customer_id")).alias("customer_id"),
            F.when(~missing_merchant, F.col("merchant_id")).alias("merchant_id"),
            amount.alias("amount"),
            currency.alias("currency"),
            event_time.alias("event_time"),
            F.col("channel").alias("channel"),
            F.col("card_number").alias("card_number"),
            F.col("device_id").alias("device_id"),
            F.col("ip_address").alias("ip_address"),
            status.alias("status"),
            F.date_format(updated, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("updated_at"),
        ]
        return F.struct(*fields)

    base_status = F.when(F.col("has_update"), F.lit("pending")).otherwise(final_status)
    base = bases.select(
        "*", F.col("day").alias("arrival_day"), F.lit("base").alias("_role"), record(base_status, updated_base).alias("rec")
    )
    upd = bases.where("has_update").select(
        "*", F.col("followup_day").alias("arrival_day"), F.lit("update").alias("_role"), record(final_status, updated_later).alias("rec")
    )
    resend = bases.where("has_resend").select(
        "*",
        F.when(F.col("has_update"), F.col("day")).otherwise(F.col("followup_day")).alias("arrival_day"),
        F.lit("resend").alias("_role"),
        record(base_status, updated_base).alias("rec"),
    )
    allr = base.unionByName(upd).unionByName(resend)
    drift = F.col("arrival_day") == p.drift_day
    wallet = pick(("apple_pay", "google_pay", "none"), uniform(s, "wallet", "k"))
    json_line = F.when(drift, F.to_json(F.struct("rec.*", wallet.alias("wallet")))).otherwise(F.to_json("rec"))
    line = F.when(F.col("defect") == "malformed_json", F.expr("substring(to_json(rec), 1, int(length(to_json(rec)) * 0.6))")).otherwise(
        json_line
    )
    return allr.select("arrival_day", "transaction_id", "_role", "defect", line.alias("line"))


def _csv_field(col: Column) -> Column:
    """RFC 4180 quoting for one field (null -> empty)."""
    txt = col.cast("string")
    needs = txt.rlike('[",\\n]') | txt.startswith(" ") | txt.endswith(" ")
    quoted = F.concat(F.lit('"'), F.regexp_replace(txt, '"', '""'), F.lit('"'))
    return F.coalesce(F.when(needs, quoted).otherwise(txt), F.lit(""))


def csv_line(cols: Sequence[str]) -> Column:
    return F.concat_ws(",", *[_csv_field(F.col(c)) for c in cols])


def customer_records(p: GeneratorParams, versions: DataFrame) -> DataFrame:
    """CRM export lines: versions, exact re-sends and defective rows (missing id, bad date, broken row)."""
    s = p.seed
    rows = versions.select("*", F.lit("base").alias("_role"), F.lit(None).cast("string").alias("defect"))
    resend = versions.where(uniform(s, "c_resend", "idx", "arrival_day") < CUSTOMER_RESEND_RATE).select(
        "*", F.lit("resend").alias("_role"), F.lit(None).cast("string").alias("defect")
    )
    # Defective rows are extra records on the initial export, with ids no valid record uses.
    n_bad = max(1, round(p.customers * CUSTOMER_DEFECT_RATE))
    bad = versions.where((F.col("_kind") == "initial") & (F.col("idx") < 3 * n_bad)).select(
        *[c for c in versions.columns if c not in ("customer_id", "birth_date", "idx")],
        (F.col("idx") + 90_000_000).alias("idx"),
        F.concat(F.lit("C"), (F.col("idx") + 90_000_000).cast("string")).alias("customer_id"),
        "birth_date",
        F.lit("defect").alias("_role"),
        F.when(F.col("idx") < n_bad, F.lit("missing_required_field"))
        .when(F.col("idx") < 2 * n_bad, F.lit("unparseable_date"))
        .otherwise(F.lit("malformed_row"))
        .alias("defect"),
    )
    bad = bad.withColumn("customer_id", F.when(F.col("defect") == "missing_required_field", F.lit(None)).otherwise(F.col("customer_id")))
    bad = bad.withColumn("birth_date", F.when(F.col("defect") == "unparseable_date", F.lit("31.02.1985")).otherwise(F.col("birth_date")))
    allr = rows.unionByName(resend).unionByName(bad)
    line = F.when(F.col("defect") == "malformed_row", F.concat(csv_line(CUSTOMER_COLUMNS[:6]), F.lit(',"unterminated'))).otherwise(
        csv_line(CUSTOMER_COLUMNS)
    )
    return allr.select("arrival_day", "customer_id", "_role", "defect", line.alias("line"), "idx")


def merchant_records(p: GeneratorParams, versions: DataFrame) -> DataFrame:
    s = p.seed
    # silver.merchants keeps the latest version per merchant: an update is a key-level duplicate.
    role = F.when(F.col("_kind") == "initial", F.lit("base")).otherwise(F.lit("update"))
    rows = versions.select("*", role.alias("_role"), F.lit(None).cast("string").alias("defect"))
    resend = versions.where(uniform(s, "m_resend", "idx", "arrival_day") < 0.01).select(
        "*", F.lit("resend").alias("_role"), F.lit(None).cast("string").alias("defect")
    )
    bad = versions.where((F.col("_kind") == "initial") & (F.col("idx") < 2)).select(
        (F.col("idx") + 900_000).alias("idx"),
        "arrival_day",
        "_kind",
        F.col("doc").withField("merchant_id", F.concat(F.lit("M"), (F.col("idx") + 900_000).cast("string"))).alias("doc"),
        F.lit("defect").alias("_role"),
        F.when(F.col("idx") == 0, F.lit("malformed_json")).otherwise(F.lit("missing_required_field")).alias("defect"),
    )
    # to_json leaves out null fields, so a null id is a document without the key.
    bad = bad.withColumn(
        "doc",
        F.when(F.col("defect") == "missing_required_field", F.col("doc").withField("merchant_id", F.lit(None).cast("string"))).otherwise(
            F.col("doc")
        ),
    )
    allr = rows.unionByName(resend).unionByName(bad)
    line = F.when(F.col("defect") == "malformed_json", F.expr("substring(to_json(doc), 1, 40)")).otherwise(F.to_json("doc"))
    return allr.select("arrival_day", F.col("doc.merchant_id").alias("merchant_id"), "_role", "defect", line.alias("line"), "idx")


def chargeback_records(p: GeneratorParams, bases: DataFrame, through_day: int) -> DataFrame:
    """Acquirer CSV lines for disputed payments, arriving 1-60 days after the payment."""
    s = p.seed
    clean = bases.where(F.col("defect").isNull())
    disputed = (F.col("is_fraud") & (uniform(s, "cb", "k") < CHARGEBACK_FRAUD_RATE)) | (
        ~F.col("is_fraud") & (uniform(s, "cb", "k") < CHARGEBACK_DISPUTE_RATE)
    )
    delay = (F.pow(uniform(s, "cb_delay", "k"), F.lit(2.0)) * 60).cast("int") + 1
    cb = (
        clean.where(disputed)
        .select(
            "k",
            (F.col("day") + delay).alias("arrival_day"),
            token(s, "cb", "k", length=20).alias("chargeback_id"),
            "transaction_id",
            F.when(F.col("is_fraud"), F.lit("10.4"))
            .otherwise(pick(("13.1", "13.3", "12.6"), uniform(s, "cb_reason", "k")))
            .alias("reason_code"),
            F.col("amount").cast("decimal(18,2)").cast("string").alias("amount"),
            "currency",
        )
        .where(F.col("arrival_day") < through_day)
    )
    cb = cb.withColumn("chargeback_date", F.date_format(F.date_add(F.lit(p.start_date), F.col("arrival_day")), "yyyy-MM-dd"))
    cb = cb.withColumn(
        "received_at",
        F.date_format(
            F.timestamp_seconds(
                F.unix_timestamp(F.col("chargeback_date").cast("timestamp")) + (uniform(s, "cb_t", "k") * 80000).cast("long")
            ),
            "yyyy-MM-dd HH:mm:ss",
        ),
    )
    rows = cb.select("*", F.lit("base").alias("_role"), F.lit(None).cast("string").alias("defect"))
    resend = cb.where(uniform(s, "cb_resend", "k") < 0.02).select(
        "*", F.lit("resend").alias("_role"), F.lit(None).cast("string").alias("defect")
    )
    bad = cb.where(uniform(s, "cb_bad", "k") < 0.01).select(
        *[c for c in cb.columns if c not in ("chargeback_id", "amount")],
        F.concat(F.col("chargeback_id"), F.lit("x")).alias("chargeback_id"),
        F.lit("-").alias("amount"),
        F.lit("defect").alias("_role"),
        F.lit("unparseable_amount").alias("defect"),
    )
    allr = rows.unionByName(resend).unionByName(bad)
    return allr.select(
        "arrival_day", "chargeback_id", "_role", "defect", csv_line(CHARGEBACK_COLUMNS).alias("line"), F.col("k").alias("idx")
    )


def fx_records(spark: SparkSession, p: GeneratorParams, through_day: int) -> DataFrame:
    """Daily EUR reference rates; the first batch also carries the history of the last 120 days."""
    s = p.seed
    quotes = [(cur, r) for cur, r in CURRENCIES if cur != "EUR"]
    cur_df = spark.createDataFrame([(i, cur, r) for i, (cur, r) in enumerate(quotes)], "ci int, quote_currency string, r0 double")
    days = spark.range(-FX_HISTORY_DAYS, through_day).withColumnRenamed("id", "rday")
    df = days.crossJoin(F.broadcast(cur_df))
    wave = F.sin((F.col("rday") + F.col("ci") * 11) / 9.0) * 0.03 + (uniform(s, "fx", "rday", "ci") - 0.5) * 0.01
    rate = F.format_number(F.col("r0") * (F.lit(1.0) + wave), 6)
    df = df.select(
        F.greatest(F.col("rday"), F.lit(0)).cast("int").alias("arrival_day"),
        F.date_format(F.date_add(F.lit(p.start_date), F.col("rday").cast("int")), "yyyy-MM-dd").alias("rate_date"),
        F.lit("EUR").alias("base_currency"),
        "quote_currency",
        F.regexp_replace(rate, ",", "").alias("rate"),
        F.col("rday").alias("idx"),
    )
    return df.select(
        "arrival_day",
        F.concat_ws("|", "rate_date", "quote_currency").alias("fx_key"),
        F.lit("base").alias("_role"),
        F.lit(None).cast("string").alias("defect"),
        csv_line(FX_COLUMNS).alias("line"),
        "idx",
    )


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------

HEADERS = {
    "customers": ",".join(CUSTOMER_COLUMNS),
    "chargebacks": ",".join(CHARGEBACK_COLUMNS),
    "fx_rates": ",".join(FX_COLUMNS),
}


def entities(spark: SparkSession, p: GeneratorParams, through_day: int) -> tuple[DataFrame, DataFrame]:
    """``(customer versions, transaction bases)`` of days ``0..through_day-1``, which the raw lines
    and the fraud truth are both derived from (persist them to compute them once)."""
    cust = customer_versions(spark, p, through_day)
    return cust, transaction_bases(spark, p, through_day, cust)


def records_by_source(
    spark: SparkSession, p: GeneratorParams, through_day: int, made: tuple[DataFrame, DataFrame] | None = None
) -> dict[str, DataFrame]:
    """Every raw line of days ``0..through_day-1`` per source (``arrival_day``, ``line``, ``_role``, ``defect``)."""
    cust, bases = made or entities(spark, p, through_day)
    return {
        "customers": customer_records(p, cust),
        "merchants": merchant_records(p, merchant_versions(spark, p, through_day)),
        "transactions": transaction_records(p, bases).where(F.col("arrival_day") < through_day),
        "chargebacks": chargeback_records(p, bases, through_day),
        "fx_rates": fx_records(spark, p, through_day),
    }


def fraud_truth(spark: SparkSession, p: GeneratorParams, through_day: int, made: tuple[DataFrame, DataFrame] | None = None) -> DataFrame:
    """Each clean transaction's true fraud probability and label (kept outside the raw zone)."""
    _, bases = made or entities(spark, p, through_day)
    return bases.where(F.col("defect").isNull()).select(
        "transaction_id",
        F.col("day").alias("arrival_day"),
        "fraud_probability",
        "is_fraud",
        "f_burst",
        "f_spike",
        "f_new_device",
        "f_country_mismatch",
        "f_night",
    )


def manifest_counts(records: DataFrame) -> dict[int, dict[str, object]]:
    """Per arrival day: lines written, defects per kind, and the expected pipeline outcome."""
    rows = records.groupBy("arrival_day", "_role", F.coalesce("defect", F.lit("")).alias("defect")).count().collect()
    out: dict[int, dict[str, object]] = {}
    for r in rows:
        day = out.setdefault(r["arrival_day"], {"records": 0, "defects": {}, "expected": {"landed": 0, "quarantined": 0, "duplicates": 0}})
        day["records"] += r["count"]
        exp = day["expected"]
        if r["defect"]:
            day["defects"][r["defect"]] = day["defects"].get(r["defect"], 0) + r["count"]
            exp["quarantined"] += r["count"]
        elif r["_role"] == "base":
            exp["landed"] += r["count"]
        else:
            day["defects"][f"duplicate_{r['_role']}"] = day["defects"].get(f"duplicate_{r['_role']}", 0) + r["count"]
            exp["duplicates"] += r["count"]
    return out


def write_day_folders(
    records: DataFrame, root: str, source: str, p: GeneratorParams, days: Sequence[int], rows_per_file: int = 250_000
) -> None:
    """Write the lines of ``days`` as ``<root>/<source>/arrival_date=YYYY-MM-DD/part-*``."""
    df = records.where(F.col("arrival_day").isin(list(days)))
    header = HEADERS.get(source)
    spark = records.sparkSession
    if header is not None:
        hdr = spark.createDataFrame([(d, header) for d in days], "arrival_day int, line string")
        df = hdr.select("arrival_day", "line", F.lit(0).alias("_order"), F.lit(0).alias("_file")).unionByName(
            df.select("arrival_day", "line", F.lit(1).alias("_order"), F.lit(0).alias("_file"))
        )
    else:
        df = df.select(
            "arrival_day",
            "line",
            F.lit(1).alias("_order"),
            F.pmod(F.xxhash64("line"), F.lit(max(1, math.ceil(p.txns_per_day * 1.1 / rows_per_file)))).alias("_file"),
        )
    out = (
        df.withColumn("arrival_date", F.date_format(F.date_add(F.lit(p.start_date), F.col("arrival_day")), "yyyy-MM-dd"))
        .repartition("arrival_date", "_file")
        .sortWithinPartitions("arrival_date", "_file", "_order", "line")
        .select("arrival_date", "line")
    )
    (
        out.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("arrival_date")
        .option("compression", "none")
        .text(f"{root}/{source}")
    )


def write_defect_ledger(records: DataFrame, uri: str, source: str, p: GeneratorParams, days: Sequence[int]) -> None:
    """Every defective line of ``days`` with its defect (``<uri>/source=<s>/arrival_date=<d>``),
    outside the raw zone: what the quality rules are scored against (see ``payments.defects``)."""
    bad = records.where(F.col("defect").isNotNull() & F.col("arrival_day").isin(list(days)))
    out = bad.select(
        F.lit(source).alias("source"),
        F.date_format(F.date_add(F.lit(p.start_date), F.col("arrival_day")), "yyyy-MM-dd").alias("arrival_date"),
        "defect",
        "_role",
        "line",
    )
    (out.coalesce(1).write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy("source", "arrival_date").parquet(uri))


def manifest_json(p: GeneratorParams, day: int, per_source: dict[str, dict[int, dict[str, object]]]) -> str:
    body = {
        "generator": p.identity(),
        "arrival_date": p.day(day).isoformat(),
        "sources": {
            src: per_source[src].get(day, {"records": 0, "defects": {}, "expected": {"landed": 0, "quarantined": 0, "duplicates": 0}})
            for src in SOURCES
        },
    }
    return json.dumps(body, indent=1, sort_keys=True)
