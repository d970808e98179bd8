"""Slowly changing dimension type 2, as a pure function over history and incoming versions."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.transforms.dedup import record_hash


def scd2_chain(
    history: DataFrame,
    incoming: DataFrame,
    keys: Sequence[str],
    tracked: Sequence[str],
    valid_from: str = "valid_from",
) -> DataFrame:
    """Rebuild the version chain of every key present in ``incoming``.

    ``history`` holds the stored rows (with ``valid_to`` and ``is_current``) of those keys;
    ``incoming`` holds new versions (same columns but those two). Versions arriving out of order
    are put in place; an incoming version identical in ``tracked`` to the version before it is
    dropped (no change, so no new row); a version at an already stored ``valid_from`` keeps the
    stored row. ``valid_to`` is the next version's ``valid_from``; ``is_current`` marks the last.

    Returns:
        The whole chain of the affected keys, with ``__is_new`` true for rows not yet stored.

    Example::

        chain = scd2_chain(stored, updates, ["customer_id"], ["email", "city"])
    """
    cols = [c for c in incoming.columns]
    stored = history.select(*cols, F.lit(True).alias("__stored"))
    new = incoming.select(*cols, F.lit(False).alias("__stored"))
    both = stored.unionByName(new).withColumn("__attrs", record_hash(tracked))
    w_dup = Window.partitionBy(*keys, valid_from).orderBy(F.col("__stored").desc(), F.col("__attrs").desc())
    both = both.withColumn("__r", F.row_number().over(w_dup)).where("__r = 1").drop("__r")
    w = Window.partitionBy(*keys).orderBy(valid_from)
    both = both.withColumn("__prev_attrs", F.lag("__attrs").over(w))
    both = both.where(F.col("__stored") | F.col("__prev_attrs").isNull() | (F.col("__prev_attrs") != F.col("__attrs")))
    return both.select(
        *cols,
        F.lead(valid_from).over(w).alias("valid_to"),
        F.lead(valid_from).over(w).isNull().alias("is_current"),
        (~F.col("__stored")).alias("__is_new"),
    )
