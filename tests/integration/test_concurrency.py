"""Runs that meet on one lake: two pipelines started at the same moment, a replay beside a running
pipeline, and a pipeline killed at a random moment and run again.

One small lake serves both (a new arrival day before each). After each, the row accounting
equals the generator's manifests exactly, every gold table equals a full recompute from silver,
and the run log shows what happened: one run did the work and the other waited, a live run was
never marked abandoned, a killed run was. Some of the runs' drivers are in a time zone far from
UTC (the stored run-log times are still the instants of the run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_tables
from lakehouse.io import delta_log
from lakehouse.leases import LeaseError, read_holder
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.replay import main as replay_main
from lakehouse.pipeline.runner import main as pipeline_main
from lakehouse.tables import Lake
from tests.conftest import CONF, REPO, env_for
from tests.integration.helpers import WITHOUT_FEATURES, accounting, full_recompute, manifest_totals, restricted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAR = "Pacific/Kiritimati"  # UTC+14
SCALE = 0.005  # the runs' fixed costs dominate at any small scale


@dataclass
class Shared:
    root: Path
    raw: Path
    truth: Path
    lake: Lake
    days: int

    def args(self) -> list[str]:
        return ["--conf", f"lake_root={self.root}", "--conf", f"paths.raw={self.raw}"]

    def new_day(self, spark: SparkSession) -> None:
        self.days += 1
        generate_raw_zone(spark, GeneratorParams(scale=SCALE, days=self.days), str(self.raw), str(self.truth))


@pytest.fixture(scope="module")
def shared(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    base = tmp_path_factory.mktemp("meeting-lake")
    raw = base / "raw"
    lake = Lake(env_for(base / "lake", f"paths.raw={raw}"), load_tables(CONF))
    s = Shared(base / "lake", raw, base / "truth", lake, 2)
    generate_raw_zone(spark, GeneratorParams(scale=SCALE, days=s.days), str(raw), str(s.truth))
    run_here(s)
    yield s


def run_here(s: Shared, *args: str) -> None:
    assert pipeline_main([*s.args(), "--no-summary", *restricted(args, WITHOUT_FEATURES)]) == 0


class Run:
    """A pipeline job in its own process; its log lines are kept as they come."""

    def __init__(self, s: Shared, tz: str = "UTC") -> None:
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "TZ": tz}
        cmd = [sys.executable, "jobs/pipeline.py", *s.args(), "--no-summary", *restricted([], WITHOUT_FEATURES)]
        cmd += ["--conf", "spark.sql.shuffle.partitions=2"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)  # noqa: S603
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        """Wait until a log line holds ``text``; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.saw(text):
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return self.saw(text)
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{''.join(self.lines)[-3000:]}")

    def finish(self, timeout: float = 900) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def log(self) -> str:
        return "".join(self.lines)[-4000:]


def check_lake(spark: SparkSession, s: Shared) -> None:
    """Accounting exactly as the manifests say, and gold equal to a full recompute."""
    assert accounting(spark, s.lake) == manifest_totals(spark, str(s.raw))
    # a lake this small is under pipeline.gold_rebuild_below_mib: gold is rebuilt in full (an
    # overwrite, not the MERGE of an incremental build), exactly once however the runs were killed
    assert delta_log.latest_stamp(spark, s.lake.path("gold.customer_360"), "gold.customer_360").operation == "WRITE"
    for name in ("gold.customer_360", "gold.merchant_daily_kpis"):
        stored = spark.read.format("delta").load(s.lake.path(name))
        assert_df_equality(stored, full_recompute(spark, s.lake, name), ignore_row_order=True, ignore_nullable=True)


