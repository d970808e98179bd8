"""The model lifecycle on a generated lake: train, register, promote, score, bring your own model."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from xml.etree import ElementTree

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from lakehouse.config import load_tables
from lakehouse.errors import PipelineError
from lakehouse.features.labels import fraud_labels
from lakehouse.features.payments import age_band, customers_as_of, transaction_features
from lakehouse.io import delta, delta_log
from lakehouse.ml import registry
from lakehouse.ml.card import write_card
from lakehouse.ml.dataset import export_sample, training_set
from lakehouse.ml.jobs import monitor_main, score_main
from lakehouse.ml.lifecycle import _candidate, min_ratio, train_and_register
from lakehouse.ml.monitor import fairness
from lakehouse.ml.monitoring import BASELINE_ARTIFACT, alerts_path, metrics_path, monitor
from lakehouse.ml.monitoring import message as alert_message
from lakehouse.ml.score import load, predictions_path, score, score_new
from lakehouse.ml.spec import ModelSpec, load_model_spec
from lakehouse.ml.train import auc, fit
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.runlog import RunLog, new_run_id
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for
from tests.integration import test_pipeline as tp
from tests.integration.helpers import FOR_THE_MODEL, sigkilled

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclasses.dataclass
class MlLake:
    built: tp.Built
    spec: ModelSpec


@pytest.fixture(scope="module")
def ml(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlLake]:
    root = tmp_path_factory.mktemp("ml")
    env = env_for(root)
    b = tp.Built(root, env, Lake(env, load_tables(CONF)), GeneratorParams(scale=0.05, days=40), tables=FOR_THE_MODEL)
    generate_raw_zone(spark, b.params, env.paths.raw, env.paths.truth)
    tp.run_pipeline(b)
    # a short lake: labels mature after 10 days, the first 5 days are warm-up, the last 10 of the
    # 25 labelled days validate
    spec = dataclasses.replace(load_model_spec(CONF, "fraud"), maturity_days=10, warmup_days=5, training_days=30, validation_days=10)
    registry.configure(env)
    yield MlLake(b, spec)


def _conf_with_spec(spec: ModelSpec, tmp_path: Path) -> str:
    """A copy of conf/ whose model file has the test's shorter label maturity (for a job run in
    its own process, which reads the model from its files)."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    model = conf / "models" / "fraud.yaml"
    text = model.read_text()
    assert "maturity_days: 30" in text
    model.write_text(text.replace("maturity_days: 30", f"maturity_days: {spec.maturity_days}"))
    return str(conf)


def _runlog(spark: SparkSession, lake: Lake) -> RunLog:
    r = RunLog(spark, lake, "score", new_run_id(), date.today())
    r.begin()
    return r


