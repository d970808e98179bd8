"""The one module that writes Delta tables: create, append, merge, replace partitions.

Each write is one Delta commit, so a failed run leaves the previous version intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, DataFrameWriter, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.errors import PipelineError
from lakehouse.io.delta_log import Stamp, last_metrics, snapshot, version

__all__ = ["Stamp", "last_metrics", "snapshot", "version"]  # the log's readers, re-exported for the writers' callers

log = logging.getLogger(__name__)
T = TypeVar("T")


def schema_of(spark: SparkSession, ddl: str) -> StructType:
    """A StructType from a DDL string (parsed by Spark itself)."""
    return spark.createDataFrame([], ddl).schema


def is_delta(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@contextmanager
def stamped(spark: SparkSession, stamp: Stamp | None) -> Iterator[None]:
    """MERGEs (and other DML) inside commit with ``stamp``: its JSON as userMetadata and its
    transaction id as ``txnAppId``/``txnVersion`` (Delta's session settings for idempotent DML:
    a DML has no writer options). Writes on other threads pass their own stamp as writer
    options, which take precedence over these session settings.

    Being session settings, they reach every commit made in ``spark`` meanwhile, on any thread:
    two stamped blocks at once need a session each (a pipeline table's ``newSession``, a
    micro-batch's own ``df.sparkSession``, which is its query's). A second block opened in a
    session whose stamp is still set raises rather than mix the two commits' stamps.

    Raises:
        RuntimeError: ``spark`` already holds another open stamp.
    """
    if stamp is None:
        yield
        return
    held = spark.conf.get(USER_METADATA, None)
    if held is not None:
        raise RuntimeError(
            f"{stamp.step}: a stamped commit ({held}) is still open in this Spark session; concurrent stamped "
            "commits need a session each (SparkSession.newSession, or a micro-batch's df.sparkSession)"
        )
    keys = {USER_METADATA: stamp.to_json()}
    if stamp.app_id is not None:
        keys[TXN_APP_ID] = stamp.app_id
        keys["spark.databricks.delta.write.txnVersion"] = str(stamp.seq)
    for k, v in keys.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k in keys:
            spark.conf.unset(k)


def _stamp_options(w: DataFrameWriter, stamp: Stamp | None) -> DataFrameWriter:
    if stamp is None:
        return w
    w = w.option("userMetadata", stamp.to_json())
    if stamp.app_id is not None:
        w = w.option("txnAppId", stamp.app_id).option("txnVersion", stamp.seq)
    return w


def ensure_table(
    spark: SparkSession,
    path: str,
    schema: StructType,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
    comment: str | None = None,
) -> DeltaTable:
    """Create the table at ``path`` if it does not exist (change data feed on); return it.

    Two writers may create the same table at once (tables of a layer built side by side append
    to the same ops table): the one that loses finds the other's table and uses it."""
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    props = {"delta.enableChangeDataFeed": "true", **(properties or {})}
    for k, v in props.items():
        builder = builder.property(k, v)
    if comment:
        builder = builder.comment(comment)
    for attempt in range(20):
        try:
            return builder.execute()
        except (AnalysisException, *CONFLICTS) as exc:
            # the other creator's first commit is being written (its log folder exists, its
            # commit not yet), or both wrote version 0 and the other won
            racing = is_conflict(exc) or (getattr(exc, "getCondition", lambda: None)() == "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION")
            if not racing or attempt == 19:
                raise
            if version(spark, path) is not None:
                return DeltaTable.forPath(spark, path)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def add_missing_columns(spark: SparkSession, path: str, schema: StructType) -> list[str]:
    """Add to the table at ``path`` the columns of ``schema`` it lacks (null in the stored rows);
    return their names."""
    stored = {f.name for f in spark.read.format("delta").load(path).schema.fields}
    missing = [f for f in schema.fields if f.name not in stored]
    if missing:
        cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({cols})")
    return [f.name for f in missing]


