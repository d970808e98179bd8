"""Column profiles, outlier flags and anomaly checks, per table and run.

:func:`profile_table` describes every column of a table in one aggregation: rows, nulls and
their share, approximate distinct count, min and max, and for numeric columns mean, standard
deviation and quantiles (5/25/50/75/95%). A second pass gives the top values of the
low-cardinality columns and flags the outliers of numeric columns by Tukey's fences (outside
``[q25 - k*IQR, q75 + k*IQR]``, ``k = 3`` by default): outliers are recorded in
``ops.quality_outliers`` with the row's key, never removed from the table.

:func:`anomalies` compares a run's figures with the history: each table's rows read, each
column's null share, each rule's failure rate, and flags a value far from the median of the
previous runs.

Tables: ``ops.quality_profiles`` (a row per run, table and column), ``ops.quality_outliers``
(flagged rows, capped per column), ``ops.quality_alerts`` (anomalies and drift, per run).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, NumericType, StringType, TimestampType

from lakehouse.io import delta
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PROFILE_SCHEMA = (
    "run_id string, table string, column string, type string, rows bigint, nulls bigint, null_share double, "
    "distinct_approx bigint, min string, max string, mean double, stddev double, quantiles array<double>, "
    "top_values array<struct<value:string,count:bigint>>, outliers bigint, outlier_low double, outlier_high double, "
    "profiled_at timestamp"
)
OUTLIER_SCHEMA = "run_id string, table string, column string, key string, value double, low double, high double"
ALERT_SCHEMA = (
    "run_id string, table string, kind string, subject string, observed double, expected double, message string, raised_at timestamp"
)


@dataclass
class ColumnProfile:
    column: str
    type: str
    rows: int
    nulls: int
    distinct_approx: int
    min: str | None
    max: str | None
    mean: float | None = None
    stddev: float | None = None
    quantiles: list[float] | None = None
    top_values: list[tuple[str, int]] = field(default_factory=list)
    outliers: int = 0
    outlier_low: float | None = None
    outlier_high: float | None = None

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


def _profilable(df: DataFrame) -> list[tuple[str, object]]:
    keep = (NumericType, StringType, DateType, TimestampType, BooleanType)
    return [(f.name, f.dataType) for f in df.schema.fields if isinstance(f.dataType, keep)]


def profile_frame(
    df: DataFrame, keys: Sequence[str] = (), top_k: int = 5, low_cardinality: int = 20, fence: float = 3.0
) -> tuple[list[ColumnProfile], DataFrame | None]:
    """Profiles of ``df``'s columns, and the outlier rows (``column, key, value, low, high``).

    Two passes: one aggregation for every statistic, one for the top values and outlier counts.
    """
    cols = _profilable(df)
    aggs: list[Column] = [F.count(F.lit(1)).alias("__rows")]
    for i, (name, dtype) in enumerate(cols):
        c = F.col(f"`{name}`")
        aggs += [F.count_if(c.isNull()).alias(f"n{i}"), F.approx_count_distinct(c).alias(f"d{i}")]
        if not isinstance(dtype, BooleanType):
            aggs += [F.min(c).cast("string").alias(f"lo{i}"), F.max(c).cast("string").alias(f"hi{i}")]
        if isinstance(dtype, NumericType):
            x = c.cast("double")
            aggs += [F.mean(x).alias(f"m{i}"), F.stddev(x).alias(f"s{i}"), F.percentile_approx(x, list(QUANTILES), 1000).alias(f"q{i}")]
    got = df.agg(*aggs).first()
    rows = int(got["__rows"])
    profiles: list[ColumnProfile] = []
    for i, (name, dtype) in enumerate(cols):
        p = ColumnProfile(
            name,
            dtype.simpleString(),
            rows,
            int(got[f"n{i}"]),
            int(got[f"d{i}"]),
            None if isinstance(dtype, BooleanType) else got[f"lo{i}"],
            None if isinstance(dtype, BooleanType) else got[f"hi{i}"],
        )
        if isinstance(dtype, NumericType):
            p.mean, p.stddev, p.quantiles = got[f"m{i}"], got[f"s{i}"], got[f"q{i}"]
            if p.quantiles and all(q is not None for q in p.quantiles):
                iqr = p.quantiles[3] - p.quantiles[1]
                p.outlier_low, p.outlier_high = p.quantiles[1] - fence * iqr, p.quantiles[3] + fence * iqr
        profiles.append(p)

    # second pass: top values of low-cardinality columns, outlier counts
    low = [p for p in profiles if 0 < p.distinct_approx <= low_cardinality]
    fenced = [p for p in profiles if p.outlier_low is not None and p.outlier_high is not None and p.outlier_low < p.outlier_high]
    if low:
        pairs = F.explode(F.array(*[F.struct(F.lit(p.column).alias("c"), F.col(f"`{p.column}`").cast("string").alias("v")) for p in low]))
        counts = df.select(pairs.alias("p")).groupBy("p.c", "p.v").count().collect()
        by_col: dict[str, list[tuple[str, int]]] = {}
        for r in counts:
            by_col.setdefault(r["c"], []).append((r["v"] if r["v"] is not None else "(null)", int(r["count"])))
        for p in low:
            p.top_values = sorted(by_col.get(p.column, []), key=lambda t: (-t[1], t[0]))[:top_k]
    outliers = None
    if fenced:
        key = F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("null")) for k in keys]) if keys else F.lit(None).cast("string")
        flagged = F.explode(
            F.filter(
                F.array(
                    *[
                        F.struct(
                            F.lit(p.column).alias("column"),
                            F.col(f"`{p.column}`").cast("double").alias("value"),
                            F.lit(p.outlier_low).alias("low"),
                            F.lit(p.outlier_high).alias("high"),
                        )
                        for p in fenced
                    ]
                ),
                lambda s: (s["value"] < s["low"]) | (s["value"] > s["high"]),
            )
        )
        outliers = df.select(key.alias("key"), flagged.alias("o")).select("o.column", "key", "o.value", "o.low", "o.high")
        for r in outliers.groupBy("column").count().collect():
            next(p for p in fenced if p.column == r["column"]).outliers = int(r["count"])
    return profiles, outliers


def profile_table(spark: SparkSession, lake: Lake, table: str, run_id: str, max_outliers_per_column: int = 1000) -> list[ColumnProfile]:
    """Profile one table's current version into ``ops.quality_profiles`` and ``quality_outliers``."""
    spec = lake.spec(table)
    df = spark.read.format("delta").load(lake.path(table))
    df = df.drop(*[c for c in df.columns if c.startswith("_")])
    profiles, outliers = profile_frame(df, spec.keys)
    now = datetime.now(timezone.utc)
    rows = [
        Row(
            run_id=run_id,
            table=table,
            column=p.column,
            type=p.type,
            rows=p.rows,
            nulls=p.nulls,
            null_share=p.null_share,
            distinct_approx=p.distinct_approx,
            min=p.min,
            max=p.max,
            mean=p.mean,
            stddev=p.stddev,
            quantiles=p.quantiles,
            top_values=[Row(value=v, count=n) for v, n in p.top_values],
            outliers=p.outliers,
            outlier_low=p.outlier_low,
            outlier_high=p.outlier_high,
            profiled_at=now,
        )
        for p in profiles
    ]
    delta.append_rows(
        spark,
        lake.ops_path("quality_profiles"),
        rows,
        delta.schema_of(spark, PROFILE_SCHEMA),
        "One row per run, table and column: the column's profile",
    )
    if outliers is not None:
        from pyspark.sql import Window

        capped = outliers.withColumn("__n", F.row_number().over(Window.partitionBy("column").orderBy(F.abs(F.col("value")).desc()))).where(
            F.col("__n") <= max_outliers_per_column
        )
        out = capped.select(F.lit(run_id).alias("run_id"), F.lit(table).alias("table"), "column", "key", "value", "low", "high")
        path = lake.ops_path("quality_outliers")
        delta.ensure_table(
            spark, path, delta.schema_of(spark, OUTLIER_SCHEMA), comment="Rows flagged as outliers (never removed from their table)"
        )
        delta.append(out, path)
    log.info(
        "%s: profiled %d column(s) of %d row(s); %d outlier value(s) flagged",
        table,
        len(profiles),
        profiles[0].rows if profiles else 0,
        sum(p.outliers for p in profiles),
    )
    return profiles


