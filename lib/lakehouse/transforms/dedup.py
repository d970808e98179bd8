"""Deduplication: a deterministic 'latest version wins' per business key."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def record_hash(columns: Sequence[str]) -> Column:
    """A 64-bit hash (xxHash64) of the JSON of ``columns``: equal for exact duplicates, a stable
    tie-breaker between versions of one key otherwise (8 bytes a row, not 64 hex characters)."""
    return F.xxhash64(F.to_json(F.struct(*[F.col(c) for c in columns])))


def latest_per_key(df: DataFrame, keys: Sequence[str], order: Sequence[str]) -> DataFrame:
    """Keep one row per key: the greatest by ``order`` (descending, nulls last).

    With a unique last ``order`` column (such as a record hash) the result does not depend on
    how rows are partitioned or in which order they arrived.

    Example::

        latest_per_key(df, ["id"], ["updated_at", "_record_hash"])
    """
    w = Window.partitionBy(*keys).orderBy(*[F.col(c).desc_nulls_last() for c in order])
    return df.withColumn("__rank", F.row_number().over(w)).where("__rank = 1").drop("__rank")
