"""The run log: one Delta row per job run and table, with inputs, versions and row counts.

Every raw record is accounted for: for a silver table, summed over runs,
``rows_read == rows_inserted + rows_quarantined + rows_duplicate`` and ``sum(rows_inserted)`` is
the table's row count. The run log is a record of what happened, not what a retry relies on: what
a table has absorbed (a micro-batch, the silver versions a gold table was computed from) is
stamped in the table's own commits (:mod:`lakehouse.io.delta_log`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.io import delta
from lakehouse.io.delta_log import Stamp
from lakehouse.leases import live_runs
from lakehouse.quality.expectations import RuleResult
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

SCHEMA = (
    "run_id string, job string, env string, table string, status string, error string, "
    "config_hash string, git_commit string, run_date date, started_at timestamp, "
    "ended_at timestamp, seconds double, inputs array<struct<table:string,version:bigint>>, "
    "output_version bigint, rows_read bigint, rows_written bigint, rows_inserted bigint, "
    "rows_updated bigint, rows_quarantined bigint, rows_duplicate bigint, rows_warned bigint, "
    "rules_broken array<string>"
)

BATCH_SCHEMA = (
    "batch_key string, table string, run_id string, job string, rows_read bigint, rows_inserted bigint, "
    "rows_updated bigint, rows_quarantined bigint, rows_duplicate bigint, logged_at timestamp"
)

TABLE_PROPERTY = "lakehouse.table"
"""Spark local property naming the table a job works on (in the Spark UI and event log)."""


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-xxxxxx``: sortable by start time, unique."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def git_commit() -> str:
    """``$LAKEHOUSE_GIT_COMMIT`` (set by spark-submit.sh), else ``git rev-parse``, else 'unknown'."""
    if os.environ.get("LAKEHOUSE_GIT_COMMIT"):
        return os.environ["LAKEHOUSE_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_batch(
    spark: SparkSession,
    lake: Lake,
    stamp: Stamp,
    job: str,
    table: str,
    key: str,
    read: int,
    inserted: int,
    updated: int,
    quarantined: int,
) -> None:
    """Record one micro-batch's (or replay's) accounting in ``ops.batch_log``, exactly once.

    Written inside the batch, after its data commits and before the stream moves past it, with
    the batch's transaction id (``stamp``): a batch whose run was killed after it completed is
    counted (the run log's row for the table is written only when the table is done), and one
    retried after this row landed is not counted twice (Delta skips the append). The
    reconciliation sums these rows.
    """
    row = Row(
        batch_key=key,
        table=table,
        run_id=stamp.run_id,
        job=job,
        rows_read=read,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_quarantined=quarantined,
        rows_duplicate=read - quarantined - inserted,
        logged_at=datetime.now(timezone.utc),
    )
    schema = delta.schema_of(spark, BATCH_SCHEMA)
    stamp = Stamp("ops.batch_log", stamp.run_id, stamp.app_id, stamp.seq)
    delta.append_rows(spark, lake.ops_path("batch_log"), [row], schema, "One row per micro-batch or replay: its accounting", stamp=stamp)


@dataclass
class TableRun:
    """What one job did to one table."""

    table: str
    started_at: datetime
    status: str = "running"
    error: str | None = None
    ended_at: datetime | None = None
    inputs: dict[str, int | None] = field(default_factory=dict)
    output_version: int | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_warned: int = 0
    quality: dict[str, RuleResult] = field(default_factory=dict)

    def add_quality(self, results: list[RuleResult]) -> None:
        """Fold one batch's rule results into the run's (written to ops.quality_metrics at the end)."""
        for r in results:
            if r.rule in self.quality:
                self.quality[r.rule].add(r)
            else:
                self.quality[r.rule] = dataclasses.replace(r)

    @property
    def rules_broken(self) -> list[str]:
        return sorted(r.rule for r in self.quality.values() if not r.ok)

    @property
    def seconds(self) -> float:
        end = self.ended_at or datetime.now(timezone.utc)
        return round((end - self.started_at).total_seconds(), 1)


class RunLog:
    """Appends rows to ``ops.run_log`` and answers 'what did the last good run read?'."""

    def __init__(self, spark: SparkSession, lake: Lake, job: str, run_id: str, run_date: date, background: bool = False) -> None:
        """``background``: a finished table's rows (metrics, then its run-log row) are kept until
        :meth:`save` (a pipeline calls it after each layer) or :meth:`end`, then appended by a
        writer thread in one commit per ops table while the job goes on; :meth:`end` waits for
        them. Jobs use it: a run costs a few bookkeeping commits, not two per table. A run killed
        before its rows are saved leaves its ``started`` row (it is then recorded as abandoned),
        and what its tables absorbed is in their own commits' stamps. Without ``background`` (a
        notebook or test) every row is written before :meth:`finish` returns."""
        self.spark = spark
        self.lake = lake
        self.job = job
        self.run_id = run_id
        self.run_date = run_date
        self.path = lake.ops_path("run_log")
        self.commit = git_commit()
        self.entries: list[TableRun] = []
        self._schema: StructType | None = None
        self.metrics = QualityMetrics(spark, lake)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runlog") if background else None
        self._pending: list[Future[None]] = []
        self._rows: list[Row] = []  # finished tables' run-log rows not saved yet
        self._metric_rows: list[Row] = []

    def _later(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (a write) on the writer thread, in submission order; now if there is none."""
        if self._writer is None:
            fn()
        else:
            self._pending.append(self._writer.submit(fn))

    def flush(self) -> None:
        """Wait for the rows being written in the background; raise the first write's error."""
        pending, self._pending = self._pending, []
        errors = [e for e in (f.exception() for f in pending) if e is not None]
        if errors:
            raise errors[0]

    def begin(self) -> list[str]:
        """Record that this job run started (a row for table ``*``), and record as ``abandoned``
        every run that started, never ended and holds no live lease (killed; see
        :mod:`lakehouse.leases`): a run still at work holds one, so it is never marked. Returns
        the run ids marked."""
        abandoned, marks = [], []
        if delta.is_delta(self.spark, self.path):
            alive = live_runs(self.spark, self.lake) | {self.run_id}
            rows = (
                self.spark.read.format("delta")
                .load(self.path)
                .where(F.col("table") == "*")
                .groupBy("run_id", "job")
                .agg(F.collect_set("status").alias("s"))
                .where(F.array_contains("s", "started") & (F.size("s") == 1))
                .collect()
            )
            for r in rows:
                if r["run_id"] in alive:
                    continue
                abandoned.append(r["run_id"])
                log.warning("run %s (%s) started and never finished (killed?): recorded as abandoned", r["run_id"], r["job"])
                now = datetime.now(timezone.utc)
                marks.append(self._row(TableRun("*", now), "abandoned", f"superseded by run {self.run_id}", r["run_id"], r["job"]))
        self._append(*marks, self._row(TableRun("*", datetime.now(timezone.utc)), "started", None))  # one commit
        return abandoned

    def save(self) -> None:
        """Write the rows of the tables finished so far: their metrics in one commit, then their
        run-log rows in one (in that order, so a run-log row never points at metrics that are
        not there); on the writer thread."""
        rows, metrics = self._rows, self._metric_rows
        self._rows, self._metric_rows = [], []
        if rows:
            self._later(lambda: (self.metrics.append(metrics), self._append(*rows)))

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Record that this job run ended (``error``: why it failed), after every table's rows
        have landed: the rows not saved yet and the run's own row go in one commit."""
        metrics, rows = self._metric_rows, self._rows
        self._rows, self._metric_rows = [], []
        try:
            self.flush()
            self.metrics.append(metrics)
        except Exception:
            if status == "finished":
                raise
            log.exception("run %s: a run-log or metrics write failed as well", self.run_id)  # the job's own error goes on
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
        self._append(*rows, self._row(TableRun("*", datetime.now(timezone.utc)), status, error))

    def start(self, table: str) -> TableRun:
        tr = TableRun(table=table, started_at=datetime.now(timezone.utc))
        self.entries.append(tr)
        return tr

    @contextmanager
    def track(self, table: str) -> Iterator[TableRun]:
        """Log the work on ``table``: 'succeeded' when the block ends, 'failed' with the error if it raises."""
        tr = self.start(table)
        sc = self.spark.sparkContext
        sc.setLocalProperty(TABLE_PROPERTY, table)  # names the table in the event log's jobs (bench/eventlog.py)
        try:
            yield tr
        except Exception as exc:
            self.finish(tr, "failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            sc.setLocalProperty(TABLE_PROPERTY, None)  # type: ignore[arg-type]
        self.finish(tr)

    def finish(self, tr: TableRun, status: str = "succeeded", error: str | None = None) -> None:
        """Record the table's outcome: its metrics rows, then its run-log row (in that order, so a
        run-log row never points at metrics that are not there)."""
        metrics = self.metrics.rows(self.run_id, self.job, self.run_date, tr.table, tr.quality.values())
        row = self._row(tr, status, error)
        if self._writer is None:
            self.metrics.append(metrics)
            self._append(row)
        else:
            self._metric_rows += metrics
            self._rows.append(row)

    def _row(self, tr: TableRun, status: str, error: str | None, run_id: str | None = None, job: str | None = None) -> Row:
        tr.status = status
        tr.error = error
        tr.ended_at = datetime.now(timezone.utc)
        row = Row(
            run_id=run_id or self.run_id,
            job=job or self.job,
            env=self.lake.env.name,
            table=tr.table,
            status=tr.status,
            error=(error or None) and error[:2000],
            config_hash=self.lake.env.config_hash,
            git_commit=self.commit,
            run_date=self.run_date,
            started_at=tr.started_at,
            ended_at=tr.ended_at,
            seconds=tr.seconds,
            inputs=[Row(table=k, version=v) for k, v in sorted(tr.inputs.items())],
            output_version=tr.output_version,
            rows_read=tr.rows_read,
            rows_written=tr.rows_written,
            rows_inserted=tr.rows_inserted,
            rows_updated=tr.rows_updated,
            rows_quarantined=tr.rows_quarantined,
            rows_duplicate=tr.rows_duplicate,
            rows_warned=tr.rows_warned,
            rules_broken=tr.rules_broken,
        )
        return row

    def _append(self, *rows: Row) -> None:
        create = self._schema is None  # the table is created once per job, not on every row
        if self._schema is None:
            self._schema = delta.schema_of(self.spark, SCHEMA)
        delta.append_rows(self.spark, self.path, rows, self._schema, "One row per job run and table", create, merge_schema=True)