@dataclass(frozen=True)
class Alert:
    table: str
    kind: str  # row_count | null_share | failure_rate | schema_drift
    subject: str
    observed: float
    expected: float | None
    message: str


def _far(value: float, history: list[float], rel: float, abs_floor: float) -> tuple[bool, float]:
    med = statistics.median(history)
    spread = statistics.median([abs(h - med) for h in history]) if len(history) > 1 else 0.0
    return abs(value - med) > max(abs_floor, rel * abs(med), 4 * 1.4826 * spread), med


def anomalies(
    spark: SparkSession, lake: Lake, run_id: str, pipeline_run: str | None, min_history: int = 3, last_runs: int = 10
) -> list[Alert]:
    """Compare the latest figures with the last runs': null shares per column (profile run
    ``run_id``), and rows read per table and failure rates per rule (pipeline run
    ``pipeline_run``); also list that run's schema drift."""
    out: list[Alert] = []
    ops = {n: lake.ops_path(n) for n in ("run_log", "quality_profiles", "quality_metrics")}
    read = lambda n: spark.read.format("delta").load(ops[n]) if delta.is_delta(spark, ops[n]) else None  # noqa: E731
    prof = read("quality_profiles")
    if prof is not None:
        runs = [r[0] for r in prof.select("run_id").distinct().orderBy(F.col("run_id").desc()).limit(last_runs + 1).collect()]
        if run_id in runs and len(runs) > min_history:
            data = prof.where(F.col("run_id").isin(runs)).select("run_id", "table", "column", "null_share", "rows").collect()
            by: dict[tuple[str, str], dict[str, float]] = {}
            for r in data:
                by.setdefault((r["table"], r["column"]), {})[r["run_id"]] = r["null_share"]
            for (table, column), series in by.items():
                if run_id not in series:
                    continue
                hist = [v for k, v in series.items() if k != run_id]
                if len(hist) >= min_history:
                    far, med = _far(series[run_id], hist, 0.5, 0.02)
                    if far:
                        out.append(
                            Alert(
                                table,
                                "null_share",
                                column,
                                series[run_id],
                                med,
                                f"{table}.{column}: {series[run_id]:.1%} nulls, usually {med:.1%}",
                            )
                        )
    metrics = read("quality_metrics")
    if metrics is not None and pipeline_run:
        run_id = pipeline_run
        mine = metrics.where(F.col("run_id") == run_id).collect()
        for m in mine:
            if m["rule"] == "schema_drift" and not m["ok"]:
                out.append(
                    Alert(
                        m["table"],
                        "schema_drift",
                        m["check"],
                        float(m["observed"] or 0),
                        0.0,
                        f"{m['table']}: {int(m['observed'] or 0)} unexpected or missing field(s) ({m['check']})",
                    )
                )
            if m["level"] != "row" or not m["evaluated"]:
                continue
            hist_rows = (
                metrics.where(
                    (F.col("table") == m["table"]) & (F.col("rule") == m["rule"]) & (F.col("run_id") != run_id) & (F.col("evaluated") > 0)
                )
                .orderBy(F.col("recorded_at").desc())
                .limit(last_runs * 5)
                .collect()
            )
            hist = [h["failed"] / h["evaluated"] for h in hist_rows]
            if len(hist) >= min_history:
                rate = m["failed"] / m["evaluated"]
                far, med = _far(rate, hist, 1.0, 0.005)
                if far and rate > med:
                    out.append(
                        Alert(
                            m["table"],
                            "failure_rate",
                            m["rule"],
                            rate,
                            med,
                            f"{m['table']}: rule {m['rule']} failed {rate:.2%} of rows, usually {med:.2%}",
                        )
                    )
    runlog = read("run_log")
    if runlog is not None and pipeline_run:
        run_id = pipeline_run
        for r in runlog.where((F.col("run_id") == run_id) & (F.col("rows_read") > 0)).collect():
            hist = [
                float(h["rows_read"])
                for h in runlog.where(
                    (F.col("table") == r["table"])
                    & (F.col("run_id") != run_id)
                    & (F.col("rows_read") > 0)
                    & (F.col("status") == "succeeded")
                )
                .orderBy(F.col("ended_at").desc())
                .limit(last_runs)
                .collect()
            ]
            if len(hist) >= min_history:
                far, med = _far(float(r["rows_read"]), hist, 1.0, 10)
                if far:
                    out.append(
                        Alert(
                            r["table"],
                            "row_count",
                            "rows_read",
                            float(r["rows_read"]),
                            med,
                            f"{r['table']}: {r['rows_read']} rows read, usually {med:.0f}",
                        )
                    )
    return out


def write_alerts(spark: SparkSession, lake: Lake, run_id: str, alerts: list[Alert]) -> None:
    now = datetime.now(timezone.utc)
    rows = [
        Row(
            run_id=run_id,
            table=a.table,
            kind=a.kind,
            subject=a.subject,
            observed=a.observed,
            expected=a.expected,
            message=a.message,
            raised_at=now,
        )
        for a in alerts
    ]
    schema = delta.schema_of(spark, ALERT_SCHEMA)
    delta.append_rows(spark, lake.ops_path("quality_alerts"), rows, schema, "Anomalies and drift found by the profile job, per run")
    for a in alerts:
        log.warning("quality alert: %s", a.message)
