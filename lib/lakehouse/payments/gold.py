"""Gold transforms of the payments domain: marts computed from silver.

Each function takes ``tables`` (the current silver tables by short name; on an incremental run
also the table's own current rows, under its short name) and ``changes`` (their change-data-feed
rows since the last gold run, by short name, or ``None`` for a full build) and returns the
complete rows of every partition or key the changes touch — never more. The runner writes them
with replaceWhere (partitions) or MERGE (keys).

Example (in a notebook)::

    kpis = merchant_daily_kpis({"transactions": tx, "chargebacks": cb, "merchants": m}, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError

_CHANGE_TYPES = ("insert", "delete", "update_preimage", "update_postimage")


def changed_keys(changes: DataFrame, key: str, columns: Sequence[str] | None = None) -> DataFrame:
    """Keys of a change-data-feed frame whose row was inserted, deleted, or updated in ``columns``.

    With ``columns`` None any update counts. Otherwise an update counts only if one of ``columns``
    differs between its pre- and post-image (a merchant's new risk score does not change its name).
    """
    kind = F.col("_change_type")
    if not columns:
        return changes.where(kind.isin(*_CHANGE_TYPES)).select(key)
    values = F.struct(*[F.col(c) for c in columns])
    pre = changes.where(kind == "update_preimage").select(key, "_commit_version", values.alias("__before"))
    post = changes.where(kind == "update_postimage").select(key, "_commit_version", values.alias("__after"))
    updated = pre.join(post, [key, "_commit_version"]).where(~F.col("__before").eqNullSafe(F.col("__after"))).select(key)
    return changes.where(kind.isin("insert", "delete")).select(key).unionByName(updated)


# How a change in an upstream table reaches the transactions it concerns.
_JOIN_KEY = {"transactions": "transaction_id", "chargebacks": "transaction_id", "merchants": "merchant_id", "customers": "customer_id"}


def affected_values(
    tables: Mapping[str, DataFrame],
    changes: Mapping[str, DataFrame],
    columns: str | Sequence[str],
    relevant: Mapping[str, Sequence[str]] | None = None,
) -> DataFrame:
    """Distinct values of ``columns`` (transactions columns) touched by the changes of any upstream.

    A change that carries the columns counts directly; any other reaches them through the
    transactions that share its key (a chargeback through its transaction, a merchant through
    its payments). ``relevant`` limits, per upstream, the columns whose updates matter.
    """
    cols = [columns] if isinstance(columns, str) else list(columns)
    tx = tables["transactions"]
    parts = []
    for name, key in _JOIN_KEY.items():
        if name not in changes:
            continue
        changed = changes[name].where(F.col("_change_type").isin(*_CHANGE_TYPES))
        matter = (relevant or {}).get(name)
        if matter:
            changed = changed.join(changed_keys(changed, key, matter).distinct(), key, "left_semi")
        if all(c in changed.columns for c in cols):
            parts.append(changed.select(*cols))
        else:
            parts.append(changed.select(key).distinct().join(tx.select(key, *[c for c in cols if c != key]), key).select(*cols))
    if not parts:
        return tx.select(*cols).limit(0)
    present = reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in cols])
    return reduce(DataFrame.unionByName, parts).where(present).distinct()


def affected_merchant_days(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame]) -> DataFrame:
    """``(event_date, merchant_id)`` pairs touched by changed transactions, their chargebacks, or
    their merchants' names and categories."""
    return affected_values(tables, changes, ("event_date", "merchant_id"), {"merchants": ("merchant_name", "category")})


def merchant_daily_kpis(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame] | None) -> DataFrame:
    """Per merchant and event date: volume, approved amount (reporting currency), approval and
    chargeback rates, distinct customers, p50/p95 amount.

    Incrementally (``changes`` given) it returns every row of the event dates the changes touch,
    as the table is replaced by date, but aggregates only the (date, merchant) pairs they touch:
    the other pairs of those dates are the table's current rows (``tables["merchant_daily_kpis"]``),
    kept as they are. A late chargeback thus costs its merchant's day, not the whole day's payments.
    """
    tx = tables["transactions"]
    kept = None
    if changes is not None:
        if "merchant_daily_kpis" not in tables:
            raise PipelineError("merchant_daily_kpis: an incremental build needs the table's current rows as tables['merchant_daily_kpis']")
        pairs = affected_merchant_days(tables, changes)
        days = F.broadcast(pairs.select("event_date").distinct())
        # the dates first (a broadcast semi join on the partition column prunes the other days' files)
        tx = tx.join(days, "event_date", "left_semi").join(pairs, ["event_date", "merchant_id"], "left_semi")
        current = tables["merchant_daily_kpis"].join(days, "event_date", "left_semi")
        kept = current.join(pairs, ["event_date", "merchant_id"], "left_anti")
    cb = tables["chargebacks"].select("transaction_id").distinct().withColumn("has_chargeback", F.lit(True))
    m = tables["merchants"].select("merchant_id", "merchant_name", "category")
    approved = F.col("status") == "approved"
    agg = (
        tx.join(cb, "transaction_id", "left")
        .groupBy("merchant_id", "event_date")
        .agg(
            F.count("*").alias("transactions"),
            F.sum(approved.cast("int")).alias("approved"),
            F.sum(F.when(approved, F.col("amount_reporting"))).cast("decimal(18,2)").alias("amount_reporting"),
            F.sum(F.when(approved & F.col("has_chargeback"), 1).otherwise(0)).alias("chargebacks"),
            F.countDistinct("customer_id").alias("distinct_customers"),
            F.percentile(F.col("amount_reporting"), 0.5).alias("p50_amount"),
            F.percentile(F.col("amount_reporting"), 0.95).alias("p95_amount"),
        )
    )
    fresh = agg.join(m, "merchant_id", "left").select(
        "event_date",
        "merchant_id",
        "merchant_name",
        "category",
        "transactions",
        "approved",
        F.coalesce("amount_reporting", F.lit(0).cast("decimal(18,2)")).alias("amount_reporting"),
        F.round(F.col("approved") / F.col("transactions"), 4).alias("approval_rate"),
        "chargebacks",
        F.round(F.when(F.col("approved") > 0, F.col("chargebacks") / F.col("approved")).otherwise(F.lit(0.0)), 4).alias("chargeback_rate"),
        "distinct_customers",
        F.round("p50_amount", 2).cast("decimal(18,2)").alias("p50_amount"),
        F.round("p95_amount", 2).cast("decimal(18,2)").alias("p95_amount"),
    )
    return fresh if kept is None else fresh.unionByName(kept.select(*fresh.columns))


