"""Drift and fairness measures: population stability index, Kolmogorov-Smirnov, group rates.

PSI compares a distribution with its baseline over the baseline's decile bins:
``sum((a - e) * ln(a / e))`` over bins with shares ``e`` (baseline) and ``a`` (current); an empty
bin counts as a share of 0.0001 so the sum stays finite. Below 0.1 is stable, 0.1-0.2 moderate,
above 0.2 a shift worth acting on (a common reading; the alert bound is configured).

KS is the largest distance between the two cumulative distributions, read at the baseline's
percentiles (100 bins): exact for the bins' edges, so at most one percentile off elsewhere.

Fairness per group: decline rate, false positive rate (legitimate payments declined) and true
positive rate (fraud caught), and the ratios of the favourable outcomes to the best-treated
group's: approval rate (1 - decline rate), true negative rate (1 - FPR, a legitimate payment
approved) and TPR; a ratio under the bound (the four-fifths rule: 0.8) is an alert.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence

from pyspark.sql import DataFrame, Window
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


def quantiles(baseline: DataFrame, columns: Sequence[str], bins: int) -> dict[str, list[float]]:
    """Per column, the baseline's ``bins - 1`` inner quantiles (1/bins .. (bins-1)/bins), all
    columns in one pass (relative error 0.001)."""
    probs = [i / bins for i in range(1, bins)]
    qs = baseline.approxQuantile(list(columns), probs, 0.001)
    return {c: list(q) for c, q in zip(columns, qs, strict=True)}


def bin_index(value: float, cuts: Sequence[float]) -> int:
    """The bin of ``value``: values equal to an edge go to the bin above it."""
    return bisect.bisect_right(cuts, value)


def histograms(df: DataFrame, cuts: Mapping[str, Sequence[float]], by: str | None = None) -> dict[tuple[object, str], list[int]]:
    """Counts per bin (``len(cuts[c]) + 1`` bins) per (value of ``by``, column), every column in
    one pass (MLlib's Bucketizer: a binary search per value, an edge's value in the bin above).
    Nulls and NaNs are not counted."""
    from pyspark.ml.feature import Bucketizer

    cols = [c for c in cuts if cuts[c]]
    if not cols:
        return {}
    inf = float("inf")
    names = [f"__b{i}" for i in range(len(cols))]
    src = df.select(
        (F.col(by) if by else F.lit(None)).alias("__by"), *[F.col(c).cast("double").alias(f"__v{i}") for i, c in enumerate(cols)]
    )
    buck = Bucketizer(
        splitsArray=[[-inf, *cuts[c], inf] for c in cols],
        inputCols=[f"__v{i}" for i in range(len(cols))],
        outputCols=names,
        handleInvalid="keep",
    )
    pairs = F.explode(F.array(*[F.struct(F.lit(i).alias("i"), F.col(n).alias("bin")) for i, n in enumerate(names)]))
    long = buck.transform(src).select("__by", pairs.alias("p")).select("__by", "p.i", F.col("p.bin").cast("int").alias("bin"))
    out: dict[tuple[object, str], list[int]] = {}
    for r in long.where(F.col("bin").isNotNull()).groupBy("__by", "i", "bin").count().collect():
        col = cols[r["i"]]
        if r["bin"] > len(cuts[col]):  # NaN: handleInvalid="keep" puts it past the last bin
            continue
        out.setdefault((r["__by"], col), [0] * (len(cuts[col]) + 1))[r["bin"]] += r["count"]
    return out


def coarsen(counts: Sequence[int], fine: Sequence[float], coarse: Sequence[float]) -> list[int]:
    """Counts over ``fine`` edges regrouped over ``coarse`` edges, a subset of them (a value in
    fine bin b lies in [fine[b-1], fine[b]), so its coarse bin is the number of coarse edges <=
    fine[b-1])."""
    out = [0] * (len(coarse) + 1)
    for b, n in enumerate(counts):
        out[0 if b == 0 else bisect.bisect_right(coarse, fine[b - 1])] += n
    return out


def profile(baseline: DataFrame, columns: Sequence[str], fine: int = 100) -> dict[str, object]:
    """What drift is measured against, small enough to keep beside the model (JSON): per column
    the baseline's ``fine - 1`` inner quantiles and its counts over their distinct values as bin
    edges. Two passes: the quantiles, the histograms."""
    raw = quantiles(baseline, columns, fine)
    hist = histograms(baseline, {c: sorted(set(q)) for c, q in raw.items()})
    return {"fine": fine, "columns": {c: {"quantiles": raw[c], "counts": hist[(None, c)]} for c in columns if (None, c) in hist}}


def drift_from(base: Mapping[str, object], current: DataFrame, columns: Sequence[str], by: str, bins: int = 10) -> list[dict[str, object]]:
    """Per value of ``by`` in ``current`` (a day) and column: PSI over the baseline's ``bins``
    quantile bins and KS over its fine quantile bins (percentiles), from a :func:`profile`. One
    pass over ``current``."""
    fine = int(base["fine"])  # type: ignore[call-overload]
    if fine % bins:
        raise ValueError(f"{fine} fine bins do not split into {bins}")
    step = fine // bins  # the coarse edges are the fine quantiles at multiples of it (deciles among percentiles)
    known: Mapping[str, Mapping[str, list]] = base["columns"]  # type: ignore[assignment]
    cols = [c for c in columns if c in known]
    pct = {c: sorted(set(known[c]["quantiles"])) for c in cols}
    dec = {c: sorted({known[c]["quantiles"][k * step - 1] for k in range(1, bins)}) for c in cols}
    cur = histograms(current, pct, by)
    out = []
    for col in cols:
        b_fine = known[col]["counts"]
        b_coarse = coarsen(b_fine, pct[col], dec[col])
        for key in sorted({k for k, c in cur if c == col}, key=str):
            c_fine = cur[(key, col)]
            out.append(
                {
                    by: key,
                    "feature": col,
                    "psi": psi(b_coarse, coarsen(c_fine, pct[col], dec[col])),
                    "ks": ks(b_fine, c_fine),
                    "rows": sum(c_fine),
                }
            )
    return out


def drift(
    baseline: DataFrame, current: DataFrame, columns: Sequence[str], by: str, bins: int = 10, fine: int = 100
) -> list[dict[str, object]]:
    """:func:`drift_from` the ``baseline`` frame's :func:`profile`."""
    return drift_from(profile(baseline, columns, fine), current, columns, by, bins)


