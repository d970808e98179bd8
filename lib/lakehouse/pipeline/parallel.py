"""Build a layer's tables side by side: each after the same-layer tables it reads.

A table's run is mostly driver work at small and medium scale (planning, Delta log reads and
commits, a streaming query's start and stop) and a few Spark jobs. Run one after another, the
cores idle through the first and the driver through the second. Here up to ``workers`` tables of
a layer are built at once from driver threads, so one table's planning and commits overlap
another's tasks (and on a cluster, a small table no longer leaves most executors idle).

Each thread builds in its own :meth:`SparkSession.newSession` (one SparkContext, separate SQL
settings): a MERGE's transaction id and commit metadata are *session* settings
(:func:`lakehouse.io.delta.stamped`), so two tables merging at once must not share them. Jobs of
different tables share the cores through Spark's FAIR scheduler, one pool per table.

A table starts once every same-layer table it reads has succeeded. When one fails, no table that
reads it (directly or not) starts, the tables already running finish, and the first error is
raised with the names of the tables left unbuilt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from pyspark.sql import SparkSession

from lakehouse.config import TableSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
POOL_PROPERTY = "spark.scheduler.pool"


def build_all(
    spark: SparkSession,
    specs: Sequence[TableSpec],
    build: Callable[[SparkSession, TableSpec], T],
    workers: int = 1,
) -> dict[str, T]:
    """``build(session, spec)`` for every spec (in build order: each after the ones it reads),
    up to ``workers`` at once. ``workers`` 1 builds them one after another in ``spark`` itself."""
    if workers <= 1 or len(specs) <= 1:
        return {s.name: build(spark, s) for s in specs}
    names = {s.name for s in specs}
    needs = {s.name: {u for u in s.upstream if u in names} for s in specs}
    local = threading.local()

    def session() -> SparkSession:
        if getattr(local, "session", None) is None:
            local.session = spark.newSession()
        return local.session

    def one(spec: TableSpec) -> T:
        s = session()
        sc = s.sparkContext
        sc.setLocalProperty(POOL_PROPERTY, spec.name)  # thread-local: this table's jobs share one FAIR pool
        try:
            return build(s, spec)
        finally:
            sc.setLocalProperty(POOL_PROPERTY, None)  # type: ignore[arg-type]

    done: dict[str, T] = {}
    failed: dict[str, BaseException] = {}  # in the order they failed
    skipped: set[str] = set()
    running: dict[Future[T], str] = {}
    todo = list(specs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="table") as pool:
        while todo or running:
            for spec in list(todo):
                if needs[spec.name] & (failed.keys() | skipped):
                    todo.remove(spec)
                    skipped.add(spec.name)
                elif needs[spec.name] <= done.keys():
                    todo.remove(spec)
                    running[pool.submit(one, spec)] = spec.name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                name = running.pop(f)
                exc = f.exception()
                if exc is None:
                    done[name] = f.result()
                else:
                    failed[name] = exc
    if failed:
        name, first = next(iter(failed.items()))
        rest = sorted((failed.keys() - {name}) | skipped)
        if rest:
            log.error("%s failed; not built: %s", name, ", ".join(rest))
        raise first
    return done
