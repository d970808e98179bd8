"""Model spec, promotion rule, class weights and reweighing, evaluation metrics."""

from __future__ import annotations

import math
import random
from datetime import date

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from lakehouse.errors import ConfigError, PipelineError
from lakehouse.ml.monitor import auc_by, coarsen, drift, fairness, ks, psi
from lakehouse.ml.monitoring import message as alert_message
from lakehouse.ml.monitoring import shown
from lakehouse.ml.registry import should_promote
from lakehouse.ml.score import probability
from lakehouse.ml.spec import load_model_spec, parse_model_spec
from lakehouse.ml.train import auc, class_weights, evaluate, reweighing
from tests.conftest import CONF


def test_the_model_declaration_loads_and_is_checked() -> None:
    spec = load_model_spec(CONF, "fraud")
    assert (spec.name, spec.maturity_days, spec.classifier, spec.fairness_min_ratio) == ("payments_fraud", 30, "logistic", 0.8)
    data = yaml.safe_load(open(spec.file).read())
    for change, key, message in [
        ({"features": ["payment_amount", "zodiac_sign"]}, "features[1]", "not a computed feature"),
        ({"training": dict(data["training"], classifier="forest")}, "training.classifier", "not one of gbt, logistic"),
        ({"training": dict(data["training"], validation_days=90)}, "training.validation_days", "expected a whole number in [1, 89]"),
        ({"decision": dict(data["decision"], threshold=1.5)}, "decision.threshold", "in [0, 1]"),
        ({"fairness": dict(data["fairness"], groups=["religion"])}, "fairness.groups[0]", "not a group column"),
        ({"label": {"maturity_days": 45}}, "label.fraud_reasons", "required key is missing"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_model_spec(dict(data, **change), spec.file)
        assert err.value.key == key and message in str(err.value), (change, str(err.value))
    with pytest.raises(ConfigError, match=r"no such model declaration \(known: fraud\)"):
        load_model_spec(CONF, "churn")


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [(0.90, None, 0.01, True), (0.905, 0.90, 0.01, False), (0.91, 0.90, 0.01, True), (0.95, 0.90, 0.0, True), (0.89, 0.90, 0.0, False)],
)
def test_a_challenger_is_promoted_only_when_it_beats_the_champion_by_the_margin(
    challenger: float, champion: float | None, margin: float, promote: bool
) -> None:
    assert should_promote(challenger, champion, margin) is promote


def test_class_weights_balance_the_classes_and_name_a_missing_class(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1,)] * 2 + [(0,)] * 8, "label int")
    w_pos, w_neg, counts = class_weights(df)
    assert (w_pos, w_neg, counts) == (2.5, 0.625, {"positives": 2, "negatives": 8})
    assert w_pos * 2 == w_neg * 8  # each class weighs half
    with pytest.raises(PipelineError, match="0 fraud and 8 other"):
        class_weights(df.where("label = 0"))


def test_reweighing_makes_label_and_group_independent(spark: SparkSession) -> None:
    # group A: 1 fraud of 4; group B: 3 of 6 -> P(A)=0.4, P(fraud)=0.4
    rows = [("A", 1)] + [("A", 0)] * 3 + [("B", 1)] * 3 + [("B", 0)] * 3
    df = spark.createDataFrame(rows, "age_band string, label int")
    w = df.withColumn("w", reweighing(df, ["age_band"]))
    got = {(r["age_band"], r["label"]): round(r["w"], 6) for r in w.distinct().collect()}
    assert got == {("A", 1): 1.6, ("A", 0): 0.8, ("B", 1): 0.8, ("B", 0): 1.2}  # e.g. 0.4*0.4/0.1
    # weighted, the fraud rate is the same in both groups
    rates = w.groupBy("age_band").agg((F.sum(F.col("w") * F.col("label")) / F.sum("w")).alias("r")).collect()
    assert {r["age_band"]: round(r["r"], 6) for r in rates} == {"A": 0.4, "B": 0.4}


def test_the_weighting_is_undone_into_a_probability(spark: SparkSession) -> None:
    # trained with positives weighted 4x: learned odds 4x too high; p=0.8 (odds 4) -> odds 1 -> 0.5
    df = spark.createDataFrame([(0.8,), (0.0,), (1.0,)], "p double")
    got = [round(r[0], 6) for r in df.select(probability(F.col("p"), 4.0)).collect()]
    assert got == [0.5, 0.0, 1.0]