def auc_by(
    df: DataFrame, by: str, score: str = "score", label: str = "label", buckets: int = 64
) -> dict[object, dict[str, float | int | None]]:
    """Per value of ``by``: ROC AUC as the Mann-Whitney statistic (a tie between a fraud and a
    legitimate payment counts half, as the area under the ROC curve's straight segments does),
    rows and positives, every value of ``by`` in one query.

    Exact, and with no single-partition step: a score's rank is the rows of its ``by`` value below
    its score's range (one of ``buckets`` ranges of scores, cut at the scores' quantiles; the
    ranges' totals are a few hundred rows) plus those below it within its range (a window per
    value and range). A window over all of a value's scores would sort them in one task, all of
    the period's payments for the period's AUC."""
    g = df.groupBy(F.col(by).alias("by"), F.col(score).cast("double").alias("s")).agg(
        F.count("*").alias("n"), F.sum(F.col(label).cast("long")).alias("p")
    )
    probs = [i / buckets for i in range(1, buckets)]
    cuts = g.groupBy(F.col("by").alias("__cb")).agg(F.percentile_approx("s", probs, 10_000).alias("__cuts"))
    # equal scores always fall in the same range: a range is the number of cuts below the score
    ranged = g.join(F.broadcast(cuts), F.col("by").eqNullSafe(F.col("__cb"))).select(
        "by", "s", "n", "p", F.size(F.filter("__cuts", lambda c: c < F.col("s"))).alias("bucket")
    )
    totals = ranged.groupBy("by", "bucket").agg(F.sum("n").alias("bn"))
    t, e = totals.alias("t"), totals.alias("e")
    offsets = (
        t.join(e, F.col("t.by").eqNullSafe(F.col("e.by")) & (F.col("e.bucket") < F.col("t.bucket")), "left")
        .groupBy(F.col("t.by").alias("__ob"), F.col("t.bucket").alias("__obk"))
        .agg(F.coalesce(F.sum("e.bn"), F.lit(0)).alias("offset"))
    )
    earlier = Window.partitionBy("by", "bucket").orderBy("s").rowsBetween(Window.unboundedPreceding, -1)
    ranked = ranged.join(F.broadcast(offsets), F.col("by").eqNullSafe(F.col("__ob")) & (F.col("bucket") == F.col("__obk"))).withColumn(
        "below", F.col("offset") + F.coalesce(F.sum("n").over(earlier), F.lit(0))
    )
    # a tie group's rows hold ranks below + 1 .. below + n: their mean rank is below + (n + 1) / 2
    rows = (
        ranked.groupBy("by")
        .agg(F.sum("n").alias("rows"), F.sum("p").alias("pos"), F.sum(F.col("p") * (F.col("below") + (F.col("n") + 1) / 2)).alias("r"))
        .collect()
    )
    out: dict[object, dict[str, float | int | None]] = {}
    for r in rows:
        pos, neg = int(r["pos"] or 0), int(r["rows"]) - int(r["pos"] or 0)
        value = (float(r["r"]) - pos * (pos + 1) / 2) / (pos * neg) if pos and neg else None
        out[r["by"]] = {"roc_auc": value, "rows": int(r["rows"]), "positives": pos}
    return out


