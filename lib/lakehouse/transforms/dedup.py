"""Deduplication: a deterministic 'latest version wins' per business key."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def record_hash(columns: Sequence[str]) -> Column:
    """A 64-bit hash (xxHash64) of the JSON of ``columns``: equal for exact duplicates, a stable
    tie-breaker between versions of one key otherwise (8 bytes a row, not 64 hex characters)."""
    return F.xxhash64(F.to_json(F.struct(*[F.col(c) for c in columns])))


def latest_per_key(df: DataFrame, keys: Sequence[str], order: Sequence[str], first: Sequence[str] = ("_source_file",)) -> DataFrame:
    """Keep one row per key: the greatest by ``order`` (descending, nulls last); among exact
    equals, the least by ``first`` (ascending; columns ``df`` lacks are ignored), so of identical
    re-sends the earliest delivery's lineage is kept, however the batches were cut.

    With a unique last ``order`` column (such as a record hash) the result does not depend on
    how rows are partitioned or in which order they arrived.

    Example::

        latest_per_key(df, ["id"], ["updated_at", "_record_hash"])
    """
    ties = [F.col(c).asc_nulls_last() for c in first if c in df.columns]
    w = Window.partitionBy(*keys).orderBy(*[F.col(c).desc_nulls_last() for c in order], *ties)
    return df.withColumn("__rank", F.row_number().over(w)).where("__rank = 1").drop("__rank")
