"""The monitoring job: drift, realized performance and fairness of the champion, to Delta.

Each run looks at two periods of the lake's own clock (its latest payment):

* **drift**, the latest ``days`` days: per day, each feature's and the score's distribution
  against the training baseline (the profile the training job kept beside the model in MLflow,
  ``baseline.json``): PSI over its deciles, KS over its percentiles; an alert above the model's
  ``monitoring.psi_alert`` / ``ks_alert``.
* **performance and fairness**, the ``days`` days whose labels have just matured (``maturity_days``
  before the clock): per day the realized ROC AUC, precision and recall at the threshold and the
  decline rate; over the period the same, with an alert when the ROC AUC falls more than
  ``monitoring.auc_drop`` below the model's validation AUC; and per fairness group (age band,
  home country) the decline rate, FPR and TPR with their ratios to the best-treated group, an
  alert under ``fairness.min_ratio`` (the four-fifths rule).

Payments count with the scores and decisions the predictions table holds for them (what the
model decided then), for the champion's version. Metrics go to ``<tables>/ml/<model>_monitoring``,
alerts (the metric rows over a bound, with a sentence) to ``<tables>/ml/<model>_alerts``. A run
replaces the metrics of the days it measured (running it again changes nothing), then rewrites
the alerts from the metrics table: a run killed between the two leaves no alert that the metrics
disagree with once the next run is done. The job holds a lease on both tables (a second monitor
run stops with the first one's name, or waits with ``--wait``).

Example (a notebook)::

    report = monitor(spark, lake, load_model_spec("conf"), days=7)
    print(report.summary())
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.errors import PipelineError
from lakehouse.faults import crash_point
from lakehouse.features.labels import fraud_labels
from lakehouse.features.payments import age_band, customers_as_of, transaction_features
from lakehouse.instants import utc
from lakehouse.io import delta
from lakehouse.io.delta_log import Stamp
from lakehouse.ml import registry
from lakehouse.ml.dataset import lake_clock, read_pinned
from lakehouse.ml.monitor import auc_by, drift_from, fairness
from lakehouse.ml.score import predictions_path
from lakehouse.ml.spec import ModelSpec
from lakehouse.runlog import new_run_id
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

METRICS_SCHEMA = (
    "model_name string, model_version string, kind string, period_start date, period_end date, subject string, "
    "metric string, value double, rows bigint, bound double, alert boolean, computed_at timestamp"
)
ALERTS_SCHEMA = METRICS_SCHEMA + ", message string"
BASELINE_ARTIFACT = "baseline.json"


def metrics_path(lake: Lake, spec: ModelSpec) -> str:
    return f"{lake.env.paths.tables}/ml/{spec.name}_monitoring"


def alerts_path(lake: Lake, spec: ModelSpec) -> str:
    return f"{lake.env.paths.tables}/ml/{spec.name}_alerts"


@dataclass
class MonitorReport:
    model: str
    version: str
    clock: datetime
    drift_days: tuple[date, date]
    matured_days: tuple[date, date]
    validation_auc: float | None
    metrics: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.metrics if m["kind"] == kind]

    def summary(self) -> str:
        d0, d1 = self.drift_days
        m0, m1 = self.matured_days
        lines = [f"monitoring {self.model} version {self.version} (lake clock {self.clock:%Y-%m-%d %H:%M})"]
        dr = self.rows("drift")
        if dr:
            worst: dict[str, dict[str, Any]] = {}
            for m in dr:
                if m["metric"] == "psi" and (m["subject"] not in worst or m["value"] > worst[m["subject"]]["value"]):
                    worst[m["subject"]] = m
            top = sorted(worst.values(), key=lambda m: -m["value"])[:5]
            n_days = len({m["period_end"] for m in dr})
            lines.append(
                f"  drift {d0} .. {d1} ({n_days} day(s) scored): highest PSI "
                + ", ".join(f"{m['subject']} {m['value']:.3f} ({m['period_end']})" for m in top)
            )
        else:
            lines.append(f"  drift {d0} .. {d1}: no payment scored by this version")
        perf = {m["metric"]: m for m in self.rows("performance") if m["subject"] == "period"}
        if perf:
            auc = perf.get("roc_auc", {}).get("value")
            auc_text = "n/a" if auc is None else f"{auc:.4f}"
            val = "" if self.validation_auc is None else f" (validation {self.validation_auc:.4f})"
            lines.append(
                f"  matured {m0} .. {m1}: {perf['decline_rate']['rows']:,} payments, realized ROC AUC {auc_text}{val}, "
                f"precision {_fmt(perf.get('precision'))} recall {_fmt(perf.get('recall'))}, decline rate {_fmt(perf.get('decline_rate'))}"
            )
        else:
            lines.append(f"  matured {m0} .. {m1}: no labelled payment scored by this version yet")
        fair = [m for m in self.rows("fairness") if m["metric"].endswith("_ratio") and m["value"] is not None]
        if fair:
            low = min(fair, key=lambda m: m["value"])
            lines.append(f"  fairness: lowest ratio {low['subject']} {low['metric']} {low['value']:.2f} (bound {low['bound']})")
        lines.append(f"  alerts: {len(self.alerts)}" + "".join(f"\n    - {a['message']}" for a in self.alerts[:10]))
        if len(self.alerts) > 10:
            lines.append(f"    ... and {len(self.alerts) - 10} more (table {self.model}_alerts)")
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _fmt(m: dict[str, Any] | None) -> str:
    return "n/a" if not m or m["value"] is None else f"{m['value']:.3f}"


def champion_baseline(spec: ModelSpec) -> tuple[str, str, dict[str, Any], float | None]:
    """(version, run id, baseline profile, validation ROC AUC) of the champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mv = registry.version_of(spec.name, registry.CHAMPION)
    if mv is None:
        raise PipelineError(f"model {spec.name} has no champion: train one (./spark-submit.sh train) or promote a version")
    run_id = (mv.tags or {}).get("run_id") or mv.run_id
    try:
        base = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BASELINE_ARTIFACT}")
    except (MlflowException, OSError) as exc:
        raise PipelineError(
            f"model {spec.name} version {mv.version} (run {run_id}) has no {BASELINE_ARTIFACT}: monitoring compares with the "
            "training data's profile, which the training job logs; retrain with ./spark-submit.sh train, or log a profile "
            "(lakehouse.ml.monitor.profile) beside a model trained elsewhere"
        ) from exc
    auc = registry.client().get_run(run_id).data.metrics.get("roc_auc")
    return str(mv.version), run_id, base, auc


