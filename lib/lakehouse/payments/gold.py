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

from pyspark.sql import Column, DataFrame
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


STATS = ("frequency", "gross_spend", "charged_back", "chargebacks")
SPEND = "array<struct<category:string,spend:decimal(18,2)>>"


def approved_payments(tx: DataFrame, chargebacks: DataFrame, merchants: DataFrame) -> DataFrame:
    """One row per approved payment: customer, day, amount, the amount charged back (the largest
    chargeback of the payment; null if none) and the merchant's category."""
    cb = chargebacks.groupBy("transaction_id").agg(F.max("amount_reporting").alias("cb_amount"))
    return (
        tx.where(F.col("status") == "approved")
        .select("transaction_id", "customer_id", "merchant_id", "event_date", "amount_reporting")
        .join(cb, "transaction_id", "left")
        .join(merchants.select("merchant_id", "category"), "merchant_id", "left")
    )


def _signed_sums(rows: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Per customer the sums of ``STATS`` and the first/last day over payment rows weighted by
    ``__w`` (+1 a payment counted now, -1 one counted before), and per customer and category the
    spend."""
    w = F.col("__w")

    def signed(c: Column) -> Column:
        return F.when(w > 0, c).otherwise(-c)

    stats = rows.groupBy("customer_id").agg(
        F.sum(w).cast("bigint").alias("frequency"),
        F.sum(signed(F.col("amount_reporting"))).alias("gross_spend"),
        F.sum(signed(F.coalesce("cb_amount", F.lit(0).cast("decimal(18,2)")))).alias("charged_back"),
        F.sum(F.when(F.col("cb_amount").isNotNull(), w).otherwise(0)).cast("bigint").alias("chargebacks"),
        F.min(F.when(w > 0, F.col("event_date"))).alias("first_transaction_date"),
        F.max(F.when(w > 0, F.col("event_date"))).alias("last_transaction_date"),
    )
    spend = (
        rows.where(F.col("category").isNotNull())
        .groupBy("customer_id", "category")
        .agg(F.sum(signed(F.col("amount_reporting"))).alias("spend"))
    )
    return stats, spend


def _spend_array(spend: DataFrame) -> DataFrame:
    """Per customer the categories with spend, as ``spend_by_category`` sorted by category."""
    kept = spend.where(F.col("spend") != 0)
    arr = F.array_sort(F.collect_list(F.struct("category", F.col("spend").cast("decimal(18,2)").alias("spend"))))
    return kept.groupBy("customer_id").agg(arr.cast(SPEND).alias("spend_by_category"))


def _recount(rows: DataFrame) -> DataFrame:
    """Complete statistics of the customers of ``rows`` (every approved payment of theirs)."""
    stats, spend = _signed_sums(rows.withColumn("__w", F.lit(1)))
    return stats.join(_spend_array(spend), "customer_id", "left")


def _add(current: DataFrame, before: DataFrame, after: DataFrame) -> DataFrame:
    """The statistics ``current`` holds, minus the payments as counted ``before``, plus the same
    payments as counted ``after``: exact for sums and counts; the first/last day only widen (a
    customer whose counted payment moved or went away is recounted instead, see customer_360)."""
    rows = before.withColumn("__w", F.lit(-1)).unionByName(after.withColumn("__w", F.lit(1)))
    delta, spend_delta = _signed_sums(rows)
    held = current.select("customer_id", *STATS, "first_transaction_date", "last_transaction_date")
    stats = held.join(
        delta.select("customer_id", *[F.col(c).alias(f"__d_{c}") for c in delta.columns if c != "customer_id"]), "customer_id", "full"
    )
    stats = stats.select(
        "customer_id",
        *[(F.coalesce(c, F.lit(0)) + F.coalesce(f"__d_{c}", F.lit(0))).alias(c) for c in STATS],
        F.least("first_transaction_date", "__d_first_transaction_date").alias("first_transaction_date"),
        F.greatest("last_transaction_date", "__d_last_transaction_date").alias("last_transaction_date"),
    )
    spend = current.select("customer_id", F.explode("spend_by_category").alias("s")).select("customer_id", "s.category", "s.spend")
    total = spend.unionByName(spend_delta).groupBy("customer_id", "category").agg(F.sum("spend").alias("spend"))
    return stats.join(_spend_array(total), "customer_id", "left")


def customer_360(
    tables: Mapping[str, DataFrame],
    changes: Mapping[str, DataFrame] | None,
    previous: Mapping[str, DataFrame] | None = None,
) -> DataFrame:
    """One row per customer: lifetime value, recency inputs, frequency, spend per category and the
    three favourite categories, and the current SCD2 attributes.

    ``lifetime_value`` = approved spend minus charged-back amounts, in the reporting currency.
    Recency is stored as ``last_transaction_date``; :func:`with_recency` turns it into days as of
    any date, so the table does not go stale by itself every midnight.

    Incrementally (``changes``, with ``previous``: the upstream tables as the last run read them,
    and ``tables["customer_360"]``: the table's current rows) it does not recount a customer's
    history: the payments the changes touch are counted as they were (``previous``) and as they
    are, and the difference is added to the stored sums, so the work follows the changes, not the
    customers' histories. A customer one of whose counted payments went away or moved to another
    day (its first/last day may shrink) is recounted from all of their payments.
    """
    customers = tables["customers"].where("is_current")
    if changes is None:
        stats = _recount(approved_payments(tables["transactions"], tables["chargebacks"], tables["merchants"]))
    else:
        if previous is None or "customer_360" not in tables:
            raise PipelineError(
                "customer_360: an incremental build needs the upstream tables as last read (previous) and its own current rows"
            )
        stats, touched = _incremental_stats(tables, changes, previous)
        customers = customers.join(touched, "customer_id", "left_semi")
    return _rows(customers, stats)


def _incremental_stats(
    tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame], previous: Mapping[str, DataFrame]
) -> tuple[DataFrame, DataFrame]:
    before, after = _changed_payments(tables, changes, previous)
    # a payment counted before that is no longer counted on the same day may move first/last
    gone = before.join(after, ["transaction_id", "customer_id", "event_date"], "left_anti").select("customer_id").distinct()
    gone = gone.localCheckpoint()  # few customers, often none: then nobody is recounted (no read of their payments)
    touched = (
        before.select("customer_id")
        .unionByName(after.select("customer_id"))
        .unionByName(changes["customers"].select("customer_id") if "customers" in changes else after.select("customer_id").limit(0))
        .where(F.col("customer_id").isNotNull())
        .distinct()
    )
    current = tables["customer_360"].join(touched, "customer_id", "left_semi").join(gone, "customer_id", "left_anti")
    added = _add(
        current,
        before.join(gone, "customer_id", "left_anti"),
        after.join(gone, "customer_id", "left_anti"),
    )
    if gone.isEmpty():
        return added, touched
    tx_now = tables["transactions"]
    recounted = _recount(approved_payments(tx_now.join(gone, "customer_id", "left_semi"), tables["chargebacks"], tables["merchants"]))
    return added.unionByName(recounted), touched


_TX = ("transaction_id", "customer_id", "merchant_id", "event_date", "amount_reporting", "status")


def _changed_payments(
    tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame], previous: Mapping[str, DataFrame]
) -> tuple[DataFrame, DataFrame]:
    """The approved payments whose counting may differ, as the last run counted them (``before``)
    and as they count now (``after``), both materialized (they are few: the changed payments).

    A payment whose own row changed is in the transactions' change feed: its row before and after
    lies in the event dates of the feed's rows (a pre-image carries where it was), so both reads
    skip every other date. A payment whose chargebacks or merchant's category changed, its own row
    unchanged, is read once (the only read of every date, and only of those ids and merchants) and
    counted with the chargebacks and merchants of then and of now. A customer's new details change
    no payment.
    """
    tx_now, tx_then = tables["transactions"], previous.get("transactions")
    cb_now, m_now = tables["chargebacks"], tables["merchants"]
    cb_then, m_then = previous.get("chargebacks", cb_now.limit(0)), previous.get("merchants", m_now.limit(0))
    empty = tx_now.select(*_TX).limit(0)
    own_before, own_after, own_ids = empty, empty, None
    if "transactions" in changes:
        feed = changes["transactions"].where(F.col("_change_type").isin(*_CHANGE_TYPES)).select("transaction_id", "event_date")
        feed = feed.localCheckpoint()
        own_ids = feed.select("transaction_id").distinct()
        dates = [r[0] for r in feed.select("event_date").distinct().collect()]  # a few days
        known = sorted(d for d in dates if d is not None)
        on_dates = F.col("event_date").isin(*known) if known else F.lit(False)
        if None in dates:
            on_dates = on_dates | F.col("event_date").isNull()
        own_after = tx_now.where(on_dates).join(own_ids, "transaction_id", "left_semi").select(*_TX)
        if tx_then is not None:  # else nothing was counted before
            own_before = tx_then.where(on_dates).join(own_ids, "transaction_id", "left_semi").select(*_TX)
    others = []
    if "chargebacks" in changes:
        others.append(("transaction_id", changed_keys(changes["chargebacks"], "transaction_id")))
    if "merchants" in changes:
        others.append(("merchant_id", changed_keys(changes["merchants"], "merchant_id", ("category",))))
    unchanged = empty
    if others:
        # one read of the payments for both: each key list broadcast, a row kept if either matches
        rows = tx_now.select(*_TX)
        hit = F.lit(False)
        for i, (key, keys) in enumerate(others):
            rows = rows.join(F.broadcast(keys.where(F.col(key).isNotNull()).distinct().withColumn(f"__hit{i}", F.lit(True))), key, "left")
            hit = hit | F.coalesce(F.col(f"__hit{i}"), F.lit(False))
        rows = rows.where(hit).select(*_TX)
        if own_ids is not None:
            rows = rows.join(own_ids, "transaction_id", "left_anti")
        unchanged = rows.localCheckpoint()
    before = approved_payments(own_before.unionByName(unchanged if tx_then is not None else empty), cb_then, m_then).localCheckpoint()
    after = approved_payments(own_after.unionByName(unchanged), cb_now, m_now).localCheckpoint()
    return before, after


def _rows(customers: DataFrame, stats: DataFrame) -> DataFrame:
    """The table's rows: each current customer's details with their statistics (zero if none)."""
    zero = F.lit(0).cast("decimal(18,2)")
    gross = F.coalesce("gross_spend", zero)
    charged = F.coalesce("charged_back", zero)
    spend = F.coalesce("spend_by_category", F.array().cast(SPEND))
    by_spend = F.array_sort(
        spend,
        lambda a, b: (
            F.when(a["spend"] > b["spend"], -1)
            .when(a["spend"] < b["spend"], 1)
            .otherwise(F.when(a["category"] < b["category"], -1).when(a["category"] > b["category"], 1).otherwise(0))
        ),
    )
    freq = F.coalesce("frequency", F.lit(0)).cast("bigint")
    # as avg() of decimal(18,2) computes it: sum / count at 6 decimals, then rounded to cents
    avg = F.when(freq > 0, F.round((gross.cast("decimal(28,2)") / freq.cast("decimal(20,0)")).cast("decimal(22,6)"), 2))
    details = ("customer_id", "first_name", "last_name", "country_code", "city", "signup_date")
    return (
        customers.select(*details, F.col("valid_from").alias("attributes_since"))
        .join(stats, "customer_id", "left")
        .select(
            *details,
            "attributes_since",
            freq.alias("frequency"),
            gross.cast("decimal(18,2)").alias("gross_spend"),
            charged.cast("decimal(18,2)").alias("charged_back"),
            (gross - charged).cast("decimal(18,2)").alias("lifetime_value"),
            F.coalesce("chargebacks", F.lit(0)).cast("bigint").alias("chargebacks"),
            avg.cast("decimal(18,2)").alias("avg_amount"),
            "first_transaction_date",
            "last_transaction_date",
            spend.alias("spend_by_category"),
            F.slice(F.transform(by_spend, lambda x: x["category"]), 1, 3).alias("favourite_categories"),
        )
    )


def with_recency(customer_360_df: DataFrame, as_of: date) -> DataFrame:
    """Add ``recency_days``: days from the last approved payment to ``as_of`` (null if none)."""
    return customer_360_df.withColumn("recency_days", F.datediff(F.lit(as_of), F.col("last_transaction_date")))
