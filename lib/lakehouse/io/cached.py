"""Delta tables held in memory between micro-batches, each at its newest version.

A stream's micro-batches read the same reference tables again and again (the FX rates its
transform joins, the customers and merchants its foreign-key rules look up). Read afresh, each
costs a Delta snapshot, a scan and a plan per batch: seconds of fixed cost on a small machine
for batches of a few hundred rows. :class:`CachedTables` reads a table once per version: each
call asks the Delta log for the newest version (a listing, no Spark job) and reuses the
persisted rows while it has not changed; a new commit (the pipeline loaded a new day's FX rates)
is read at its next call. The rows a batch sees are those of one table version, as with a plain
read; an unpersisted older version still reads correctly (``versionAsOf``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from lakehouse.io.delta_log import version

log = logging.getLogger(__name__)


class CachedTables:
    """``read(name)``: the table ``name`` (a path from ``path_of``) at its newest version, from memory."""

    def __init__(self, spark: SparkSession, path_of: Callable[[str], str]) -> None:
        self.spark = spark
        self.path_of = path_of
        self._frames: dict[str, tuple[int, DataFrame]] = {}
        self._lock = threading.Lock()
        self.reads = 0
        """Times a table was read from storage (a new version, or a first read)."""

    def read(self, name: str) -> DataFrame:
        path = self.path_of(name)
        v = version(self.spark, path)
        if v is None:  # no table (yet): the caller's plain read names it
            return self.spark.read.format("delta").load(path)
        with self._lock:
            held = self._frames.get(name)
            if held is not None and held[0] == v:
                return held[1]
            df = self.spark.read.format("delta").option("versionAsOf", v).load(path).persist(StorageLevel.MEMORY_AND_DISK)
            df.count()
            if held is not None:
                held[1].unpersist()
            self._frames[name] = (v, df)
            self.reads += 1
            log.info("%s: version %d held in memory for the stream's micro-batches", name, v)
            return df

    def version_of(self, name: str) -> int | None:
        """The version held for ``name`` (None before its first read)."""
        with self._lock:
            held = self._frames.get(name)
        return held[0] if held else None

    def close(self) -> None:
        with self._lock:
            for _, df in self._frames.values():
                df.unpersist()
            self._frames.clear()