def check_schema(df: DataFrame, expected: StructType, table: str) -> DataFrame:
    """Select the declared columns in order; a PipelineError names missing or mistyped ones."""
    have = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    for f in expected.fields:
        if f.name not in have:
            problems.append(f"{f.name} missing")
        elif have[f.name].simpleString() != f.dataType.simpleString():  # nullability of nested fields aside
            problems.append(f"{f.name} is {have[f.name].simpleString()}, declared {f.dataType.simpleString()}")
    if problems:
        raise PipelineError(f"{table}: transform output does not match the declared schema: {'; '.join(problems)}")
    # an array that cannot hold nulls is stored as the declared array that can
    return df.select(
        *[F.col(f.name) if have[f.name] == f.dataType else F.col(f.name).cast(f.dataType).alias(f.name) for f in expected.fields]
    )


def append(
    df: DataFrame,
    path: str,
    stamp: Stamp | None = None,
    partition_by: Sequence[str] = (),
    merge_schema: bool = False,
    optimize_write: bool = True,
) -> None:
    """Append ``df``; with a ``stamp`` that has a transaction id, a retry of the same write is
    skipped by Delta (see :mod:`lakehouse.io.delta_log`); the stamp is this write's own option,
    so a stamped DML on another thread never lends it its own. ``merge_schema`` adds columns
    ``df`` has and the table lacks (an older table of ours); ``optimize_write`` false for a few
    rows (one task writes one file anyway; the shuffle would only cost time)."""
    w = _stamp_options(df.write.format("delta").mode("append"), stamp)
    if merge_schema:
        w = w.option("mergeSchema", "true")
    if not optimize_write:
        w = w.option("optimizeWrite", "false")
    if partition_by:
        w = w.partitionBy(*partition_by)
    w.save(path)


CONFLICTS = (
    DeltaConcurrentModificationException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
)
"""Delta's commit-conflict errors, as its Python package raises them (``delta.exceptions``)."""


def is_conflict(exc: BaseException) -> bool:
    """True for Delta's concurrent-modification errors (another commit won the race)."""
    return isinstance(exc, CONFLICTS)


def retry_on_conflict(fn: Callable[[], T], what: str, attempts: int = 5, wait: float = 0.5) -> tuple[T, int]:
    """Call ``fn`` (one Delta commit); if a concurrent commit (e.g. the maintenance job's
    OPTIMIZE beside a MERGE) made it fail, call it again on the new version, up to ``attempts``
    times. Only for steps that are safe to repeat: a failed commit wrote nothing visible.
    Returns ``fn``'s result and the number of retries."""
    for attempt in range(attempts):
        try:
            return fn(), attempt
        except Exception as exc:
            if not is_conflict(exc) or attempt == attempts - 1:
                raise
            log.warning("%s: a concurrent commit won (%s); retrying (%d/%d)", what, type(exc).__name__, attempt + 1, attempts - 1)
            time.sleep(wait * (attempt + 1))
    raise AssertionError("unreachable")


def bookkeeping_session(spark: SparkSession) -> SparkSession:
    """A session sharing ``spark``'s context, cache and catalog, with auto compaction off.

    Bookkeeping tables (run log, metrics, profiles) get a few rows per commit; Delta's auto
    compaction would rewrite each of them whole after every such append (a second commit and an
    O(table) rewrite per row written); they are compacted by OPTIMIZE on a schedule instead.
    """
    quiet = getattr(spark, "_lakehouse_bookkeeping", None)
    if quiet is None:
        quiet = spark.newSession()
        for key, value in spark.conf.getAll.items():  # the runtime settings (time zone, ...) too
            if spark.conf.isModifiable(key):
                quiet.conf.set(key, value)
        quiet.conf.set("spark.databricks.delta.autoCompact.enabled", "false")
        spark._lakehouse_bookkeeping = quiet  # type: ignore[attr-defined]
    return quiet


def append_rows(
    spark: SparkSession,
    path: str,
    rows: Sequence[Row],
    schema: StructType,
    comment: str,
    create: bool = True,
    merge_schema: bool = False,
    stamp: Stamp | None = None,
) -> None:
    """Append a few rows built on the driver (a log, metrics or profile table) in one commit;
    with ``create`` the table is first created if missing (``comment`` describes it); ``stamp``
    as in :func:`append`."""
    if create:
        ensure_table(spark, path, schema, comment=comment)
    if rows:
        # one file per commit (in the rows' order), without optimized writes' shuffle
        rows_df = bookkeeping_session(spark).createDataFrame(list(rows), schema).coalesce(1)
        append(rows_df, path, stamp=stamp, merge_schema=merge_schema, optimize_write=False)


