"""``ops.quality_metrics``: one row per run, table and rule, appended by every job.

Rows link to ``ops.run_log`` by ``(run_id, table)``. The history answers the table-level checks
that compare a run with earlier ones (``row_count``) and feeds the anomaly checks and the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.io import delta
from lakehouse.quality.expectations import RuleResult
from lakehouse.tables import Lake

SCHEMA = (
    "run_id string, job string, table string, rule string, severity string, check string, level string, "
    "evaluated bigint, passed bigint, failed bigint, warned bigint, quarantined bigint, observed double, "
    "threshold string, ok boolean, run_date date, recorded_at timestamp"
)


class QualityMetrics:
    """Reads and appends the metrics table of one lake."""

    def __init__(self, spark: SparkSession, lake: Lake) -> None:
        self.spark = spark
        self.path = lake.ops_path("quality_metrics")
        self._schema: StructType | None = None

    def exists(self) -> bool:
        return delta.is_delta(self.spark, self.path)

    def rows(self, run_id: str, job: str, run_date: date, table: str, results: Iterable[RuleResult]) -> list[Row]:
        """The metrics rows of one table's rule results in one run."""
        now = datetime.now(timezone.utc)
        return [
            Row(
                run_id=run_id,
                job=job,
                table=table,
                rule=r.rule,
                severity=r.severity,
                check=r.kind,
                level=r.level,
                evaluated=r.evaluated,
                passed=r.passed,
                failed=r.failed,
                warned=r.warned,
                quarantined=r.quarantined,
                observed=r.observed,
                threshold=r.threshold,
                ok=r.ok,
                run_date=run_date,
                recorded_at=now,
            )
            for r in results
        ]

    def append(self, rows: list[Row]) -> None:
        """Append rows made by :meth:`rows` in one commit (the table is created on first use)."""
        if not rows:
            return
        create = self._schema is None  # once per job
        if self._schema is None:
            self._schema = delta.schema_of(self.spark, SCHEMA)
        delta.append_rows(self.spark, self.path, rows, self._schema, "One row per run, table and quality rule", create)

    def history(self, table: str, rule: str, runs: int) -> list[float]:
        """The rule's observed values in the last ``runs`` runs that recorded one, newest first."""
        if not self.exists():
            return []
        got = (
            self.spark.read.format("delta")
            .load(self.path)
            .where((F.col("table") == table) & (F.col("rule") == rule) & F.col("observed").isNotNull())
            .orderBy(F.col("recorded_at").desc())
            .select("observed")
            .limit(runs)
            .collect()
        )
        return [float(r["observed"]) for r in got]
