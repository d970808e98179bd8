"""The model card: one Markdown file per model version, generated from what MLflow and the
monitoring tables hold (nothing typed by hand), with its charts as SVG files beside it.

Sections: purpose and owner, training data (window, rows, table versions, commit), features,
validation metrics with a reliability chart, the fairness table (and the reweighing trade-off when
it was measured), drift and realized performance from the monitoring job with a PSI chart, and
the commands that reproduce the model.

Example::

    uri = write_card(spark, lake, load_model_spec("conf"))   # the champion's card
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError
from lakehouse.io import delta, fs
from lakehouse.ml import registry
from lakehouse.ml.monitoring import alerts_path, metrics_path
from lakehouse.ml.spec import ModelSpec
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_labels: Sequence[str] = (), diagonal: bool = False) -> str:
    """A small SVG line chart: ``series`` name -> [(x, y)]; ``x_labels`` for categorical x."""
    w, h, left, right, top, bottom = 560, 260, 50, 130, 24, 40
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys) or 1.0
    if diagonal:
        x0 = y0 = 0.0
        x1 = y1 = max(x1, y1)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (w - left - right)

    def sy(v: float) -> float:
        return h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="#fff"/><text x="{left}" y="15" font-size="13">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>',
    ]
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    if x_labels:
        step = max(1, len(x_labels) // 8)
        for i, lab in enumerate(x_labels):
            if i % step == 0:
                out.append(f'<text x="{sx(i):.1f}" y="{h - bottom + 14}" text-anchor="middle">{html.escape(lab)}</text>')
    else:
        for i in range(5):
            v = x0 + (x1 - x0) * i / 4
            out.append(f'<text x="{sx(v):.1f}" y="{h - bottom + 14}" text-anchor="middle">{v:.3g}</text>')
    if diagonal:
        out.append(f'<line x1="{sx(x0):.1f}" y1="{sy(y0):.1f}" x2="{sx(x1):.1f}" y2="{sy(y1):.1f}" stroke="#bbb" stroke-dasharray="4"/>')
    for i, (name, s) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>' for x, y in s]
        out.append(f'<text x="{w - right + 8}" y="{top + 14 * (i + 1)}" fill="{c}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v).replace("|", "\\|")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]]


def _artifact(run_id: str, name: str) -> dict[str, Any] | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{name}")
    except (MlflowException, OSError):
        return None


class Card(NamedTuple):
    """A generated card: the model version it describes, its Markdown, and its charts ({file name: SVG})."""

    version: str
    markdown: str
    charts: dict[str, str]


def card(spark: SparkSession, lake: Lake, spec: ModelSpec, version: str | None = None) -> Card:
    """The card of a model version (default: the champion)."""
    from mlflow.exceptions import MlflowException

    cl = registry.client()
    if version is None:
        mv = registry.version_of(spec.name, registry.CHAMPION)
        if mv is None:
            raise PipelineError(f"model {spec.name} has no champion: name a version (--version N)")
    else:
        try:
            mv = cl.get_model_version(spec.name, str(version))
        except MlflowException:
            raise PipelineError(f"model {spec.name} has no version {version}") from None
    v = str(mv.version)
    aliases = [a for a in (registry.CHAMPION, registry.CHALLENGER) if (x := registry.version_of(spec.name, a)) and str(x.version) == v]
    run_id = (mv.tags or {}).get("run_id") or mv.run_id
    run = cl.get_run(run_id)
    p, m, tags = run.data.params, run.data.metrics, run.data.tags
    stem = f"{spec.name}_v{v}"
    charts: dict[str, str] = {}
    md = [
        f"# Model card: {spec.name}, version {v}",
        "",
        f"*Generated from MLflow run `{run_id}` and the monitoring tables; aliases: {', '.join(aliases) or 'none'}.*",
        "",
        "## Purpose",
        "",
        spec.description,
        "",
        f"- Owner: {spec.owner}",
        f"- Decision: a payment scoring at or above {p.get('threshold', spec.threshold)} is declined or sent to review.",
        f"- Classifier: {p.get('classifier', 'n/a')} ({', '.join(f'{k[6:]}={val}' for k, val in p.items() if k.startswith('param.'))}); "
        f"class weights with scores corrected back to probabilities (odds factor {p.get('odds_factor', 'n/a')}); "
        f"reweighing: {p.get('reweigh', 'none')}.",
        "",
        "## Training data",
        "",
        f"- Trained on payments of {p.get('window.start', 'n/a')} .. {p.get('window.split', 'n/a')}, validated on "
        f".. {p.get('window.end', 'n/a')}, labels as known at {p.get('window.as_of', 'n/a')} "
        f"(a payment is a negative only {p.get('maturity_days', spec.maturity_days)} days after it without a fraud chargeback).",
        f"- Rows: train {m.get('rows.train', 0):,.0f} ({m.get('rows.train_positives', 0):,.0f} fraud), "
        f"validate {m.get('rows.validate', 0):,.0f} ({m.get('rows.validate_positives', 0):,.0f} fraud).",
        f"- Code: git commit `{tags.get('git_commit', 'unknown')}`.",
        "",
        *_table(
            ["table", "Delta version read"],
            [(k.removeprefix("table_version."), val) for k, val in sorted(tags.items()) if k.startswith("table_version.")],
        ),
        "",
        "## Features",
        "",
        ", ".join(f"`{f}`" for f in p.get("features", ",".join(spec.features)).split(",")),
        "",
        "## Validation metrics",
        "",
        *_table(
            ["metric", "value"],
            [
                (k, m.get(k))
                for k in ("roc_auc", "pr_auc", "precision", "recall", "brier", "ece", "oracle_roc_auc", "roc_auc_on_oracle_rows")
                if k in m
            ],
        ),
        "",
    ]
    if "oracle_roc_auc" in m and "roc_auc_on_oracle_rows" in m:
        md += [
            f"The oracle is the generator's true fraud probability on the same rows: the model reaches "
            f"{m['roc_auc_on_oracle_rows'] / m['oracle_roc_auc']:.1%} of its ROC AUC.",
            "",
        ]
    cal = _artifact(run_id, "calibration.json")
    if cal and cal.get("bins"):
        name = f"{stem}_reliability.svg"
        charts[name] = line_chart(
            "Reliability: observed fraud rate by mean score (validation)",
            {"model": [(b["mean_score"], b["fraud_rate"]) for b in cal["bins"]]},
            diagonal=True,
        )
        md += [f"![reliability]({name})", ""]
    fair = _artifact(run_id, "fairness.json")
    md += ["## Fairness (validation rows)", ""]
    if fair:
        bound = fair.get("bound", spec.fairness_min_ratio)
        md += [
            f"Ratios of the favourable outcomes (approval, a legitimate payment approved = TNR, a fraud caught = TPR) to the "
            f"best-treated group of the same column; under {bound} (the four-fifths rule) is an alert. A rate resting on "
            "fewer than 30 payments (frauds for the TPR) is not compared.",
            "",
        ]
        rows = []
        for g, table in fair["groups"].items():
            for t in table:
                rows.append(
                    (g, t["group"], t["rows"], t["decline_rate"], t["fpr"], t["tpr"], t["approval_ratio"], t["tnr_ratio"], t["tpr_ratio"],
                     "ALERT" if t["alert"] else "")
                )  # fmt: skip
        md += _table(["group", "value", "rows", "decline rate", "FPR", "TPR", "approval ratio", "TNR ratio", "TPR ratio", ""], rows)
        md.append("")
    else:
        md += ["Not recorded for this version.", ""]
    trade = _artifact(run_id, "reweighing_tradeoff.json")
    if trade:
        md += ["Reweighing trade-off (validation rows): ROC AUC and the lowest fairness ratio per group column.", ""]
        cols = sorted({k for vals in trade.values() for k in vals if k != "roc_auc"})
        md += _table(["variant", "ROC AUC", *cols], [(k, vals.get("roc_auc"), *[vals.get(c) for c in cols]) for k, vals in trade.items()])
        md.append("")
    md += _monitoring(spark, lake, spec, v, stem, charts)
    md += [
        "## Reproduce",
        "",
        "```bash",
        f"git checkout {tags.get('git_commit', '<commit>')}",
        f"./spark-submit.sh train --as-of '{p.get('window.as_of', '<as of>')}' --no-promote"
        + (f" --reweigh {p['reweigh']}" if p.get("reweigh", "none") != "none" else " --reweigh ''")
        + "".join(
            f" \\\n    --pin {k.removeprefix('table_version.')}={val}" for k, val in sorted(tags.items()) if k.startswith("table_version.")
        ),
        f"./spark-submit.sh promote --version {v}",
        "./spark-submit.sh score && ./spark-submit.sh monitor && ./spark-submit.sh model_card",
        "```",
        "",
        f"In a notebook: `mlflow.spark.load_model('models:/{spec.name}/{v}')` (after `lakehouse.ml.registry.configure(env)`).",
        "",
    ]
    return Card(v, "\n".join(md), charts)


def _monitoring(spark: SparkSession, lake: Lake, spec: ModelSpec, version: str, stem: str, charts: dict[str, str]) -> list[str]:
    md = ["## Drift and realized performance (monitoring job)", ""]
    path = metrics_path(lake, spec)
    if delta.version(spark, path) is None:
        return [*md, "No monitoring run yet (`./spark-submit.sh monitor`).", ""]
    mine = (F.col("model_name") == spec.name) & (F.col("model_version") == version)
    rows = [r.asDict() for r in spark.read.format("delta").load(path).where(mine).collect()]
    if not rows:
        return [*md, "No monitoring metrics for this version yet.", ""]
    drift = [r for r in rows if r["kind"] == "drift" and r["metric"] == "psi" and r["value"] is not None]
    if drift:
        days = sorted({r["period_end"] for r in drift})
        worst: dict[str, float] = {}
        for r in drift:
            worst[r["subject"]] = max(worst.get(r["subject"], 0.0), r["value"])
        top = sorted(worst, key=lambda f: -worst[f])[:5]
        alerts = [r for r in rows if r["kind"] == "drift" and r["alert"]]
        md += [
            f"Drift over {days[0]} .. {days[-1]} ({len(days)} day(s)): {len(alerts)} alert(s) "
            f"(PSI > {spec.psi_alert} or KS > {spec.ks_alert}). Highest PSI per feature:",
            "",
            *_table(["feature", "highest PSI"], [(f, worst[f]) for f in top]),
            "",
        ]
        idx = {d: i for i, d in enumerate(days)}
        shown = [f for f in dict.fromkeys([*top[:4], "score"]) if f in worst]
        series = {f: sorted((idx[r["period_end"]], r["value"]) for r in drift if r["subject"] == f) for f in shown}
        name = f"{stem}_psi.svg"
        charts[name] = line_chart("PSI per day against the training baseline", series, [str(d)[5:] for d in days])
        md += [f"![psi per day]({name})", ""]
    perf = [r for r in rows if r["kind"] == "performance" and r["subject"] == "period"]
    if perf:
        end = max(r["period_end"] for r in perf)
        latest = {r["metric"]: r for r in perf if r["period_end"] == end}
        known = [k for k in ("roc_auc", "precision", "recall", "decline_rate") if latest.get(k) and latest[k]["value"] is not None]
        start = latest["decline_rate"]["period_start"]
        md += [
            f"Realized performance over {start} .. {end} (labels matured): " + ", ".join(f"{k} {latest[k]['value']:.4f}" for k in known),
            "",
        ]
    else:
        md += ["No matured labels for payments this version scored yet: realized performance follows.", ""]
    apath = alerts_path(lake, spec)
    if delta.version(spark, apath) is not None:
        al = spark.read.format("delta").load(apath).where((F.col("model_name") == spec.name) & (F.col("model_version") == version))
        shown = 20
        msgs = [r["message"] for r in al.orderBy("kind", "period_end", "subject", "metric").limit(shown + 1).collect()]
        head = f"Alerts ({len(msgs)}):" if len(msgs) <= shown else f"Alerts (more than {shown}; the first {shown}):"
        md += [head, "", *[f"- {x}" for x in msgs[:shown]], ""] if msgs else ["No alerts.", ""]
    return md


def write_card(spark: SparkSession, lake: Lake, spec: ModelSpec, version: str | None = None, out_dir: str | None = None) -> str:
    """Write ``<out_dir>/<model>_v<version>.md`` and its charts (default dir: ``<lake_root>/reports``);
    return the card's URI."""
    c = card(spark, lake, spec, version)
    out_dir = (out_dir or f"{lake.env.lake_root}/reports").rstrip("/")
    uri = f"{out_dir}/{spec.name}_v{c.version}.md"
    for name, svg in c.charts.items():
        fs.write_report(spark, f"{out_dir}/{name}", svg)
    fs.write_report(spark, uri, c.markdown)
    log.info("model card written to %s (%d chart(s))", uri, len(c.charts))
    return uri
