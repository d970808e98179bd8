"""Run an incremental streaming step to the end of what is available, in micro-batches.

Bronze and silver are both ``trigger(availableNow=True)`` streams with a checkpoint and a
``foreachBatch`` handler: each run processes exactly what earlier runs did not, then stops.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession

from lakehouse.errors import LakehouseError
from lakehouse.io import delta_log, fs


def caught_up(spark: SparkSession, checkpoint: str, source: str) -> bool:
    """Whether a ``trigger(availableNow)`` stream of the Delta table at ``source`` has nothing to
    read: its checkpoint's last batch is committed and its offset lies past the table's current
    version. One listing and two small reads, instead of starting the query (about 2 s each).

    The offset of a Delta source reads ``{"reservoirId": <table id>, "reservoirVersion": v,
    "index": -1, ...}`` once every commit before ``v`` is absorbed. Anything else (no
    checkpoint, a batch planned but not committed, another table id, another offset form, a
    checkpoint with several sources) answers False: the query runs and decides.
    """
    batches = [int(n) for n in fs.list_names(spark, f"{checkpoint}/offsets") if n.isdigit()]
    if not batches:
        return False
    last = max(batches)
    if str(last) not in fs.list_names(spark, f"{checkpoint}/commits"):
        return False
    lines = fs.read_text(spark, f"{checkpoint}/offsets/{last}").splitlines()
    if len(lines) != 3 or lines[0] != "v1":  # version, batch metadata, one source's offset
        return False
    try:
        offset = json.loads(lines[2])
    except ValueError:
        return False
    if not isinstance(offset, dict) or offset.get("index") != -1 or offset.get("isStartingVersion") is not False:
        return False
    snap = delta_log.snapshot(spark, source)
    current = int(snap.version())
    if current < 0 or offset.get("reservoirId") != str(snap.metadata().id()):
        return False
    return isinstance(offset.get("reservoirVersion"), int) and offset["reservoirVersion"] > current


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