def test_evaluation_metrics_on_a_constructed_scoring(spark: SparkSession) -> None:
    rows = [(0.9, 1), (0.8, 1), (0.7, 0), (0.4, 1), (0.2, 0), (0.1, 0), (0.1, 0), (0.05, 0)]
    m = evaluate(spark.createDataFrame(rows, "score double, label int"), threshold=0.5)
    # 3 flagged (0.9, 0.8, 0.7), 2 of them fraud; 3 frauds in all
    assert (m["precision"], m["recall"], m["rows"], m["positives"]) == (2 / 3, 2 / 3, 8.0, 3.0)
    # pairs (fraud, other) ranked right: 0.9 and 0.8 beat all 5; 0.4 beats 4 of 5 -> 14 / 15
    assert m["roc_auc"] == pytest.approx(14 / 15)
    brier = sum((s - y) ** 2 for s, y in rows) / len(rows)
    assert m["brier"] == pytest.approx(brier)
    # each bin (tenths) holds one score value, so the calibration error is the mean |score - label|
    assert m["ece"] == pytest.approx(2.05 / 8)


# ---------------------------------------------------------------------------------------------
# drift and fairness
# ---------------------------------------------------------------------------------------------


def test_psi_and_ks_of_known_histograms() -> None:
    base = [25, 25, 25, 25]
    assert (psi(base, base), ks(base, base)) == (0.0, 0.0)
    moved = [10, 40, 25, 25]  # 0.15 moves from the first quarter to the second
    assert psi(base, moved) == pytest.approx(-0.15 * math.log(0.4) + 0.15 * math.log(1.6))
    assert ks(base, moved) == pytest.approx(0.15)
    assert psi([1, 0], [0, 1]) == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))  # empty bins stay finite


def test_drift_per_day_against_the_baseline_deciles(spark: SparkSession) -> None:
    baseline = spark.createDataFrame([(float(v),) for v in range(1000)], "x double")
    same = [(date(2026, 1, 1), float(v)) for v in range(1000)]
    shifted = [(date(2026, 1, 2), float(v)) for v in range(500, 1500)]  # half beyond the baseline's top
    current = spark.createDataFrame(same + shifted, "day date, x double")
    got = {r["day"]: r for r in drift(baseline, current, ["x"], "day")}
    assert got[date(2026, 1, 1)]["psi"] == pytest.approx(0.0, abs=1e-3)
    assert got[date(2026, 1, 1)]["ks"] == pytest.approx(0.0, abs=0.002)
    # five empty deciles, four unchanged, the top one holding 60%
    expected = 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (0.6 - 0.1) * math.log(6)
    assert got[date(2026, 1, 2)]["psi"] == pytest.approx(expected, rel=0.02)
    assert got[date(2026, 1, 2)]["ks"] == pytest.approx(0.5, abs=0.002)
    assert (got[date(2026, 1, 2)]["rows"], got[date(2026, 1, 2)]["feature"]) == (1000, "x")


def test_coarse_histogram_from_the_fine_one() -> None:
    fine = [1.0, 2.0, 3.0, 4.0]  # five fine bins
    assert coarsen([1, 2, 3, 4, 5], fine, [2.0, 4.0]) == [1 + 2, 3 + 4, 5]
    assert coarsen([1, 2, 3, 4, 5], fine, []) == [15]


def test_auc_per_day_is_the_evaluators_auc_ties_included(spark: SparkSession) -> None:
    # day 1: scores with ties across the classes; day 2: perfectly separated; day 3: one class only
    day1 = [(1, 0.1, 0), (1, 0.4, 1), (1, 0.4, 0), (1, 0.4, 0), (1, 0.7, 1), (1, 0.2, 1), (1, 0.9, 0), (1, 0.9, 1)]
    day2 = [(2, 0.1, 0), (2, 0.2, 0), (2, 0.8, 1)]
    day3 = [(3, 0.5, 0), (3, 0.6, 0)]
    df = spark.createDataFrame(day1 + day2 + day3, "day int, score double, label int")
    got = auc_by(df, "day")
    assert got[1]["roc_auc"] == pytest.approx(auc(df.where("day = 1"), "score"), abs=1e-12)
    # by hand: 4 fraud x 4 legit = 16 pairs; fraud ranks above in 8 pairs and ties in 3
    assert got[1]["roc_auc"] == pytest.approx((8 + 3 / 2) / 16)
    assert (got[2]["roc_auc"], got[2]["rows"], got[2]["positives"]) == (1.0, 3, 1)
    assert (got[3]["roc_auc"], got[3]["positives"]) == (None, 0)