def merge_latest(
    spark: SparkSession,
    path: str,
    updates: DataFrame,
    keys: Sequence[str],
    version_column: str | None,
    tiebreak_column: str,
    prune: Mapping[str, Sequence[Any]] | None = None,
    evolve: bool = False,
) -> dict[str, int]:
    """Upsert ``updates`` (one row per key) so the highest ``(version, tiebreak)`` wins.

    An incoming row replaces the stored one only if it is strictly newer, which makes the MERGE
    idempotent and independent of arrival order. Without a ``version_column`` (a source whose
    records carry no version) the latest delivery wins, but an identical record (the same
    ``tiebreak``, a record hash) changes nothing: a re-sent file is a duplicate, not an update.
    ``prune`` restricts the target to some partition values (file pruning) — pass the partition
    values present in ``updates``.

    Returns:
        The commit's operation metrics (numTargetRowsInserted, numTargetRowsUpdated, ...).
    """
    cond: Column = F.lit(True)
    for k in keys:
        cond = cond & (F.col(f"t.{k}") == F.col(f"s.{k}"))
    for col, values in (prune or {}).items():
        cond = cond & F.col(f"t.{col}").isin(list(values))
    if version_column:
        newer = (F.col(f"s.{version_column}") > F.col(f"t.{version_column}")) | (
            (F.col(f"s.{version_column}") == F.col(f"t.{version_column}")) & (F.col(f"s.{tiebreak_column}") > F.col(f"t.{tiebreak_column}"))
        )
    else:
        newer = ~F.col(f"s.{tiebreak_column}").eqNullSafe(F.col(f"t.{tiebreak_column}"))
    builder = DeltaTable.forPath(spark, path).alias("t").merge(updates.alias("s"), cond)
    if evolve:  # columns of ``updates`` the table lacks are added to it
        builder = builder.withSchemaEvolution()
    merge = builder.whenMatchedUpdateAll(condition=newer).whenNotMatchedInsertAll()
    retry_on_conflict(merge.execute, f"MERGE into {path}")
    return last_metrics(spark, path)


def merge_upsert(
    spark: SparkSession,
    path: str,
    updates: DataFrame,
    keys: Sequence[str],
    prune: Mapping[str, Sequence[Any]] | None = None,
    since: tuple[str, Any] | None = None,
) -> dict[str, int]:
    """Upsert rows by key (every matched row is replaced).

    ``prune`` restricts the target to some partition values and ``since`` = (column, lowest
    value) to rows from a point on (file skipping by min/max statistics): pass what ``updates``
    holds, so the MERGE reads only the files that can match.
    """
    cond: Column = F.lit(True)
    for k in keys:
        cond = cond & (F.col(f"t.{k}") == F.col(f"s.{k}"))
    for col, values in (prune or {}).items():
        cond = cond & F.col(f"t.{col}").isin(list(values))
    if since is not None:
        cond = cond & (F.col(f"t.{since[0]}") >= F.lit(since[1]))
    merge = DeltaTable.forPath(spark, path).alias("t").merge(updates.alias("s"), cond).whenMatchedUpdateAll().whenNotMatchedInsertAll()
    retry_on_conflict(merge.execute, f"MERGE into {path}")
    return last_metrics(spark, path)


def merge_insert_only(
    spark: SparkSession, path: str, rows: DataFrame, keys: Sequence[str], prune: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, int]:
    """Insert the rows whose key the table does not hold yet; leave stored rows as they are
    (an idempotent append: writing the same rows again inserts nothing)."""
    cond: Column = F.lit(True)
    for k in keys:
        cond = cond & (F.col(f"t.{k}") == F.col(f"s.{k}"))
    for col, values in (prune or {}).items():
        cond = cond & F.col(f"t.{col}").isin(list(values))
    merge = DeltaTable.forPath(spark, path).alias("t").merge(rows.alias("s"), cond).whenNotMatchedInsertAll()
    retry_on_conflict(merge.execute, f"MERGE into {path}")
    return last_metrics(spark, path)


