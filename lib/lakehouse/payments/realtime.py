"""Real-time gold: payments in event-time windows, from silver's new rows as they arrive.

Each function takes ``events`` (rows of ``silver.transactions``, one per payment, with
``event_time``) and returns the windows; the ``stream`` job runs it as a stateful streaming
aggregation (watermarked on ``event_time``, update mode: each micro-batch yields the windows it
changed), and the same function over the same rows as a batch DataFrame is the recomputation the
tests compare the table with.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

VELOCITY_WINDOW, VELOCITY_SLIDE = "10 minutes", "1 minute"


def merchant_minute(events: DataFrame) -> DataFrame:
    """Per merchant and one-minute tumbling window: payments, amount (reporting currency),
    declined payments and the decline rate."""
    w = F.window("event_time", "1 minute")
    return (
        events.groupBy("merchant_id", w.alias("w"))
        .agg(
            F.count(F.lit(1)).alias("payments"),
            F.sum("amount_reporting").cast("decimal(18,2)").alias("amount_reporting"),
            F.count(F.when(F.col("status") == "declined", 1)).alias("declined"),
        )
        .select(
            "merchant_id",
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "payments",
            "amount_reporting",
            "declined",
            F.round(F.col("declined") / F.col("payments"), 4).alias("decline_rate"),
        )
    )


def customer_velocity(events: DataFrame) -> DataFrame:
    """Per customer, ten-minute windows sliding by a minute: payments, amount (reporting
    currency) and distinct merchants, the velocity signals of card fraud."""
    w = F.window("event_time", VELOCITY_WINDOW, VELOCITY_SLIDE)
    return (
        events.groupBy("customer_id", w.alias("w"))
        .agg(
            F.count(F.lit(1)).alias("payments"),
            F.sum("amount_reporting").cast("decimal(18,2)").alias("amount_reporting"),
            F.approx_count_distinct("merchant_id").alias("merchants"),
        )
        .select(
            "customer_id",
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "payments",
            "amount_reporting",
            "merchants",
        )
    )
