"""Drift and fairness measures: population stability index, Kolmogorov-Smirnov, group rates.

PSI compares a distribution with its baseline over the baseline's decile bins:
``sum((a - e) * ln(a / e))`` over bins with shares ``e`` (baseline) and ``a`` (current); an empty
bin counts as a share of 0.0001 so the sum stays finite. Below 0.1 is stable, 0.1-0.2 moderate,
above 0.2 a shift worth acting on (a common reading; the alert bound is configured).

KS is the largest distance between the two cumulative distributions, read at the baseline's
percentiles (100 bins): exact for the bins' edges, so at most one percentile off elsewhere.

Fairness per group: decline rate, false positive rate (legitimate payments declined) and true
positive rate (fraud caught), and each rate's ratio to the best-treated group (the lowest decline
and false positive rate, the highest true positive rate); a ratio under the bound (the
four-fifths rule: 0.8) is an alert.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

EMPTY_SHARE = 1e-4


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI of two histograms over the same bins (counts or shares)."""
    if len(expected) != len(actual) or not expected:
        raise ValueError(f"histograms differ in bins: {len(expected)} vs {len(actual)}")
    te, ta = float(sum(expected)), float(sum(actual))
    if te == 0 or ta == 0:
        return float("nan")
    out = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / te, EMPTY_SHARE), max(a / ta, EMPTY_SHARE)
        out += (pa - pe) * math.log(pa / pe)
    return out


def ks(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Largest gap between the cumulative shares of two histograms over the same bins."""
    te, ta = float(sum(expected)), float(sum(actual))
    if te == 0 or ta == 0:
        return float("nan")
    ce = ca = gap = 0.0
    for e, a in zip(expected, actual, strict=True):
        ce += e / te
        ca += a / ta
        gap = max(gap, abs(ce - ca))
    return gap


def edges(baseline: DataFrame, column: str, bins: int) -> list[float]:
    """Inner bin edges at the baseline's quantiles (distinct, sorted)."""
    probs = [i / bins for i in range(1, bins)]
    qs = baseline.approxQuantile(column, probs, 0.001)
    return sorted(set(qs))


def bin_index(value: float, cuts: Sequence[float]) -> int:
    """The bin of ``value``: values equal to an edge go to the bin above it."""
    return bisect.bisect_right(cuts, value)


def histogram_by(df: DataFrame, column: str, cuts: Sequence[float], by: str | None = None) -> dict[object, list[int]]:
    """Counts per bin (``len(cuts) + 1`` bins), per value of ``by`` (or under None)."""
    b = F.lit(0)
    for c in cuts:  # bisect_right in Spark: the number of edges <= value
        b = b + F.when(F.col(column) >= F.lit(c), 1).otherwise(0)
    keys = [F.col(by).alias("by")] if by else [F.lit(None).alias("by")]
    rows = df.where(F.col(column).isNotNull()).groupBy(*keys, b.alias("bin")).count().collect()
    out: dict[object, list[int]] = {}
    for r in rows:
        out.setdefault(r["by"], [0] * (len(cuts) + 1))[r["bin"]] += r["count"]
    return out


def drift(baseline: DataFrame, current: DataFrame, columns: Sequence[str], by: str, bins: int = 10) -> list[dict[str, object]]:
    """Per value of ``by`` in ``current`` (a day) and column: PSI over the baseline's deciles and
    KS over its percentiles."""
    out = []
    for col in columns:
        dec, pct = edges(baseline, col, bins), edges(baseline, col, 100)
        base_d, base_p = histogram_by(baseline, col, dec)[None], histogram_by(baseline, col, pct)[None]
        cur_d, cur_p = histogram_by(current, col, dec, by), histogram_by(current, col, pct, by)
        for key in sorted(cur_d, key=str):
            out.append({by: key, "feature": col, "psi": psi(base_d, cur_d[key]), "ks": ks(base_p, cur_p[key]), "rows": sum(cur_d[key])})
    return out


def fairness(
    scored: DataFrame, group: str, decision: str = "decision", label: str = "label", bound: float = 0.8
) -> list[dict[str, object]]:
    """Per value of ``group``: rows, decline rate, FPR, TPR and their ratios to the best group.

    ``scored`` holds labelled payments with a ``decision`` ('decline' or 'approve').
    """
    declined = (F.col(decision) == "decline").cast("int")
    rows = (
        scored.groupBy(F.coalesce(F.col(group).cast("string"), F.lit("unknown")).alias("group"))
        .agg(
            F.count("*").alias("rows"),
            F.avg(declined).alias("decline_rate"),
            F.sum(F.when(F.col(label) == 0, declined)).alias("fp"),
            F.sum(F.when(F.col(label) == 0, 1)).alias("negatives"),
            F.sum(F.when(F.col(label) == 1, declined)).alias("tp"),
            F.sum(F.when(F.col(label) == 1, 1)).alias("positives"),
        )
        .collect()
    )
    table = []
    for r in rows:
        table.append(
            {
                "group_column": group,
                "group": r["group"],
                "rows": r["rows"],
                "decline_rate": float(r["decline_rate"]),
                "fpr": r["fp"] / r["negatives"] if r["negatives"] else None,
                "tpr": r["tp"] / r["positives"] if r["positives"] else None,
            }
        )
    best = {
        "decline_rate": min((t["decline_rate"] for t in table), default=None),
        "fpr": min((t["fpr"] for t in table if t["fpr"] is not None), default=None),
        "tpr": max((t["tpr"] for t in table if t["tpr"] is not None), default=None),
    }
    for t in table:
        # lower is better for declines and false positives: best / own; higher for TPR: own / best
        t["decline_ratio"] = _ratio(best["decline_rate"], t["decline_rate"])
        t["fpr_ratio"] = _ratio(best["fpr"], t["fpr"])
        t["tpr_ratio"] = _ratio(t["tpr"], best["tpr"])
        ratios = [t[k] for k in ("decline_ratio", "fpr_ratio", "tpr_ratio") if t[k] is not None]
        t["alert"] = any(x < bound for x in ratios)
    return sorted(table, key=lambda t: str(t["group"]))


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None:
        return None
    if den == 0:
        return 1.0 if num == 0 else None
    return num / den
