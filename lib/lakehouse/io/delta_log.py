"""What a Delta table says it has absorbed: its log, read without a Spark job, and the stamps the
lakehouse's writers put in their commits.

Exactly once is one mechanism here. Every write that a retry must not repeat carries a
:class:`Stamp` in the same commit as its data:

- ``userMetadata``: JSON ``{"lakehouse": {"step", "run_id", "app_id", "seq", "inputs"}}``: which
  step wrote it, in which run, and the versions of the tables it read (gold's next run starts
  from these, so a crash between the commit and the run log cannot make it count twice);
- a Delta transaction id, ``txnAppId = app_id`` and ``txnVersion = seq``: Delta keeps the latest
  ``seq`` per ``app_id`` in the table's state (through checkpoints and log cleanup), refuses a
  second concurrent commit with the same app id, and skips a write whose ``seq`` it already holds.

A retry asks :func:`absorbed` whether its stamp is in the table: the transaction id answers in
constant time, however many commits came after; only then is the commit itself looked up, for its
row counts, without a bound on how far back. Delta's ``delta.setTransactionRetentionDuration``
(expiring transaction ids) is not set on any table; if an operator sets it and a retry comes after
the expiry, :func:`absorbed` cannot tell and says so (:class:`LogGapError`) rather than guess.

Delta has no public API for the latest version by listing, the transaction ids, or a commit's
metadata without ``DESCRIBE HISTORY`` (a Spark job). The JVM calls are in this module only, and
``tests/unit/test_delta_log.py`` checks each against the public API, so an upgrade that moves
them fails there, loudly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from lakehouse.errors import PipelineError
from lakehouse.io import fs

log = logging.getLogger(__name__)

MAINTENANCE = ("OPTIMIZE", "VACUUM START", "VACUUM END", "COMPUTE STATS", "ADD CONSTRAINT", "DROP CONSTRAINT")
"""Operations that rewrite or describe data without changing it (an auto-compaction inside a
stamped write carries its stamp too: it is not the data commit)."""


class LogGapError(PipelineError):
    """Delta holds a stamp's transaction id, but the commit that wrote it is gone from the log."""


def snapshot(spark: SparkSession, path: str) -> Any:
    """The table's latest snapshot (a JVM ``org.apache.spark.sql.delta.Snapshot``; version -1 when
    there is no table at ``path``), brought up to date by listing the log: no Spark job."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[attr-defined]
    return log_.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty())


def version(spark: SparkSession, path: str) -> int | None:
    """The table's current version, or None if there is no table at ``path``.

    Read from the Delta log's listing (about 10 ms); ``DESCRIBE HISTORY`` runs a Spark job for it
    (200-500 ms here), and a pipeline run asks this about a hundred times."""
    v = int(snapshot(spark, path).version())
    return None if v < 0 else v


def files(spark: SparkSession, path: str) -> DataFrame:
    """The current version's data files as the log lists them (``path``, ``partitionValues``,
    ``size``, ``stats``, ...): no listing of the storage."""
    return DataFrame(snapshot(spark, path).allFiles().toDF(), spark)


def recompute_stats(spark: SparkSession, path: str) -> None:
    """Recompute every file's data-skipping statistics in one ``COMPUTE STATS`` commit.

    Open-source Delta has no ``ANALYZE TABLE ... COMPUTE DELTA STATISTICS`` (Databricks only)
    and no ANALYZE for its v2 tables; this calls the recomputation Delta's own tests use
    (``StatisticsCollection.recompute``, with its default arguments: no partition filter, every
    file)."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[attr-defined]
    collection = getattr(getattr(jvm.org.apache.spark.sql.delta.stats, "StatisticsCollection$"), "MODULE$")
    collection.recompute(
        spark._jsparkSession,  # type: ignore[attr-defined]
        log_,
        jvm.scala.Option.empty(),
        getattr(collection, "recompute$default$4")(),
        getattr(collection, "recompute$default$5")(),
    )


