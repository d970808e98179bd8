"""Quarantine tables: one per silver table, holding every record that could not be made valid.

A row keeps the original record (the bronze row as delivered, as JSON), every rule it broke,
the source file, the run and micro-batch that put it there, and when.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import BRONZE_METADATA, TableSpec
from lakehouse.quality.expectations import ERRORS

QUARANTINE_SCHEMA = (
    "table string, record string, errors array<string>, source_file string, run_id string, batch_key string, quarantined_at timestamp"
)

RECORD_METADATA = ("_corrupt_record", "_rescued_data", "_source_file", "_arrival_date", "_ingested_at")
"""Bronze metadata kept with the record (``__in``), so a replay can rebuild the bronze row."""


def quarantine_rows(rejected: DataFrame, table: str, run_id: str, batch_key: str, errors: str = ERRORS) -> DataFrame:
    """The quarantine table's rows for ``rejected`` (rows with ``__in`` and ``_errors``).

    ``batch_key`` names the micro-batch (stream and batch id): a retried batch replaces the rows
    of its failed attempt, so a record is never left in quarantine by an attempt that did not land.
    """
    return rejected.select(
        F.lit(table).alias("table"),
        F.to_json(F.col("__in")).alias("record"),
        F.col(errors).alias("errors"),
        F.col("__in._source_file").alias("source_file"),
        F.lit(run_id).alias("run_id"),
        F.lit(batch_key).alias("batch_key"),
        F.current_timestamp().alias("quarantined_at"),
    )


def read_record(record: Column, bronze: TableSpec, extra: Sequence[str] = ()) -> Column:
    """The quarantined ``record`` JSON back as the bronze row's struct (source fields, ``extra``
    text fields the bronze table gained by schema evolution, metadata).

    ``_corrupt_record`` is an ordinary field here: from_json's own corrupt-record column is
    pointed elsewhere, or it would blank the field of every well-formed record.
    """
    types = dict(BRONZE_METADATA)
    meta = ", ".join(f"{c} {types[c]}" for c in RECORD_METADATA)
    evolved = "".join(f", `{c}` string" for c in extra)
    return F.from_json(record, f"{bronze.schema}{evolved}, {meta}", {"columnNameOfCorruptRecord": "__from_json_corrupt"})
