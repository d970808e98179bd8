"""Run an incremental streaming step to the end of what is available, in micro-batches.

Bronze and silver are both ``trigger(availableNow=True)`` streams with a checkpoint and a
``foreachBatch`` handler: each run processes exactly what earlier runs did not, then stops.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame

from lakehouse.errors import LakehouseError


def drain(stream: DataFrame, name: str, checkpoint: str, handle: Callable[[DataFrame, int], None]) -> None:
    """Feed every available micro-batch of ``stream`` to ``handle(batch, batch_id)`` and wait.

    A :class:`LakehouseError` raised by ``handle`` (a quality rule, schema drift, a bad input)
    is re-raised here as itself, not wrapped in a StreamingQueryException, so the caller and the
    run log see the message that names the table, file or rule. The checkpoint does not move
    past a batch whose handler raised.
    """
    raised: list[LakehouseError] = []

    def each_batch(df: DataFrame, batch_id: int) -> None:
        try:
            handle(df, batch_id)
        except LakehouseError as exc:
            raised.append(exc)
            raise

    query = (
        stream.writeStream.queryName(name)
        .foreachBatch(each_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except Exception:
        if raised:
            raise raised[0] from None
        raise
