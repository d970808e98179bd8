"""Benchmark: what the exactly-once bookkeeping costs a pipeline run.

    .venv/bin/python bench/bookkeeping.py [--scale 1] [--days 30] [--root /tmp/bench-bk] [--repeat 5]

Builds a lake (or reuses the one under ``--root``) with one pipeline run, then times, in this one
process, each piece of bookkeeping a run adds for exactly once (medians of ``--repeat``):

- taking and giving back the leases of every table a full run writes;
- ``absorbed``: a silver batch's "was I committed already?" (the first-attempt path: the table's
  transaction ids, no commit read);
- ``latest_stamp``: a gold table's "what was I computed from?" (the newest stamped commit);
- ``log_batch``: one micro-batch's accounting row appended to ``ops.batch_log``;
- ``reconcile``: the end-of-run check over every silver table;
- the gold recount: customer_360's check of an incremental write (the customers of the lake's
  last day recounted from the inputs and compared with the stored rows).

and multiplies them by how often a full run does each (one batch per silver table, a stamp
lookup before and after each gold write), so the per-run figure is in seconds of one run. The
stamps themselves ride in commits the run makes anyway. Writes
``bench/results/bookkeeping-sf<scale>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import functions as F

from lakehouse.config import load_env, load_tables
from lakehouse.io import delta_log
from lakehouse.io.delta_log import Stamp
from lakehouse.leases import Leases
from lakehouse.logs import configure
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.gold import verify_against_recount
from lakehouse.pipeline.summary import reconcile
from lakehouse.runlog import log_batch
from lakehouse.session import default_conf_dir, get_spark
from lakehouse.tables import Lake

REPO = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.monotonic()
        fn()
        runs.append(time.monotonic() - t0)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    configure("bench-bookkeeping")
    root = a.root or Path(tempfile.mkdtemp(prefix="bench-bk-"))
    env = load_env(default_conf_dir(), "local", [f"lake_root={root}"])
    lake = Lake(env, load_tables(default_conf_dir()))
    spark = get_spark(env, "bench-bookkeeping")
    if delta_log.version(spark, lake.path("silver.transactions")) is None:
        generate_raw_zone(spark, GeneratorParams(scale=a.scale, days=a.days), env.paths.raw, env.paths.truth)
        t0 = time.monotonic()
        cmd = [sys.executable, str(REPO / "jobs" / "pipeline.py"), "--conf", f"lake_root={root}", "--no-summary"]
        subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stdout=subprocess.DEVNULL)
        print(f"lake built in {time.monotonic() - t0:.0f}s at scale {a.scale}, {a.days} days: {root}")
    silver = [s.name for s in lake.layer("silver")]
    gold = [s.name for s in lake.layer("gold")]
    every = [s.name for layer in ("bronze", "silver", "gold") for s in lake.layer(layer)]

    def leases() -> None:
        held = Leases(spark, lake, "bench", "bench", every)
        held.acquire()
        held.release()

    # customer_360's check of an incremental write: the customers of the lake's last day (what
    # one arrival day touches), recounted from the inputs and compared with the stored rows
    c360 = lake.spec("gold.customer_360")
    tx = spark.read.format("delta").load(lake.path("silver.transactions"))
    last_day = tx.agg(F.max("event_date")).first()[0]
    touched = tx.where(F.col("event_date") == F.lit(last_day)).select("customer_id").distinct().persist()
    inputs = {u: delta_log.version(spark, lake.path(u)) for u in c360.upstream}
    written = delta_log.version(spark, lake.path(c360.name))
    print(f"customer_360 recount: {touched.count():,} customers of {last_day}")
    n = iter(range(10**9))
    per_op = {
        "leases (all tables, take and give back)": timed(leases, a.repeat),
        "absorbed (one silver batch)": timed(
            lambda: delta_log.absorbed(spark, lake.path("silver.transactions"), Stamp("s", "r", "bench-never", 0)), a.repeat
        ),
        "latest_stamp (one gold table)": timed(lambda: delta_log.latest_stamp(spark, lake.path(gold[0]), gold[0]), a.repeat),
        "log_batch (one batch's row)": timed(
            lambda: log_batch(spark, lake, Stamp("s", "bench", "bench-batches", next(n)), "bench", "bench.table", "k", 1, 1, 0, 0),
            a.repeat,
        ),
        "reconcile (every silver table)": timed(lambda: reconcile(spark, lake), a.repeat),
        "gold recount (customer_360, one day's customers)": timed(
            lambda: verify_against_recount(spark, lake, c360, touched, inputs, written), a.repeat
        ),
    }
    per_run = {
        "leases (all tables, take and give back)": 1,
        "absorbed (one silver batch)": 2 * len(silver),  # the MERGE and the batch log
        "latest_stamp (one gold table)": 2 * len(gold),  # before and after its write
        "gold recount (customer_360, one day's customers)": 1,
        "log_batch (one batch's row)": len(silver),
        "reconcile (every silver table)": 1,
    }
    total = sum(per_op[k] * per_run[k] for k in per_op)
    print(f"{'operation':<44}{'median s':>10}{'per run':>9}{'s/run':>8}")
    for k, v in per_op.items():
        print(f"{k:<44}{v:>10.3f}{per_run[k]:>9}{v * per_run[k]:>8.2f}")
    print(f"{'total per full pipeline run':<63}{total:>8.2f}")
    out = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "scale": a.scale,
        "days": a.days,
        "seconds_per_operation": per_op,
        "operations_per_run": per_run,
        "seconds_per_run": total,
    }
    dest = REPO / "bench" / "results" / f"bookkeeping-sf{a.scale:g}.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