def _row(
    spec: ModelSpec, version: str, kind: str, start: date, end: date, subject: str, metric: str, value: float | None, **kw: Any
) -> dict:
    return {
        "model_name": spec.name,
        "model_version": version,
        "kind": kind,
        "period_start": start,
        "period_end": end,
        "subject": subject,
        "metric": metric,
        "value": None if value is None or value != value else float(value),
        "rows": kw.get("rows"),
        "bound": kw.get("bound"),
        "alert": bool(kw.get("alert", False)),
    }


def drift_rows(spec: ModelSpec, version: str, base: dict[str, Any], current: DataFrame) -> list[dict]:
    out = []
    for d in drift_from(base, current, [*spec.features, "score"], "event_date"):
        day = d["event_date"]
        for metric, bound in (("psi", spec.psi_alert), ("ks", spec.ks_alert)):
            v = d[metric]
            out.append(
                _row(spec, version, "drift", day, day, d["feature"], metric, v, rows=d["rows"], bound=bound, alert=v == v and v > bound)
            )
    return out


def performance_rows(
    spec: ModelSpec, version: str, labelled: DataFrame, start: date, end: date, validation_auc: float | None
) -> list[dict]:
    """Per day and over the period: realized ROC AUC, precision, recall and decline rate."""
    flagged = (F.col("decision") == "decline").cast("int")
    period = labelled.withColumn("__period", F.lit("period"))
    out = []
    for by, frame in (("event_date", labelled), ("__period", period)):
        aucs = auc_by(frame, by)
        counts = {
            r["by"]: r
            for r in frame.groupBy(F.col(by).alias("by"))
            .agg(
                F.count("*").alias("rows"),
                F.sum(flagged).alias("flagged"),
                F.sum(flagged * F.col("label")).alias("tp"),
                F.sum("label").alias("positives"),
            )
            .collect()
        }
        for key, c in counts.items():
            s, e, subject = (start, end, "period") if by == "__period" else (key, key, "day")
            auc = aucs.get(key, {}).get("roc_auc")
            auc_bound = None if validation_auc is None or subject == "day" else validation_auc - spec.auc_drop
            n = int(c["rows"])
            out += [
                _row(spec, version, "performance", s, e, subject, "roc_auc", auc, rows=n, bound=auc_bound,
                     alert=auc is not None and auc_bound is not None and auc < auc_bound),
                _row(spec, version, "performance", s, e, subject, "precision", c["tp"] / c["flagged"] if c["flagged"] else None, rows=n),
                _row(spec, version, "performance", s, e, subject, "recall", c["tp"] / c["positives"] if c["positives"] else None, rows=n),
                _row(spec, version, "performance", s, e, subject, "decline_rate", c["flagged"] / n if n else None, rows=n),
                _row(spec, version, "performance", s, e, subject, "fraud_rate", c["positives"] / n if n else None, rows=n),
            ]  # fmt: skip
    return out