def test_training_registers_a_champion_that_finds_the_signal(spark: SparkSession, ml: MlLake) -> None:
    report = train_and_register(spark, ml.built.lake, ml.spec)
    print(report.summary())
    assert (report.version, report.promoted, report.champion_before) == ("1", True, None)
    assert str(registry.version_of(ml.spec.name, "champion").version) == "1"
    assert str(registry.version_of(ml.spec.name, "challenger").version) == "1"
    # what MLflow holds is what was measured, with the data's table versions and the feature list
    run = registry.client().get_run(report.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(report.metrics["roc_auc"])
    lake = ml.built.lake
    for name in ("silver.transactions", "gold.customer_features", "gold.merchant_features"):
        assert run.data.tags[f"table_version.{name}"] == str(delta.version(spark, lake.path(name)))
    assert run.data.params["features"] == ",".join(ml.spec.features)
    assert run.data.tags["git_commit"]
    # the model finds the generator's signal: near the oracle's AUC on the same validation rows
    assert report.counts["validate_positives"] >= 20, report.counts
    assert report.oracle_auc is not None and report.model_auc_on_oracle_rows is not None
    assert report.model_auc_on_oracle_rows >= 0.8 * report.oracle_auc, report.summary()
    # labels respect maturity: validation ends at the maturity line, midnight of the day maturity_days
    # before the lake's latest payment; training starts training_days before it, after the warm-up
    # (UTC days: the window is printed with its offset)
    row = spark.read.format("delta").load(lake.path("silver.transactions")).agg(F.min("event_time"), F.max("event_time")).first()
    first, last = (t.astimezone(timezone.utc) for t in row)
    line = datetime.combine((last - timedelta(days=ml.spec.maturity_days)).date(), time(), timezone.utc)
    warm = datetime.combine(first.date(), time(), timezone.utc) + timedelta(days=ml.spec.warmup_days)
    start = max(line - timedelta(days=ml.spec.training_days), warm)
    window = {"as_of": last, "start": start, "split": line - timedelta(days=ml.spec.validation_days), "end": line}
    assert report.window == {k: v.isoformat(sep=" ") for k, v in window.items()}


def test_a_challenger_that_does_not_beat_the_champion_stays_challenger(spark: SparkSession, ml: MlLake) -> None:
    # same data, same settings: the same model up to the order Spark sums the gradients in (the
    # AUC moves in the fifth decimal), far inside the promotion margin
    report = train_and_register(spark, ml.built.lake, ml.spec)
    assert (report.version, report.champion_before, report.promoted) == ("2", "1", False)
    assert report.champion_auc == pytest.approx(report.metrics["roc_auc"], abs=ml.spec.promotion_margin / 10)
    assert (str(registry.version_of(ml.spec.name, "champion").version), str(registry.version_of(ml.spec.name, "challenger").version)) == (
        "1",
        "2",
    )
    registry.promote(ml.spec.name, "2")  # the explicit command
    assert str(registry.version_of(ml.spec.name, "champion").version) == "2"
    with pytest.raises(PipelineError, match="has no version 99"):
        registry.promote(ml.spec.name, "99")
    registry.promote(ml.spec.name, "1")


def test_batch_scoring_scores_every_payment_once(spark: SparkSession, ml: MlLake) -> None:
    lake = ml.built.lake
    result = score_new(spark, lake, ml.spec, _runlog(spark, lake))
    tx = spark.read.format("delta").load(lake.path("silver.transactions"))
    n_tx = tx.count()
    assert (result.version, result.scored) == ("1", n_tx)
    path = predictions_path(lake, ml.spec)
    preds = spark.read.format("delta").load(path)
    # the table holds what the scoring function gives for those payments
    frames = {
        n: spark.read.format("delta").load(lake.path(n)) for n in ("gold.customer_features", "gold.merchant_features", "silver.customers")
    }
    direct = score(
        load(ml.spec),
        transaction_features(tx, frames["gold.customer_features"], frames["gold.merchant_features"], frames["silver.customers"]),
    )
    assert_df_equality(
        preds.select("transaction_id", "score", "decision"),
        direct.select("transaction_id", "score", "decision"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    row = preds.first()
    assert (row["model_name"], row["model_version"], row["threshold"]) == (ml.spec.name, "1", ml.spec.threshold)
    assert row["feature_versions"]["gold.customer_features"] == delta.version(spark, lake.path("gold.customer_features"))
    # again: nothing new, nothing scored, no new table version
    before = delta.version(spark, path)
    again = score_new(spark, lake, ml.spec, _runlog(spark, lake))
    assert (again.scored, delta.version(spark, path)) == (0, before)
    # a new day: only its payments are scored (through the job's entry point)
    ml.built.params = dataclasses.replace(ml.built.params, days=ml.built.params.days + 1)
    generate_raw_zone(spark, ml.built.params, ml.built.env.paths.raw, ml.built.env.paths.truth)
    tp.run_pipeline(ml.built)
    n_before, v_before = preds.count(), delta.version(spark, path)
    # killed right after its commit, before the run log: the rerun finds the commit's stamp and
    # scores nothing twice (a crash here once meant scoring the day again from the run log)
    name = f"ml.{ml.spec.name}_predictions"
    sigkilled(f"score.after_write:{name}", "score", "--conf", f"lake_root={ml.built.root}")
    wrote = delta_log.latest_stamp(spark, path, name)
    assert wrote.version == v_before + 1  # (then auto compaction may commit too)
    v_killed, killed_run = delta.version(spark, path), wrote.stamp.run_id
    assert score_main(["--conf", f"lake_root={ml.built.root}"]) == 0
    assert delta.version(spark, path) == v_killed  # the rerun had nothing left to write
    after = spark.read.format("delta").load(path)
    new_tx = spark.read.format("delta").load(lake.path("silver.transactions")).count()
    assert (n_before, after.count()) == (n_tx, new_tx)
    assert after.groupBy("transaction_id").count().where("count > 1").count() == 0
    # the run that wrote that commit is recorded as abandoned (by the rerun, which took its lease over)
    log = spark.read.format("delta").load(lake.ops_path("run_log")).where(F.col("run_id") == killed_run).where("table = '*'")
    assert sorted(r.status for r in log.collect()) == ["abandoned", "started"]


def test_a_scikit_learn_model_from_a_notebook_is_scored_by_the_batch_job(spark: SparkSession, ml: MlLake, tmp_path: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lake = ml.built.lake
    out = str(tmp_path / "sample")
    rows, _ = export_sample(spark, lake, ml.spec, out, fraction=0.5)
    # --- the data scientist's notebook ---
    sample = pd.read_parquet(out)
    assert len(sample) == rows and set(ml.spec.features) <= set(sample.columns) and sample["label"].sum() > 0
    x, y = sample[list(ml.spec.features)], sample["label"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced")).fit(x, y)
    byo = dataclasses.replace(ml.spec, name="payments_fraud_sklearn")
    with mlflow.start_run(experiment_id=registry.experiment_id(byo.name, f"{ml.built.root}/_mlflow/artifacts")):
        mlflow.sklearn.log_model(
            clf,
            artifact_path="model",
            signature=infer_signature(x, clf.predict_proba(x)),
            pyfunc_predict_fn="predict_proba",
            registered_model_name=byo.name,
        )
    # --- production: promote it and let the batch job score with it ---
    registry.promote(byo.name, "1")
    result = score_new(spark, lake, byo, _runlog(spark, lake))
    tx = spark.read.format("delta").load(lake.path("silver.transactions"))
    assert (result.version, result.scored) == ("1", tx.count())
    preds = spark.read.format("delta").load(predictions_path(lake, byo)).select("transaction_id", "score").toPandas()
    frames = {
        n: spark.read.format("delta").load(lake.path(n)) for n in ("gold.customer_features", "gold.merchant_features", "silver.customers")
    }
    inputs = transaction_features(tx, frames["gold.customer_features"], frames["gold.merchant_features"], frames["silver.customers"])
    local = inputs.select("transaction_id", *ml.spec.features).toPandas()
    local["expected"] = clf.predict_proba(local[list(ml.spec.features)])[:, 1]
    both = preds.merge(local[["transaction_id", "expected"]], on="transaction_id")
    assert len(both) == len(preds) == tx.count()
    assert (both["score"] - both["expected"]).abs().max() < 1e-9


def test_reweighing_records_the_trade_off_with_and_without(spark: SparkSession, ml: MlLake) -> None:
    report = train_and_register(spark, ml.built.lake, ml.spec, reweigh=("age_band",), auto_promote=False)
    print(report.summary())
    assert report.reweighed == ("age_band",) and report.promoted is False and report.tradeoff is not None
    with_, without = report.tradeoff["with reweighing"], report.tradeoff["without"]
    assert with_["roc_auc"] == pytest.approx(report.metrics["roc_auc"])
    # "without" is the plain model fitted on the same rows (its AUC up to summation order)
    frame = training_set(spark, ml.built.lake, ml.spec).frame.persist()
    try:
        counts: dict[str, int] = {}
        for r in frame.groupBy("split").agg(F.count("*").alias("rows"), F.sum("label").alias("positives")).collect():
            counts |= {r["split"]: r["rows"], f"{r['split']}_positives": r["positives"]}
        assert report.counts == counts  # rows and frauds per split, as the training set holds them
        plain = _candidate(ml.spec, fit(frame.where("split = 'train'"), ml.spec, ()))
        plain_scored = score(plain, frame.where("split = 'validate'")).persist()
        assert without["roc_auc"] == pytest.approx(auc(plain_scored, "score"), abs=2e-4)
        assert without["roc_auc"] != with_["roc_auc"]  # reweighing changed the model
        for g in ml.spec.fairness_groups:
            assert with_[g] == pytest.approx(min_ratio(report.fairness[g]))
            # the lowest ratio of the plain model's decisions on the validation rows; refitted here, its
            # scores may differ from the job's in the last digits and a payment scored at the threshold
            # flip, which moves a ratio by about 1 / (the group's payments): well within 0.01
            plain_low = min_ratio(fairness(plain_scored, g, bound=ml.spec.fairness_min_ratio))
            if plain_low is None:
                assert without[g] is None, (g, without[g])
            else:
                assert without[g] == pytest.approx(plain_low, abs=0.01), g
        plain_scored.unpersist()
    finally:
        frame.unpersist()
    run = registry.client().get_run(report.run_id)
    assert run.data.params["reweigh"] == "age_band"
    assert run.data.metrics["without_reweighing.roc_auc"] == pytest.approx(without["roc_auc"])
    assert run.data.metrics["fairness.age_band.min_ratio"] == pytest.approx(with_["age_band"])
    assert str(registry.version_of(ml.spec.name, "champion").version) == "1"


def _labelled_predictions(spark: SparkSession, ml: MlLake, start: date, end: date, clock: datetime):  # noqa: ANN202
    lake = ml.built.lake
    tx = spark.read.format("delta").load(lake.path("silver.transactions")).where(F.col("event_date").between(start, end))
    cb = spark.read.format("delta").load(lake.path("silver.chargebacks"))
    preds = spark.read.format("delta").load(predictions_path(lake, ml.spec)).where("model_version = '1'")
    labelled = fraud_labels(tx, cb, clock, ml.spec.maturity_days, ml.spec.fraud_reasons).join(
        preds.select("transaction_id", "score", "decision"), "transaction_id"
    )
    customers = spark.read.format("delta").load(lake.path("silver.customers"))
    return customers_as_of(labelled, customers).withColumn("age_band", age_band(F.col("birth_date"), F.col("event_time")))


def score_drift(base: Mapping[str, object], rows: Sequence[Row], bins: int = 10) -> dict[tuple[date, str], float]:
    """Per day of ``rows`` (``event_date``, ``score``): PSI over the baseline's deciles and KS over
    its percentiles (an empty bin's share counted as 0.0001), from the baseline profile's score
    quantiles and counts."""
    col = base["columns"]["score"]  # type: ignore[index]
    q, b_fine = col["quantiles"], col["counts"]
    fine = sorted(set(q))
    step = int(base["fine"]) // bins  # type: ignore[call-overload]
    deciles = sorted({q[k * step - 1] for k in range(1, bins)})
    b_coarse = [0] * (len(deciles) + 1)
    for b, n in enumerate(b_fine):  # fine bin b holds [fine[b - 1], fine[b])
        b_coarse[0 if b == 0 else bisect.bisect_right(deciles, fine[b - 1])] += n
    by_day: dict[date, list[float]] = defaultdict(list)
    for r in rows:
        by_day[r["event_date"]].append(r["score"])

    def shares(counts: list[int]) -> list[float]:
        return [n / sum(counts) for n in counts]

    out = {}
    for day, scores in by_day.items():
        c_fine, c_coarse = [0] * (len(fine) + 1), [0] * (len(deciles) + 1)
        for s in scores:  # a score on an edge counts in the bin above it
            c_fine[bisect.bisect_right(fine, s)] += 1
            c_coarse[bisect.bisect_right(deciles, s)] += 1
        e, a = [max(x, 1e-4) for x in shares(b_coarse)], [max(x, 1e-4) for x in shares(c_coarse)]
        out[(day, "psi")] = sum((y - x) * math.log(y / x) for x, y in zip(e, a, strict=True))
        cum_e, cum_a = accumulate(shares(b_fine)), accumulate(shares(c_fine))
        out[(day, "ks")] = max(abs(x - y) for x, y in zip(cum_e, cum_a, strict=True))
    return out


def test_monitoring_writes_drift_performance_fairness_and_alerts_once(spark: SparkSession, ml: MlLake, tmp_path: Path) -> None:
    import mlflow

    lake = ml.built.lake
    report = monitor(spark, lake, ml.spec, days=7)
    print(report.summary())
    assert report.version == "1"
    metrics = spark.read.format("delta").load(metrics_path(lake, ml.spec))
    d0, d1 = report.drift_days
    m0, m1 = report.matured_days
    assert (d1 - d0, m1 - m0, d1 - m1) == (timedelta(days=6), timedelta(days=6), timedelta(days=ml.spec.maturity_days + 1))
    # drift: every day, every feature and the score, PSI and KS; the score's rows are the payments scored that day
    drift_rows = metrics.where("kind = 'drift'")
    assert drift_rows.count() == 7 * (len(ml.spec.features) + 1) * 2
    preds = spark.read.format("delta").load(predictions_path(lake, ml.spec)).where("model_version = '1'")
    assert_df_equality(
        drift_rows.where("subject = 'score' AND metric = 'psi'").select(F.col("period_end").alias("event_date"), "rows"),
        preds.where(F.col("event_date").between(d0, d1)).groupBy("event_date").count().withColumnRenamed("count", "rows"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    drift_all = [r.asDict() for r in drift_rows.collect()]
    assert [r for r in drift_all if r["value"] is None] == []
    # the score's PSI and KS per day, recomputed here from the day's scores and the training
    # baseline the champion keeps in MLflow
    champion_run = registry.version_of(ml.spec.name, "champion").tags["run_id"]
    base = mlflow.artifacts.load_dict(f"runs:/{champion_run}/{BASELINE_ARTIFACT}")
    scores = preds.where(F.col("event_date").between(d0, d1)).select("event_date", "score").collect()
    got = {(r["period_end"], r["metric"]): r["value"] for r in drift_all if r["subject"] == "score"}
    assert got == pytest.approx(score_drift(base, scores), abs=1e-12)
    # realized performance over the matured days: what the predictions and labels say, computed here directly
    labelled = _labelled_predictions(spark, ml, m0, m1, report.clock)
    perf = {r["metric"]: r for r in metrics.where("kind = 'performance' AND subject = 'period'").collect()}
    assert perf["roc_auc"]["rows"] == labelled.count() > 0
    # exact (MLlib's evaluator bins the scores into 1,000 thresholds: it differs in the 5th decimal)
    local = labelled.select("score", "label").toPandas()
    assert perf["roc_auc"]["value"] == pytest.approx(roc_auc_score(local["label"], local["score"]), abs=1e-12)
    counts = labelled.agg(
        F.sum(F.when(F.col("decision") == "decline", 1).otherwise(0)).alias("flagged"),
        F.sum(F.when((F.col("decision") == "decline") & (F.col("label") == 1), 1).otherwise(0)).alias("tp"),
        F.sum("label").alias("positives"),
    ).first()
    assert perf["precision"]["value"] == pytest.approx(counts["tp"] / counts["flagged"])
    assert perf["recall"]["value"] == pytest.approx(counts["tp"] / counts["positives"])
    assert metrics.where("kind = 'performance' AND subject = 'day'").select("period_end").distinct().count() == 7
    # fairness per group over the matured days, as the fairness function gives it
    for g in ml.spec.fairness_groups:
        for t in fairness(labelled, g, bound=ml.spec.fairness_min_ratio):
            got = {
                r["metric"]: r for r in metrics.where(F.col("kind") == "fairness").where(F.col("subject") == f"{g}={t['group']}").collect()
            }
            assert got["decline_rate"]["value"] == pytest.approx(t["decline_rate"])
            assert (got["approval_ratio"]["alert"], got["approval_ratio"]["rows"]) == (
                t["approval_ratio"] is not None and t["approval_ratio"] < ml.spec.fairness_min_ratio,
                t["rows"],
            )
    # alerts are the metric rows over a bound, each with a sentence
    alerts = spark.read.format("delta").load(alerts_path(lake, ml.spec))
    assert_df_equality(alerts.drop("message"), metrics.where("alert"), ignore_row_order=True, ignore_nullable=True)
    alert_rows = alerts.collect()
    assert len(alert_rows) == len(report.alerts)
    for a in alert_rows:
        assert a["message"] == alert_message(a.asDict()), a
    # the model card: what MLflow and the monitoring tables hold (this run's days), with its charts
    uri = write_card(spark, lake, ml.spec, out_dir=str(tmp_path / "reports"))
    text = Path(uri).read_text()
    assert text.startswith(f"# Model card: {ml.spec.name}, version 1")
    for f in ml.spec.features:
        assert f"`{f}`" in text
    fair = registry.client().get_run(registry.version_of(ml.spec.name, "champion").tags["run_id"])
    assert fair.data.tags["git_commit"] in text
    for name in ("silver.transactions", "gold.customer_features"):
        assert f"| {name} | {fair.data.tags['table_version.' + name]} |" in text
        assert f"--pin {name}={fair.data.tags['table_version.' + name]}" in text  # the reproduce command reads the same versions
    assert f"Drift over {d0} .. {d1} (7 day(s))" in text
    lines = {}
    for chart in ("reliability", "psi"):
        svg = ElementTree.parse(tmp_path / "reports" / f"{ml.spec.name}_v1_{chart}.svg").getroot()
        lines[chart] = [len(p.get("points").split()) for p in svg.findall("{http://www.w3.org/2000/svg}polyline")]
        assert f"({ml.spec.name}_v1_{chart}.svg)" in text
    # reliability: one line through the champion's calibration bins
    assert lines["reliability"] == [len(mlflow.artifacts.load_dict(f"runs:/{champion_run}/calibration.json")["bins"])]
    # PSI per day: a line over the 7 days for each of the 4 features with the highest PSI, and the score
    worst: dict[str, float] = {}
    for r in drift_all:
        if r["metric"] == "psi":
            worst[r["subject"]] = max(worst.get(r["subject"], 0.0), r["value"])
    assert lines["psi"] == [7] * len({*sorted(worst, key=lambda f: -worst[f])[:4], "score"})
    # killed between its two writes while measuring other days (its clock a day earlier), then run
    # again through the job: the days measured again are replaced, not appended, and the alerts
    # are exactly the metrics over a bound, those of the killed run's extra days included
    # (pinned to its version: a frame read by path sees the table as it is when it is evaluated)
    v_metrics = delta.version(spark, metrics_path(lake, ml.spec))
    before = spark.read.format("delta").option("versionAsOf", v_metrics).load(metrics_path(lake, ml.spec)).drop("computed_at")
    conf = _conf_with_spec(ml.spec, tmp_path)
    args = ["--conf-dir", conf, "--conf", f"lake_root={ml.built.root}"]
    v_alerts = delta.version(spark, alerts_path(lake, ml.spec))
    earlier = (report.clock - timedelta(days=1)).isoformat()
    sigkilled(f"monitor.after_metrics:ml.{ml.spec.name}_monitoring", "monitor", *args, "--as-of", earlier)
    assert delta.version(spark, alerts_path(lake, ml.spec)) == v_alerts
    assert monitor_main(args) == 0
    after = spark.read.format("delta").load(metrics_path(lake, ml.spec)).drop("computed_at")
    keys = ["kind", "period_start", "period_end", "subject", "metric"]
    again = after.join(before.select(keys), keys, "left_semi").select(*before.columns)
    assert_df_equality(again, before, ignore_row_order=True, ignore_nullable=True)
    extra = {(r.kind, r.period_end) for r in after.join(before.select(keys), keys, "left_anti").select("kind", "period_end").collect()}
    assert extra == {("drift", d0 - timedelta(days=1)), ("performance", m0 - timedelta(days=1))}
    alerts = spark.read.format("delta").load(alerts_path(lake, ml.spec))
    metrics_now = spark.read.format("delta").load(metrics_path(lake, ml.spec))
    assert_df_equality(alerts.drop("message"), metrics_now.where("alert"), ignore_row_order=True, ignore_nullable=True)
    # a model with no training profile (the notebook's scikit-learn model) gets a clear error
    byo = dataclasses.replace(ml.spec, name="payments_fraud_sklearn")
    with pytest.raises(PipelineError, match="payments_fraud_sklearn version 1 .* has no baseline.json"):
        monitor(spark, lake, byo)


def test_a_training_set_is_rebuilt_from_the_table_versions_it_is_pinned_to(spark: SparkSession, ml: MlLake) -> None:
    # last in the module: it moves silver.transactions on (deletes its last day), then restores it
    lake = ml.built.lake
    path = lake.path("silver.transactions")
    before = training_set(spark, lake, ml.spec)
    v = before.versions["silver.transactions"]
    last_day = spark.read.format("delta").load(path).agg(F.max("event_date")).first()[0]
    DeltaTable.forPath(spark, path).delete(F.col("event_date") == F.lit(last_day))
    try:
        moved = training_set(spark, lake, ml.spec)
        assert (moved.versions["silver.transactions"], moved.window.as_of < before.window.as_of) == (v + 1, True)
        pinned = training_set(spark, lake, ml.spec, pins={"silver.transactions": v})
        # the window follows the pinned table's latest payment, the rows are those of the first build
        assert (pinned.window, pinned.versions) == (before.window, before.versions)
        cols = ["transaction_id", "split", "label", *ml.spec.features]
        assert_df_equality(pinned.frame.select(cols), before.frame.select(cols), ignore_row_order=True, ignore_nullable=True)
        with pytest.raises(
            PipelineError, match=rf"silver.transactions: pinned at version {v + 5}, but the table at .* is at version {v + 1}"
        ):
            training_set(spark, lake, ml.spec, pins={"silver.transactions": v + 5})
        with pytest.raises(PipelineError, match=r"--pin names silver\.nope: not an input here"):
            training_set(spark, lake, ml.spec, pins={"silver.nope": 1})
    finally:
        DeltaTable.forPath(spark, path).restoreToVersion(v)