def test_auc_per_group_is_exact_across_score_ranges(spark: SparkSession) -> None:
    # scores on a coarse grid (many ties within and across classes), split over a few ranges:
    # each group's AUC is what scikit-learn computes from all of its rows at once
    rnd = random.Random(3)
    rows = []
    for g in ("a", "b", None):
        for _ in range(600):
            y = int(rnd.random() < 0.2)
            rows.append((g, round(min(1.0, max(0.0, rnd.gauss(0.4 + 0.2 * y, 0.2))), 2), y))
    df = spark.createDataFrame(rows, "g string, score double, label int")
    got = auc_by(df, "g", buckets=5)
    for g in ("a", "b", None):
        ys, ss = zip(*[(y, s) for k, s, y in rows if k == g], strict=True)
        assert got[g]["roc_auc"] == pytest.approx(roc_auc_score(ys, ss), abs=1e-12)
        assert (got[g]["rows"], got[g]["positives"]) == (600, sum(ys))
    period = auc_by(df.withColumn("all", F.lit("period")), "all", buckets=7)["period"]["roc_auc"]
    assert period == pytest.approx(roc_auc_score([r[2] for r in rows], [r[1] for r in rows]), abs=1e-12)


def test_fairness_rates_and_ratios_on_a_constructed_table(spark: SparkSession) -> None:
    # group A: 10 legit (1 declined), 5 fraud (4 declined); group B: 10 legit (3 declined), 5 fraud (4 declined)
    rows = (
        [("A", 0, "decline")] * 1
        + [("A", 0, "approve")] * 9
        + [("A", 1, "decline")] * 4
        + [("A", 1, "approve")] * 1
        + [("B", 0, "decline")] * 3
        + [("B", 0, "approve")] * 7
        + [("B", 1, "decline")] * 4
        + [("B", 1, "approve")] * 1
    )
    df = spark.createDataFrame(rows, "age_band string, label int, decision string")
    table = fairness(df, "age_band", bound=0.8, min_support=5)
    a, b = table
    assert (a["group"], a["rows"], a["decline_rate"], a["fpr"], a["tpr"]) == ("A", 15, 5 / 15, 0.1, 0.8)
    assert (b["decline_rate"], b["fpr"], b["tpr"]) == (7 / 15, 0.3, 0.8)
    assert (a["approval_ratio"], a["tnr_ratio"], a["tpr_ratio"], a["alert"]) == (1.0, 1.0, 1.0, False)
    # approval 8/15 vs 10/15: 0.8, on the bound; legitimate payments approved 0.7 vs 0.9: under it
    assert b["approval_ratio"] == pytest.approx(0.8) and b["tnr_ratio"] == pytest.approx(7 / 9)
    assert (b["tpr_ratio"], b["alert"]) == (1.0, True)
    # with 5 frauds a group's TPR is too thin to compare at a support of 6: rates kept, no TPR ratio
    thin = {t["group"]: t for t in fairness(df, "age_band", bound=0.8, min_support=6)}
    assert (thin["B"]["tpr"], thin["B"]["tpr_ratio"], thin["B"]["tnr_ratio"]) == (0.8, None, pytest.approx(7 / 9))
    # one group with support is compared with nobody: no ratio of 1.0 to itself, no alert
    lone = fairness(df.union(spark.createDataFrame([("C", 1, "decline")] * 6, df.schema)), "age_band", bound=0.8, min_support=6)
    assert [(t["group"], t["tpr_ratio"]) for t in lone] == [("A", None), ("B", None), ("C", None)]
    assert [t["tnr_ratio"] is None for t in lone] == [False, False, True]


def test_an_alerts_value_is_shown_on_its_side_of_the_bound() -> None:
    assert (shown(0.7996, 0.8), shown(0.75, 0.8), shown(0.1004, 0.1, 3), shown(0.2345, 0.2, 3)) == ("0.7996", "0.75", "0.1004", "0.234")
    m = {"kind": "fairness", "subject": "age_band=<25", "metric": "tpr_ratio", "value": 0.79961, "bound": 0.8, "rows": 15877}
    when = {"period_start": date(2026, 2, 22), "period_end": date(2026, 2, 28)}
    assert alert_message({**m, **when}).startswith("fairness: age_band=<25 tpr_ratio 0.7996 < 0.8 over 2026-02-22 .. 2026-02-28")