def affected_customers(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame]) -> DataFrame:
    """Customers whose payments, chargebacks, merchants' categories or CRM details changed."""
    return affected_values(tables, changes, "customer_id", {"merchants": ("category",)})


def customer_360(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame] | None) -> DataFrame:
    """One row per customer: lifetime value, recency inputs, frequency, favourite categories and
    the current SCD2 attributes.

    ``lifetime_value`` = approved spend minus charged-back amounts, in the reporting currency.
    Recency is stored as ``last_transaction_date``; :func:`with_recency` turns it into days as of
    any date, so the table does not go stale by itself every midnight.
    """
    customers = tables["customers"].where("is_current")
    tx = tables["transactions"]
    if changes is not None:
        keys = F.broadcast(affected_customers(tables, changes))
        customers = customers.join(keys, "customer_id", "left_semi")
        tx = tx.join(keys, "customer_id", "left_semi")
    approved = tx.where(F.col("status") == "approved")
    cb = tables["chargebacks"].groupBy("transaction_id").agg(F.max("amount_reporting").alias("cb_amount"))
    m = tables["merchants"].select("merchant_id", "category")
    enriched = approved.join(cb, "transaction_id", "left").join(m, "merchant_id", "left")
    stats = enriched.groupBy("customer_id").agg(
        F.count("*").alias("frequency"),
        F.sum("amount_reporting").cast("decimal(18,2)").alias("gross_spend"),
        F.sum(F.coalesce("cb_amount", F.lit(0))).cast("decimal(18,2)").alias("charged_back"),
        F.count("cb_amount").alias("chargebacks"),
        F.min("event_date").alias("first_transaction_date"),
        F.max("event_date").alias("last_transaction_date"),
        F.round(F.avg("amount_reporting"), 2).cast("decimal(18,2)").alias("avg_amount"),
    )
    by_cat = enriched.groupBy("customer_id", "category").agg(F.sum("amount_reporting").alias("spend"))
    w = Window.partitionBy("customer_id").orderBy(F.col("spend").desc(), F.col("category"))
    fav = (
        by_cat.where(F.col("category").isNotNull())
        .withColumn("r", F.row_number().over(w))
        .where("r <= 3")
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("r", "category"))).alias("cats"))
        .select("customer_id", F.transform("cats", lambda s: s["category"]).alias("favourite_categories"))
    )
    out = (
        customers.select(
            "customer_id",
            "first_name",
            "last_name",
            "country_code",
            "city",
            "signup_date",
            F.col("valid_from").alias("attributes_since"),
        )
        .join(stats, "customer_id", "left")
        .join(fav, "customer_id", "left")
    )
    return out.select(
        "customer_id",
        "first_name",
        "last_name",
        "country_code",
        "city",
        "signup_date",
        "attributes_since",
        F.coalesce("frequency", F.lit(0)).cast("bigint").alias("frequency"),
        F.coalesce("gross_spend", F.lit(0)).cast("decimal(18,2)").alias("gross_spend"),
        F.coalesce("charged_back", F.lit(0)).cast("decimal(18,2)").alias("charged_back"),
        (F.coalesce("gross_spend", F.lit(0)) - F.coalesce("charged_back", F.lit(0))).cast("decimal(18,2)").alias("lifetime_value"),
        F.coalesce("chargebacks", F.lit(0)).cast("bigint").alias("chargebacks"),
        "avg_amount",
        "first_transaction_date",
        "last_transaction_date",
        F.coalesce("favourite_categories", F.array().cast("array<string>")).alias("favourite_categories"),
    )


def with_recency(customer_360_df: DataFrame, as_of: date) -> DataFrame:
    """Add ``recency_days``: days from the last approved payment to ``as_of`` (null if none)."""
    return customer_360_df.withColumn("recency_days", F.datediff(F.lit(as_of), F.col("last_transaction_date")))