def job_runs(spark: SparkSession, s: Shared) -> dict[str, dict[str, object]]:
    """Per run id: its statuses and when it started and ended (the '*' rows)."""
    rows = (
        spark.read.format("delta")
        .load(s.lake.ops_path("run_log"))
        .where("table = '*'")
        .groupBy("run_id", "job")
        .agg(
            F.sort_array(F.collect_list("status")).alias("statuses"),
            F.min(F.unix_micros("started_at")).alias("started"),
            F.max(F.unix_micros("ended_at")).alias("ended"),
        )
        .collect()
    )
    return {r.run_id: {"job": r.job, "statuses": r.statuses, "started": r.started / 1e6, "ended": r.ended / 1e6} for r in rows}


def test_two_pipelines_started_at_the_same_moment(spark: SparkSession, shared: Shared) -> None:
    shared.new_day(spark)
    before = set(job_runs(spark, shared))
    t0 = time.time()
    runs = [Run(shared), Run(shared, FAR)]
    codes = [r.finish() for r in runs]
    assert codes == [0, 0], "\n\n".join(r.log() for r in runs)
    waited = [r for r in runs if r.saw("waiting for run")]
    assert len(waited) == 1, "\n\n".join(r.log() for r in runs)  # one did the work, the other waited for it
    other = runs[1 - runs.index(waited[0])]
    assert other.saw("bronze.transactions: ") and not waited[0].saw("new records (version")
    new = {k: v for k, v in job_runs(spark, shared).items() if k not in before}
    assert sorted(v["statuses"] for v in new.values()) == [["finished", "started"]] * 2  # neither marked abandoned
    first, second = sorted(new.values(), key=lambda v: v["started"])  # type: ignore[arg-type, return-value]
    assert second["started"] >= first["ended"] - 1  # the second began its work when the first was done
    for v in new.values():  # the far zone's run stored the same instants: now, not 14 hours off
        assert t0 - 5 <= v["started"] <= time.time(), v  # type: ignore[operator]
    check_lake(spark, shared)


def test_a_pipeline_killed_at_a_random_moment_recovers_on_the_next_run(spark: SparkSession, shared: Shared) -> None:
    """A run killed in silver (its MERGEs, quarantine and accounting), after a random delay
    from the layer's start; the next run recovers. The killed run is recorded as abandoned. While
    the run is in bronze, a replay of a table it will write stops at once, naming it. (The kill
    points of every layer, bronze and gold included, are test_faults' deterministic ones; one
    random kill here costs a lake day and two cold runs, about 100 s.)"""
    shared.new_day(spark)
    seed = 13
    rng = random.Random(seed)
    layer = "silver"
    delay = rng.uniform(0.5, 6.0)
    run = Run(shared, FAR)
    assert run.wait_for("== bronze =="), run.log()
    holder = read_holder(spark, shared.lake, "silver.transactions")
    assert holder is not None and holder.job == "pipeline"
    pattern = rf"silver.transactions is being written by run {holder.run_id} \(pipeline, .*started 20"
    with pytest.raises(LeaseError, match=pattern):
        replay_main([*shared.args(), "--table", "silver.transactions", "--rule", "fx_rate_known"])
    assert "replay" not in {v["job"] for v in job_runs(spark, shared).values()}  # refused before it began
    if run.wait_for(f"== {layer} =="):
        time.sleep(delay)
    killed = run.proc.poll() is None
    if killed:
        os.kill(run.proc.pid, signal.SIGKILL)
    code = run.finish()
    print(f"seed {seed}: {'killed' if killed else 'finished'} {delay:.1f}s into {layer}; last lines:\n{''.join(run.lines[-3:])}")
    assert killed and code == -signal.SIGKILL, f"the run ended before its kill ({code}):\n{run.log()}"
    before = job_runs(spark, shared)
    run_here(shared)
    after = job_runs(spark, shared)
    killed_runs = [
        k for k, v in after.items() if v["statuses"] == ["abandoned", "started"] and before.get(k, {}).get("statuses") == ["started"]
    ]
    assert len(killed_runs) == 1, after
    assert all(v["statuses"] in (["finished", "started"], ["abandoned", "started"]) for v in after.values()), after
    check_lake(spark, shared)
    assert datetime.now(timezone.utc).timestamp() - after[killed_runs[0]]["started"] < 900  # type: ignore[operator]
