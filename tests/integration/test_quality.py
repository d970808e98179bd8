"""Quality rules on a real pipeline run: recall/precision against the defect ledger, metrics,
constraints, and a fail rule that stops a run with nothing committed."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import EnvConfig, load_tables
from lakehouse.errors import PipelineError, QualityError
from lakehouse.io import delta
from lakehouse.payments.defects import EXPECTED_RULES, format_score, score
from lakehouse.payments.generator import CUSTOMER_DEFECT_RATE, TXN_DEFECTS, GeneratorParams
from lakehouse.pipeline import profile as profile_job
from lakehouse.pipeline import replay, silver
from lakehouse.pipeline.generate import generate_raw_zone, read_manifests
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.pipeline.summary import reconcile
from lakehouse.quality.expectations import parse_expectations
from lakehouse.quality.report import write_report
from lakehouse.runlog import RunLog, new_run_id
from lakehouse.tables import Lake
from tests.conftest import CONF, env_for
from tests.integration.helpers import versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Lakehouse:
    root: Path
    env: EnvConfig
    lake: Lake
    params: GeneratorParams


def run_pipeline(lh: Lakehouse, *args: str) -> None:
    assert pipeline_main(["--conf", f"lake_root={lh.root}", "--no-summary", *args]) == 0


@pytest.fixture(scope="module")
def lh(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lakehouse]:
    root = tmp_path_factory.mktemp("quality-lake")
    env = env_for(root)
    out = Lakehouse(root, env, Lake(env, load_tables(CONF)), GeneratorParams(scale=0.01, days=4))
    generate_raw_zone(spark, out.params, env.paths.raw, env.paths.truth)
    run_pipeline(out)
    yield out


# generator.chargeback_records: a disputed payment's acquirer line is also sent broken (amount
# "-") for this share of chargebacks (a literal there, not a named rate)
CHARGEBACK_DEFECT_RATE = 0.01
# Kinds the generator injects a fixed number of times, whatever the draw (see expected_defects).
FIXED_COUNT_KINDS = frozenset(k for k in EXPECTED_RULES if k[0] in ("customers", "merchants"))


def expected_defects(spark: SparkSession, lh: Lakehouse) -> dict[tuple[str, str], float]:
    """How many records of each defect kind the generator injects into this lake: the expected
    count for kinds drawn at a rate (rate x base records, from the day manifests), the exact count
    for kinds injected a fixed number of times."""
    tx_base = cb_base = 0
    for m in read_manifests(spark, lh.env.paths.raw).values():
        tx, cb = m["sources"]["transactions"]["expected"], m["sources"]["chargebacks"]["expected"]
        tx_base += tx["landed"] + tx["quarantined"]  # a defect replaces a base payment: clean + defective
        cb_base += cb["landed"]  # a broken chargeback line is an extra copy of a clean one
    n_bad = max(1, round(lh.params.customers * CUSTOMER_DEFECT_RATE))  # per kind, on the initial export
    return {
        **{("transactions", kind): rate * tx_base for kind, rate in TXN_DEFECTS},
        **{("customers", kind): float(n_bad) for kind in ("missing_required_field", "unparseable_date", "malformed_row")},
        ("merchants", "malformed_json"): 1.0,  # merchant_records: the initial export's idx 0 ...
        ("merchants", "missing_required_field"): 1.0,  # ... and idx 1, copied with new ids
        ("chargebacks", "unparseable_amount"): CHARGEBACK_DEFECT_RATE * cb_base,
    }


def test_every_injected_defect_is_caught_by_its_rule_and_no_clean_record_is_quarantined(spark: SparkSession, lh: Lakehouse) -> None:
    rows = score(spark, lh.lake, lh.env.paths.truth)
    print(format_score(rows))
    ledger = {
        (r["source"], r["defect"]): r["count"]
        for r in spark.read.parquet(f"{lh.env.paths.truth}/defects").groupBy("source", "defect").count().collect()
    }
    scored = {(s.source, s.defect): s.injected for s in rows if s.defect != "*"}
    # every kind in the ledger is scored, with all of its records, and has a rule meant for it
    assert scored == ledger
    assert set(scored) <= set(EXPECTED_RULES)
    expected = expected_defects(spark, lh)
    assert set(expected) == set(EXPECTED_RULES)
    # the fixed-count kinds are all there, exactly as many times as injected
    assert {k: ledger.get(k) for k in FIXED_COUNT_KINDS} == {k: expected[k] for k in FIXED_COUNT_KINDS}
    # a kind this small lake lacks is one the rates make rare here (fewer than 5 records expected;
    # at scale 0.01 over 4 days: each transaction kind ~1.3-4, chargebacks' unparseable_amount ~0)
    missing = {k: expected[k] for k in set(EXPECTED_RULES) - set(ledger)}
    assert all(n < 5 for n in missing.values()), missing
    for s in rows:
        if s.defect == "*":
            assert s.false_positives == 0 and s.precision == 1.0, s
        else:
            assert s.injected > 0 and s.caught == s.injected, s


def test_metrics_have_a_row_per_run_table_and_rule_linked_from_the_run_log(spark: SparkSession, lh: Lakehouse) -> None:
    lake = lh.lake
    metrics = spark.read.format("delta").load(lake.ops_path("quality_metrics"))
    runs = spark.read.format("delta").load(lake.ops_path("run_log")).where("table = 'silver.transactions' AND rows_read > 0").collect()
    assert len(runs) == 1
    run = runs[0]
    m = {r.rule: r for r in metrics.where((F.col("run_id") == run.run_id) & (F.col("table") == "silver.transactions")).collect()}
    assert list(m) == [e.name for e in lake.spec("silver.transactions").expectations]
    assert m["well_formed"].evaluated == run.rows_read
    assert sum(r.failed for r in m.values() if r.severity == "quarantine") >= run.rows_quarantined > 0
    assert all(r.passed + r.failed == r.evaluated for r in m.values())
    assert m["currency_known"].failed == m["currency_known"].quarantined > 0
    assert m["volume_as_usual"].level == "table" and m["volume_as_usual"].observed == run.rows_read
    assert sorted(run.rules_broken) == sorted(r.rule for r in m.values() if not r.ok) == sorted(r.rule for r in m.values() if r.failed)
    q = spark.read.format("delta").load(lake.quarantine_path("silver.transactions"))
    by_rule = {r.rule: r.n for r in q.select(F.explode("errors").alias("rule")).groupBy("rule").agg(F.count("*").alias("n")).collect()}
    assert by_rule == {r.rule: r.failed for r in m.values() if r.severity == "quarantine" and r.failed}


def test_constraints_refuse_a_write_that_bypasses_the_jobs(spark: SparkSession, lh: Lakehouse) -> None:
    path = lh.lake.path("silver.transactions")
    stored = spark.read.format("delta").load(path)
    good = stored.limit(1)
    before = delta.version(spark, path)
    props = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    assert "delta.constraints.dq_amount_reporting_positive" in props
    ops = [r.operation for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()]
    assert "ADD CONSTRAINT" not in ops  # the table was created with its constraints, in its first commit
    assert not stored.schema["transaction_id"].nullable and not stored.schema["event_date"].nullable
    with pytest.raises(Exception, match="dq_amount_reporting_positive"):
        good.withColumn("amount_reporting", F.lit(-1).cast("decimal(18,2)")).write.format("delta").mode("append").save(path)
    with pytest.raises(Exception, match="NOT NULL constraint violated for column: transaction_id"):
        good.withColumn("transaction_id", F.lit(None).cast("string")).write.format("delta").mode("append").save(path)
    assert delta.version(spark, path) == before


def test_a_fail_rule_stops_the_run_before_any_commit(spark: SparkSession, lh: Lakehouse) -> None:
    lake = lh.lake
    spec = lake.spec("silver.transactions")
    new_day = lh.params.day(4)
    # The stored rows keep this rule (so it also becomes a CHECK constraint); the new day breaks it.
    strict = parse_expectations(
        [{"name": "no_payments_after", "expr": f"event_date < DATE'{new_day}'", "severity": "fail", "description": "test rule"}],
        spec.file,
        "silver",
    )
    strict_spec = dataclasses.replace(spec, expectations=spec.expectations + strict)
    strict_lake = Lake(lake.env, MappingProxyType({**lake.specs, spec.name: strict_spec}))
    lh.params = dataclasses.replace(lh.params, days=5)
    generate_raw_zone(spark, lh.params, lh.env.paths.raw, lh.env.paths.truth)
    run_pipeline(lh, "--layers", "bronze")
    # the tables transactions reads (FX rates of the new day) first, as the pipeline would
    silver.run(spark, lake, RunLog(spark, lake, "test", new_run_id(), new_day), ["silver.fx_rates", "silver.customers", "silver.merchants"])
    before = versions(spark, lake)
    rows_before = spark.read.format("delta").load(lake.path(spec.name)).count()
    runlog = RunLog(spark, strict_lake, "test", new_run_id(), new_day)
    with pytest.raises(QualityError, match=r"silver.transactions: rule 'no_payments_after' broken by \d+ row\(s\), e.g. \S+") as info:
        silver.build_table(spark, strict_lake, strict_spec, runlog)
    (rule, n, samples) = info.value.failures[0]
    assert rule == "no_payments_after" and n > 0 and len(samples) == 5
    tx = spark.read.format("delta").load(lake.path(spec.name))
    assert tx.where(F.col("transaction_id").isin(samples)).count() == 0 and tx.count() == rows_before
    after = versions(spark, lake)
    assert {k: v for k, v in after.items() if k != spec.name} == {k: v for k, v in before.items() if k != spec.name}
    ops = [
        r.operation for r in spark.sql(f"DESCRIBE HISTORY delta.`{lake.path(spec.name)}`").where(f"version > {before[spec.name]}").collect()
    ]
    assert ops == ["ADD CONSTRAINT"]  # the constraint of the new rule; no data commit
    log_row = spark.read.format("delta").load(lake.ops_path("run_log")).where(f"run_id = '{runlog.run_id}'").first()
    assert log_row.status == "failed" and "no_payments_after" in log_row.error and "no_payments_after" in log_row.rules_broken
    # The rule was the problem, not the data: without it the same bronze rows go through, and
    # the rule's constraint is dropped again.
    run_pipeline(lh, "--layers", "silver")
    props = [r.key for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{lake.path(spec.name)}`").collect()]
    assert "delta.constraints.dq_no_payments_after" not in props
    for r in reconcile(spark, lake):
        assert r.ok, r


def test_replay_moves_records_that_now_pass_into_silver_once(spark: SparkSession, lh: Lakehouse) -> None:
    """Payments processed before their day's FX rates arrived are quarantined (fx_rate_known);
    once the rates are in silver, a replay moves exactly those into silver, and only once."""
    lake = lh.lake
    tx_spec = lake.spec("silver.transactions")
    lh.params = dataclasses.replace(lh.params, days=6)
    generate_raw_zone(spark, lh.params, lh.env.paths.raw, lh.env.paths.truth)
    run_pipeline(lh, "--layers", "bronze")
    run_pipeline(lh, "--layers", "silver", "--tables", "silver.customers,silver.merchants,silver.transactions")  # no FX rates yet
    q_path, tx_path = lake.quarantine_path(tx_spec.name), lake.path(tx_spec.name)

    def ids(path: str) -> list[str]:
        df = spark.read.format("delta").load(path)
        if "record" in df.columns:
            df = df.select(F.get_json_object("record", "$.transaction_id").alias("transaction_id"))
        return [r[0] for r in df.select("transaction_id").collect() if r[0] is not None]

    q = spark.read.format("delta").load(q_path).where(F.array_contains("errors", "fx_rate_known"))
    waiting, also_defective = q.count(), q.where(F.size("errors") > 1).count()  # e.g. a negative amount too
    quarantining_run = q.first().run_id
    assert waiting > 100
    everything = sorted(set(ids(q_path)) | set(ids(tx_path)))
    run_pipeline(lh, "--layers", "silver", "--tables", "silver.fx_rates")
    runlog = RunLog(spark, lake, "replay", new_run_id(), lh.params.day(5))
    tr = replay.replay_table(spark, lake, tx_spec, runlog, replay.Selection(rule="fx_rate_known"))
    assert tr.rows_read == waiting and tr.rows_quarantined == also_defective and tr.rows_inserted > 0
    assert tr.rows_inserted + tr.rows_duplicate + tr.rows_quarantined == waiting
    still = spark.read.format("delta").load(q_path).where(F.col("run_id") == quarantining_run)
    assert still.count() >= also_defective and not still.where(F.array_contains("errors", "fx_rate_known")).count()  # rules updated
    in_silver, in_quarantine = ids(tx_path), ids(q_path)
    assert len(in_silver) == len(set(in_silver))  # nothing duplicated
    assert not set(in_silver) & set(in_quarantine)  # nothing in both
    assert sorted(set(in_silver) | set(in_quarantine)) == everything  # nothing lost
    recon = {r.table: r for r in reconcile(spark, lake)}
    assert recon[tx_spec.name].ok, recon[tx_spec.name]
    for s in score(spark, lake, lh.env.paths.truth):  # quarantine again holds exactly the defects
        if s.defect == "*":
            assert s.false_positives == 0, s  # no clean record left behind
        else:
            assert s.caught == s.injected, s  # no defect let through
    before = versions(spark, lake)
    again = replay.replay_table(
        spark, lake, tx_spec, RunLog(spark, lake, "replay", new_run_id(), lh.params.day(5)), replay.Selection(rule="fx_rate_known")
    )
    assert again.rows_read == 0 and versions(spark, lake) == before
    logged = spark.read.format("delta").load(lake.ops_path("run_log")).where(f"run_id = '{runlog.run_id}'").first()
    assert (logged.job, logged.status, logged.rows_read, logged.rows_inserted) == ("replay", "succeeded", waiting, tr.rows_inserted)
    # gold sees the replayed payments through the change feed (built incrementally, however small the lake)
    run_pipeline(lh, "--layers", "gold", "--conf", "pipeline.gold_rebuild_below_mib=0")
    kpis = spark.read.format("delta").load(lake.path("gold.merchant_daily_kpis")).where(F.col("event_date") == F.lit(lh.params.day(5)))
    silver_day = spark.read.format("delta").load(tx_path).where(F.col("event_date") == F.lit(lh.params.day(5))).count()
    assert kpis.agg(F.sum("transactions")).first()[0] == silver_day


def test_replay_rejects_an_unknown_rule(spark: SparkSession, lh: Lakehouse) -> None:
    lake = lh.lake
    with pytest.raises(PipelineError, match=r"silver.transactions: no rule 'fx_rate_knwon'"):
        replay.replay_table(
            spark,
            lake,
            lake.spec("silver.transactions"),
            RunLog(spark, lake, "replay", new_run_id(), lh.params.day(5)),
            replay.Selection(rule="fx_rate_knwon"),
        )


CARD_NUMBER_LIKE = re.compile(r"(?<![\w.])[0-9]{13,19}(?![\w.])")


def luhn_valid(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812): from the right, every second digit doubled (minus 9 above 9),
    the sum a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_profile_flags_outliers_without_dropping_them(spark: SparkSession, lh: Lakehouse) -> None:
    lake = lh.lake
    alerts = profile_job.run(spark, lake, "profile-run-1", ["silver.transactions", "gold.merchant_daily_kpis"])
    # a single profile run has no history to compare null shares with; what is returned is what is recorded
    assert [a for a in alerts if a.kind == "null_share"] == []
    recorded = spark.read.format("delta").load(lake.ops_path("quality_alerts")).where("run_id = 'profile-run-1'").collect()
    fields = lambda a: (a.table, a.kind, a.subject, a.observed, a.expected, a.message)  # noqa: E731
    assert sorted(map(fields, alerts)) == sorted(map(fields, recorded))
    prof = {
        r.column: r for r in spark.read.format("delta").load(lake.ops_path("quality_profiles")).where("run_id = 'profile-run-1'").collect()
    }
    tx = spark.read.format("delta").load(lake.path("silver.transactions"))
    n = tx.count()
    assert prof["amount"].rows == n and prof["device_id"].nulls == tx.where("device_id IS NULL").count()
    assert prof["channel"].distinct_approx == 3 and sorted(v.value for v in prof["channel"].top_values) == ["android", "ios", "web"]
    q = prof["amount"].quantiles
    assert len(q) == 5 and q == sorted(q) and float(prof["amount"].min) <= q[0] and q[4] <= float(prof["amount"].max)
    hi = prof["amount"].outlier_high
    flagged = spark.read.format("delta").load(lake.ops_path("quality_outliers")).where("run_id = 'profile-run-1' AND column = 'amount'")
    expected = (
        tx.where(F.col("amount").cast("double") > hi).count()
        + tx.where(F.col("amount").cast("double") < prof["amount"].outlier_low).count()
    )
    assert prof["amount"].outliers == expected > 0 and flagged.count() == expected
    ids = [r.key for r in flagged.collect()]
    assert tx.where(F.col("transaction_id").isin(ids)).count() == expected  # flagged, still in the table


def test_quality_report_renders_its_charts_in_headless_chromium(spark: SparkSession, lh: Lakehouse, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    out = tmp_path / "quality.html"
    write_report(spark, lh.lake, str(out))
    text = out.read_text()
    assert "<svg" not in text.split('<script type="application/json"')[0]  # the charts are drawn by the page itself
    # no card number in clear: no run of 13-19 digits on its own (not inside a token, hash or
    # decimal fraction) that passes the Luhn check, as every generated card number does; the
    # quarantine samples (bronze records) do hold the card column, masked to its last four digits
    pans = [m for m in CARD_NUMBER_LIKE.findall(text) if luhn_valid(m)]
    assert not pans, f"{len(pans)} card number(s) in clear, ending {[p[-4:] for p in pans][:5]}"
    assert re.search(r'"card_number": "\*{4}[0-9]{4}"', text)
    dom = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-rendered="true"' in html and 'data-error="' not in html, html[:3000]
    charts = int(html.split('data-charts="')[1].split('"')[0])
    assert charts >= 8
    assert html.count('class="series"') >= 5 and html.count('class="bar"') >= 10 and html.count('class="box"') >= 3
    for table in ("silver.transactions", "silver.customers", "gold.merchant_daily_kpis"):
        assert f">{table}</h2>" in html
    for rule in ("currency_known", "amount_positive", "well_formed"):
        assert f">{rule}</text>" in html  # a bar of the quarantine chart
    shot = tmp_path / "quality.png"
    subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