def txn_version(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The latest ``txnVersion`` the table holds for ``app_id`` (None: none, or no table)."""
    snap = snapshot(spark, path)
    if int(snap.version()) < 0:
        return None
    found = snap.transactions().get(app_id)
    return int(found.get()) if found.isDefined() else None


@dataclass(frozen=True)
class Stamp:
    """What one write absorbed, committed with its data (see the module doc).

    ``step`` names the work (``silver.transactions``, ``quarantine.transactions``, ``replay``);
    ``app_id``/``seq`` are the Delta transaction id (``seq`` grows with every write of the same
    ``app_id``: a micro-batch id, a source version); ``inputs`` the versions of the tables read.
    """

    step: str
    run_id: str
    app_id: str | None = None
    seq: int | None = None
    inputs: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.app_id is None) != (self.seq is None):
            raise ValueError("a stamp has both app_id and seq, or neither")
        if self.seq is not None and self.seq < 0:
            raise ValueError(f"a stamp's seq is a non-negative integer, not {self.seq}")

    def to_json(self) -> str:
        return json.dumps(
            {"lakehouse": {"step": self.step, "run_id": self.run_id, "app_id": self.app_id, "seq": self.seq, "inputs": dict(self.inputs)}},
            sort_keys=True,
        )

    @classmethod
    def parse(cls, user_metadata: str | None) -> Stamp | None:
        """The stamp in a commit's userMetadata; None for a commit without one (another writer,
        a maintenance operation, an older version of this project)."""
        if not user_metadata or not user_metadata.startswith("{"):
            return None
        try:
            body = json.loads(user_metadata).get("lakehouse")
        except (ValueError, AttributeError):
            return None
        if not isinstance(body, dict) or "step" not in body:
            return None
        inputs = {str(k): int(v) for k, v in (body.get("inputs") or {}).items() if v is not None}
        return cls(str(body["step"]), str(body.get("run_id") or ""), body.get("app_id"), body.get("seq"), inputs)


@dataclass(frozen=True)
class Commit:
    """One commit of a table: its version, operation, metrics and stamp."""

    version: int
    operation: str
    metrics: dict[str, int]
    stamp: Stamp | None

    @property
    def is_maintenance(self) -> bool:
        return self.operation in MAINTENANCE


def commits(spark: SparkSession, path: str) -> Iterator[Commit]:
    """The table's commits, newest first, read from the log's JSON commit files one at a time (no
    Spark job; ``DESCRIBE HISTORY`` runs one). Stops at the first version whose commit file log
    cleanup has removed (older ones are in a checkpoint, which keeps no commit metadata)."""
    latest = version(spark, path)
    for v in range(latest if latest is not None else -1, -1, -1):
        uri = f"{path.rstrip('/')}/_delta_log/{v:020d}.json"
        if not fs.exists(spark, uri):
            return
        for line in fs.read_text(spark, uri).splitlines():
            if line.startswith('{"commitInfo"'):
                info = json.loads(line)["commitInfo"]
                yield Commit(v, str(info.get("operation", "")), _int_metrics(info), Stamp.parse(info.get("userMetadata")))
                break


def _int_metrics(info: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in (info.get("operationMetrics") or {}).items() if str(v).lstrip("-").isdigit()}


def last_metrics(spark: SparkSession, path: str) -> dict[str, int]:
    """``operationMetrics`` of the table's latest data commit, as integers (an auto-compaction
    right after a MERGE is a later commit: it is skipped)."""
    for i, c in enumerate(commits(spark, path)):
        if i >= 10:
            break
        if not c.is_maintenance:
            return c.metrics
    return {}


def latest_stamp(spark: SparkSession, path: str, step: str) -> Commit | None:
    """The newest data commit stamped by ``step`` (None: no table, or no such commit in the log).

    Unbounded: commits of other writers, maintenance and schema changes after it are skipped
    however many there are (usually none or one: this is read once per table and run)."""
    for c in commits(spark, path):
        if c.stamp is not None and c.stamp.step == step and not c.is_maintenance:
            return c
    return None


def absorbed(spark: SparkSession, path: str, stamp: Stamp) -> Commit | None:
    """The commit that wrote ``stamp``'s transaction (``app_id``, ``seq``), if the table has it.

    Constant time when it has not (the usual case: a first attempt): the table's transaction ids
    say so. When it has, the commit is looked up for its metrics, however far back it is.

    Raises:
        LogGapError: the table holds the transaction but its commit file is gone (log cleanup
            after ``delta.logRetentionDuration``): the counts it wrote cannot be recovered.
    """
    if stamp.app_id is None or stamp.seq is None:
        raise ValueError(f"stamp of {stamp.step} has no transaction id to look up")
    have = txn_version(spark, path, stamp.app_id)
    if have is None or have < stamp.seq:
        return None
    for c in commits(spark, path):
        s = c.stamp
        if s is not None and s.app_id == stamp.app_id and s.seq == stamp.seq and not c.is_maintenance:
            return c
    raise LogGapError(
        f"{path}: Delta records {stamp.step}'s write {stamp.app_id}/{stamp.seq} as committed (it holds {have}), but its "
        "commit is no longer in the log (cleaned up after delta.logRetentionDuration): its row counts cannot be read; "
        "nothing was written twice"
    )


def next_stamp(
    spark: SparkSession, path: str, step: str, run_id: str, app_id: str, inputs: Mapping[str, int]
) -> tuple[dict[str, int] | None, Stamp]:
    """For a writer that absorbs its inputs step by step (gold, scoring): the input versions its
    newest stamped commit absorbed (None: no commit yet, a full build) and the stamp of its next
    write, whose ``seq`` follows the table's transaction id for ``app_id`` (what Delta compares: a
    second run that computed the same step is skipped by Delta, not written twice)."""
    prior = latest_stamp(spark, path, step) if version(spark, path) is not None else None
    last = dict(prior.stamp.inputs) if prior is not None and prior.stamp is not None else None
    have = txn_version(spark, path, app_id)
    return last, Stamp(step, run_id, app_id, 0 if have is None else have + 1, dict(inputs))
