"""Split a checked DataFrame into valid rows and quarantined rows, in one pass over the data."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ERRORS = "_errors"


def split_valid(df: DataFrame, errors: str = ERRORS) -> tuple[DataFrame, DataFrame]:
    """``(valid, rejected)``: rows whose ``errors`` array is empty, and the others.

    Persist ``df`` first if both sides are used, so the checks are evaluated once.

    Example::

        valid, rejected = split_valid(checked)
    """
    failed = F.size(F.col(errors)) > 0
    return df.where(~failed).drop(errors), df.where(failed)


def quarantine_rows(rejected: DataFrame, table: str, run_id: str, batch_key: str, errors: str = ERRORS) -> DataFrame:
    """The quarantine table's rows: the original record (JSON), the rules it broke, and when.

    ``batch_key`` names the micro-batch (stream and batch id): a retried batch replaces the rows
    of its failed attempt, so a record is never left in quarantine by an attempt that did not land.
    """
    return rejected.select(
        F.lit(table).alias("table"),
        F.col("__raw").alias("record"),
        F.col(errors).alias("errors"),
        F.col("__source_file").alias("source_file"),
        F.lit(run_id).alias("run_id"),
        F.lit(batch_key).alias("batch_key"),
        F.current_timestamp().alias("quarantined_at"),
    )


QUARANTINE_SCHEMA = (
    "table string, record string, errors array<string>, source_file string, run_id string, batch_key string, quarantined_at timestamp"
)
