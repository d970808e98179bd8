"""Micro-batch handlers whose own errors reach the job as themselves.

An exception raised in a ``foreachBatch`` handler reaches ``StreamingQuery.exception()`` wrapped
by Spark (``FOREACH_BATCH_USER_FUNCTION_ERROR`` and a Python traceback); the job reports the
:class:`LakehouseError` the handler raised instead, which names the table, record or rule.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame

from lakehouse.errors import LakehouseError

RAISED: dict[str, LakehouseError] = {}
"""The error a query's micro-batch raised, by query (reported as itself, not as Spark's wrapper)."""


def keep_errors(name: str, handle: Callable[[DataFrame, int], None]) -> Callable[[DataFrame, int], None]:
    """``handle`` recording a :class:`LakehouseError` it raises under ``name`` (``lakehouse.streaming.jobs.run_queries`` reports it)."""

    def each_batch(df: DataFrame, batch_id: int) -> None:
        try:
            handle(df, batch_id)
        except LakehouseError as exc:
            RAISED[name] = exc
            raise

    return each_batch
