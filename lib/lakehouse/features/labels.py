"""Fraud labels from chargebacks, as they were known at a point in time.

A payment is a positive once a fraud chargeback for it has *arrived*; it is a negative only once
the chargeback window has passed without one (label maturity). Until then its outcome is unknown
and it is left out, so a training set never learns "not fraud" from a payment whose chargeback
simply has not come yet.

Example::

    labels = fraud_labels(tx, cb, as_of=datetime(2026, 3, 1), maturity_days=45)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def fraud_labels(
    transactions: DataFrame,
    chargebacks: DataFrame,
    as_of: datetime,
    maturity_days: int,
    fraud_reasons: Sequence[str] = ("10.",),
) -> DataFrame:
    """Labels known at ``as_of``.

    Args:
        transactions: silver.transactions (``transaction_id``, ``event_time`` and the rest).
        chargebacks: silver.chargebacks (``transaction_id``, ``reason_code``, ``received_at``).
        maturity_days: how long after a payment a chargeback can still arrive.
        fraud_reasons: reason-code prefixes that mean fraud (card networks' 10.x family).

    Returns:
        Every column of ``transactions`` for payments made by ``as_of`` whose outcome is known,
        plus ``label`` (1 fraud, 0 not) and ``label_time`` (when the label became known: the
        chargeback's arrival, or the end of the window).
    """
    at = F.lit(as_of).cast("timestamp")
    fraud = F.lit(False)
    for prefix in fraud_reasons:
        fraud = fraud | F.col("reason_code").startswith(prefix)
    known = chargebacks.where(fraud & (F.col("received_at") <= at)).groupBy("transaction_id").agg(F.min("received_at").alias("__cb_at"))
    matured = F.col("event_time") + F.make_dt_interval(F.lit(maturity_days)) <= at
    out = transactions.where(F.col("event_time") <= at).join(known, "transaction_id", "left").where(F.col("__cb_at").isNotNull() | matured)
    return out.select(
        *transactions.columns,
        F.col("__cb_at").isNotNull().cast("int").alias("label"),
        F.coalesce(F.col("__cb_at"), F.col("event_time") + F.make_dt_interval(F.lit(maturity_days))).alias("label_time"),
    )