def fairness(
    scored: DataFrame, group: str, decision: str = "decision", label: str = "label", bound: float = 0.8, min_support: int = 30
) -> list[dict[str, object]]:
    """Per value of ``group``: rows, decline rate, FPR, TPR and their ratios to the best group.

    ``scored`` holds labelled payments with a ``decision`` ('decline' or 'approve'). A rate is
    compared (ratio, best group, alert) only where it rests on at least ``min_support`` payments
    (rows for the decline rate, legitimate payments for the FPR, frauds for the TPR): a group
    with three frauds has a TPR of 0, 1/3, 2/3 or 1 by chance alone. Its ratio is then None, and
    so is every group's when fewer than two groups have the support for that rate.
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
                "negatives": r["negatives"] or 0,
                "positives": r["positives"] or 0,
                "decline_rate": float(r["decline_rate"]),
                "fpr": r["fp"] / r["negatives"] if r["negatives"] else None,
                "tpr": r["tp"] / r["positives"] if r["positives"] else None,
            }
        )
    support = {"decline_rate": "rows", "fpr": "negatives", "tpr": "positives"}

    def compared(t: dict[str, object], rate: str) -> float | None:
        return t[rate] if t[rate] is not None and t[support[rate]] >= min_support else None  # type: ignore[return-value, operator]

    def best_of(rate: str, pick: Callable[[list[float]], float]) -> float | None:
        # a group compared with itself says nothing: a ratio needs two groups with support
        vals = [v for t in table if (v := compared(t, rate)) is not None]
        return pick(vals) if len(vals) >= 2 else None

    best = {"decline_rate": best_of("decline_rate", min), "fpr": best_of("fpr", min), "tpr": best_of("tpr", max)}
    for t in table:
        # the four-fifths rule compares favourable outcomes: approval (1 - decline rate), a
        # legitimate payment approved (1 - FPR), a fraud caught (TPR); own / best group's
        t["approval_ratio"] = _ratio(_favourable(compared(t, "decline_rate")), _favourable(best["decline_rate"]))
        t["tnr_ratio"] = _ratio(_favourable(compared(t, "fpr")), _favourable(best["fpr"]))
        t["tpr_ratio"] = _ratio(compared(t, "tpr"), best["tpr"])
        ratios = [t[k] for k in ("approval_ratio", "tnr_ratio", "tpr_ratio") if t[k] is not None]
        t["alert"] = any(x < bound for x in ratios)
    return sorted(table, key=lambda t: str(t["group"]))


def _favourable(rate: float | None) -> float | None:
    return None if rate is None else 1.0 - rate


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None:
        return None
    if den == 0:
        return 1.0 if num == 0 else None
    return num / den