def fairness_rows(spec: ModelSpec, version: str, labelled: DataFrame, start: date, end: date) -> list[dict]:
    out = []
    for group in spec.fairness_groups:
        for t in fairness(labelled, group, bound=spec.fairness_min_ratio):
            subject = f"{group}={t['group']}"
            for metric in ("decline_rate", "fpr", "tpr"):
                out.append(_row(spec, version, "fairness", start, end, subject, metric, t[metric], rows=t["rows"]))
            for metric in ("approval_ratio", "tnr_ratio", "tpr_ratio"):
                v = t[metric]
                low = v is not None and v < spec.fairness_min_ratio
                out.append(
                    _row(
                        spec, version, "fairness", start, end, subject, metric, v, rows=t["rows"], bound=spec.fairness_min_ratio, alert=low
                    )
                )
    return out


def shown(value: float, bound: float, least: int = 2) -> str:
    """``value`` with the fewest decimals (``least`` to 6) that keep it on its side of ``bound``:
    a TPR ratio of 0.7996 against 0.8 reads "0.7996", not "0.80"."""
    for d in range(least, 7):
        text = f"{value:.{d}f}"
        if float(text) != bound and (float(text) < bound) == (value < bound):
            return text
    return f"{value:.6f}"


def message(m: dict[str, Any]) -> str:
    when = str(m["period_end"]) if m["period_start"] == m["period_end"] else f"{m['period_start']} .. {m['period_end']}"
    if m["kind"] == "drift":
        value = shown(m["value"], m["bound"], 3)
        return f"drift: {m['subject']} {m['metric'].upper()} {value} > {m['bound']} on {when} ({m['rows']:,} payments)"
    if m["kind"] == "performance":
        return f"performance: realized ROC AUC {m['value']:.4f} < {m['bound']:.4f} (validation AUC - auc_drop) over {when}"
    return (
        f"fairness: {m['subject']} {m['metric']} {shown(m['value'], m['bound'])} < {m['bound']} over {when} "
        f"({m['rows']:,} payments; ratio to the best-treated group)"
    )


def _replace(spark: SparkSession, path: str, schema: str, rows: list[dict] | DataFrame, cond: str) -> None:
    st = delta.schema_of(spark, schema)
    delta.ensure_table(spark, path, st)
    df = rows.select(*st.fieldNames()) if isinstance(rows, DataFrame) else spark.createDataFrame(rows, st)
    w = df.write.format("delta").mode("overwrite").option("replaceWhere", cond)
    delta.retry_on_conflict(lambda: w.save(path), f"replaceWhere on {path}")


def sync_alerts(spark: SparkSession, lake: Lake, spec: ModelSpec) -> int:
    """Rewrite the model's alerts from its metrics table: every row over a bound, with its
    sentence, in one commit (a few rows per measured day at most). Returns how many."""
    over = spark.read.format("delta").load(metrics_path(lake, spec)).where(F.col("model_name") == spec.name).where("alert")
    keys = ["model_name", "model_version", "kind", "period_start", "period_end", "subject", "metric"]
    texts = [(*(r[k] for k in keys), message(r.asDict())) for r in over.collect()]
    st = delta.schema_of(spark, ALERTS_SCHEMA)
    by_key = spark.createDataFrame(texts, StructType([*(st[k] for k in keys), st["message"]]))
    # the timestamps stay in Spark (no trip through Python's local time)
    _replace(spark, alerts_path(lake, spec), ALERTS_SCHEMA, over.join(by_key, keys), f"model_name = '{spec.name}'")
    return len(texts)


def _between(column: str, start: date, end: date) -> str:
    return f"{column} BETWEEN DATE'{start.isoformat()}' AND DATE'{end.isoformat()}'"