def sql_in(column: str, values: Sequence[date | int]) -> str:
    """A ``column IN (...)`` predicate for replaceWhere, from typed values only (no free text)."""
    if not column.isidentifier():
        raise PipelineError(f"{column!r} is not a column name")
    if not values:
        raise PipelineError("replaceWhere needs at least one value")
    parts = []
    for v in values:
        if isinstance(v, date):
            parts.append(f"DATE'{v.isoformat()}'")
        elif isinstance(v, int) and not isinstance(v, bool):
            parts.append(str(v))
        else:
            raise PipelineError(f"replaceWhere value {v!r} is not a date or an int")
    return f"{column} IN ({', '.join(parts)})"


def replace_where_equals(df: DataFrame, path: str, column: str, value: str, stamp: Stamp | None = None) -> None:
    """Atomically replace the rows with ``column = value`` by ``df`` (which may be empty);
    ``stamp`` as in :func:`append`.

    ``value`` must be a plain token (letters, digits, ``-_:.``): it is written into the predicate.
    """
    import re

    if not column.isidentifier() or not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
        raise PipelineError(f"replaceWhere {column} = {value!r}: not a plain column and token")
    w = _stamp_options(df.write.format("delta").mode("overwrite").option("replaceWhere", f"{column} = '{value}'"), stamp)
    retry_on_conflict(lambda: w.save(path), f"replaceWhere on {path}")


def replace_values(
    spark: SparkSession,
    df: DataFrame,
    path: str,
    column: str,
    values: Sequence[date | int],
    optimize_write: bool = True,
    stamp: Stamp | None = None,
) -> dict[str, int]:
    """Atomically replace the rows with ``column IN values`` by ``df``: whole partitions if
    ``column`` partitions the table, else Delta rewrites only the files holding such rows (found
    by their statistics) without them. ``optimize_write=False`` writes ``df``'s partitions as
    they are (one file each) instead of Delta's re-binning shuffle; ``stamp`` as in :func:`append`."""
    w = _stamp_options(df.write.format("delta").mode("overwrite").option("replaceWhere", sql_in(column, values)), stamp)
    if not optimize_write:
        w = w.option("optimizeWrite", "false")
    retry_on_conflict(lambda: w.save(path), f"replaceWhere on {path}")
    return last_metrics(spark, path)


def replace_all(spark: SparkSession, df: DataFrame, path: str, optimize_write: bool = True, stamp: Stamp | None = None) -> dict[str, int]:
    """Atomically replace every row of the table by ``df`` (one overwrite commit; the table's
    schema, partitioning, constraints and properties stay); ``optimize_write`` and ``stamp`` as
    in :func:`replace_values`."""
    w = _stamp_options(df.write.format("delta").mode("overwrite"), stamp)
    if not optimize_write:
        w = w.option("optimizeWrite", "false")
    retry_on_conflict(lambda: w.save(path), f"overwrite of {path}")
    return last_metrics(spark, path)


def files_read(df: DataFrame) -> int:
    """Run ``df`` (collecting its rows: meant for small, filtered results) and return how many
    files its scans read: the ``numFiles`` metric of every file scan of the executed plan, after
    partition pruning and Delta's data skipping on file statistics.

    Example (in a notebook)::

        files_read(spark.read.format("delta").load(kpis).where("event_date = '2026-01-05'"))
    """
    df.collect()
    plan = df._jdf.queryExecution().executedPlan()
    total = 0
    todo = [plan]
    while todo:
        node = todo.pop()
        kind = node.getClass().getSimpleName()
        if kind == "AdaptiveSparkPlanExec":
            todo.append(node.finalPhysicalPlan())
            continue
        if kind.endswith("QueryStageExec"):
            todo.append(node.plan())
            continue
        if kind == "FileSourceScanExec":
            metric = node.metrics().get("numFiles")
            total += int(metric.get().value()) if metric.isDefined() else 0
        children = node.children()
        todo.extend(children.apply(i) for i in range(children.size()))
    return total