def monitored_days(clock: datetime, days: int, maturity_days: int) -> tuple[tuple[date, date], tuple[date, date]]:
    """The UTC days measured at ``clock``: drift over the latest ``days`` (the clock's day
    included), performance and fairness over the ``days`` that matured by then (ending the day
    before the maturity line)."""
    c = utc(clock)
    d1 = c.date()
    m1 = (c - timedelta(days=maturity_days)).date() - timedelta(days=1)
    return (d1 - timedelta(days=days - 1), d1), (m1 - timedelta(days=days - 1), m1)


def monitor(
    spark: SparkSession, lake: Lake, spec: ModelSpec, days: int = 7, as_of: datetime | None = None, run_id: str | None = None
) -> MonitorReport:
    """Measure drift over the latest ``days`` days and performance and fairness over the ``days``
    days that just matured, for the champion; write metrics and alerts (replacing those days')."""
    if days < 1:
        raise PipelineError(f"monitoring needs at least one day, got {days}")
    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    version, run_id, base, validation_auc = champion_baseline(spec)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", spec.name + version):
        raise PipelineError(f"model name {spec.name!r} / version {version!r}: not plain tokens")
    clock = utc(as_of) if as_of else lake_clock(spark, lake)
    (d0, d1), (m0, m1) = monitored_days(clock, days, spec.maturity_days)
    ppath = predictions_path(lake, spec)
    if delta.version(spark, ppath) is None:
        raise PipelineError(f"{spec.name}: no predictions table at {ppath} (score first: ./spark-submit.sh score)")
    preds = (
        spark.read.format("delta")
        .load(ppath)
        .where((F.col("model_name") == spec.name) & (F.col("model_version") == version))
        .select("transaction_id", "score", "decision")
    )
    frames, _ = read_pinned(spark, lake)
    tx = frames["silver.transactions"]
    in_range = (F.col("event_date") >= F.lit(d0)) & (F.col("event_date") <= F.lit(d1)) & (F.col("event_time") <= F.lit(clock))
    current = transaction_features(
        tx.where(in_range), frames["gold.customer_features"], frames["gold.merchant_features"], frames["silver.customers"]
    ).join(preds.select("transaction_id", "score"), "transaction_id")
    metrics = drift_rows(spec, version, base, current)
    seconds["drift"] = time.monotonic() - t0
    t1 = time.monotonic()
    matured_tx = tx.where((F.col("event_date") >= F.lit(m0)) & (F.col("event_date") <= F.lit(m1)))
    labelled = fraud_labels(matured_tx, frames["silver.chargebacks"], clock, spec.maturity_days, spec.fraud_reasons)
    labelled = customers_as_of(labelled.join(preds, "transaction_id"), frames["silver.customers"])
    labelled = labelled.withColumn("age_band", age_band(F.col("birth_date"), F.col("event_time"))).persist()
    try:  # no matured payments: every grouped aggregation below returns no rows, so no metrics
        metrics += performance_rows(spec, version, labelled, m0, m1, validation_auc)
        metrics += fairness_rows(spec, version, labelled, m0, m1)
    finally:
        labelled.unpersist()
    seconds["performance and fairness"] = time.monotonic() - t1
    t2 = time.monotonic()
    now = datetime.now(timezone.utc)
    for m in metrics:
        m["computed_at"] = now
    alerts = [{**m, "message": message(m)} for m in metrics if m["alert"]]
    cond = (
        f"model_name = '{spec.name}' AND model_version = '{version}' AND "
        f"((kind = 'drift' AND {_between('period_end', d0, d1)}) OR "
        f"(kind IN ('performance', 'fairness') AND {_between('period_end', m0, m1)}))"
    )
    with delta.stamped(spark, Stamp(f"ml.{spec.name}_monitoring", run_id or new_run_id())):
        _replace(spark, metrics_path(lake, spec), METRICS_SCHEMA, metrics, cond)
    crash_point("monitor.after_metrics", f"ml.{spec.name}_monitoring")
    # the alerts are a function of the metrics table (its rows over a bound, with a sentence),
    # rebuilt from it whole: a run that died between the two writes, or measured other days than
    # this one, leaves nothing for the alerts to disagree with
    sync_alerts(spark, lake, spec)
    seconds["write"] = time.monotonic() - t2
    seconds["total"] = time.monotonic() - t0
    for a in alerts:
        log.warning("%s v%s: %s", spec.name, version, a["message"])
    return MonitorReport(spec.name, version, clock, (d0, d1), (m0, m1), validation_auc, metrics, alerts, seconds)
