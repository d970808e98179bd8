"""Benchmark: generate the raw zone at a scale factor, build every layer, print figures.

    .venv/bin/python bench/pipeline_scale.py --scale 1 [--days 30] [--root /tmp/bench-lake]

Prints the time of each stage, rows per second, and rows / files / MiB per table, then runs the
pipeline a second time (no new data) and a third time after one more arrival day, to show what an
idempotent rerun and an incremental day cost relative to the full build. Compare ratios measured
in one run; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from lakehouse.config import load_env, load_tables
from lakehouse.logs import configure
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline import bronze, gold, silver
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.pipeline.summary import reconcile, render, table_stats
from lakehouse.runlog import RunLog, new_run_id
from lakehouse.session import default_conf_dir, get_spark
from lakehouse.tables import Lake


def run_layers(spark, lake: Lake, label: str) -> list[tuple[str, float, str]]:  # noqa: ANN001
    runlog = RunLog(spark, lake, f"bench-{label}", new_run_id(), GeneratorParams().start_date)
    stages = []
    for name, fn in (("bronze", bronze.run), ("silver", silver.run), ("gold", gold.run)):
        t0 = time.monotonic()
        fn(spark, lake, runlog)
        entries = [e for e in runlog.entries if e.table.startswith(name + ".")]
        rows = sum(e.rows_read for e in entries)
        secs = time.monotonic() - t0
        stages.append((f"{label}:{name}", secs, f"{rows} rows read, {rows / secs:,.0f} rows/s"))
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--root", help="lake root (default: a new temporary folder, deleted afterwards)")
    args = p.parse_args()
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    configure("bench")
    env = load_env(default_conf_dir(), "local", [f"lake_root={root}"])
    lake = Lake(env, load_tables(default_conf_dir()))
    spark = get_spark(env, "lakehouse-bench")
    try:
        params = GeneratorParams(scale=args.scale, days=args.days)
        t0 = time.monotonic()
        gen = generate_raw_zone(spark, params, env.paths.raw, env.paths.truth)
        stages = [("generate", time.monotonic() - t0, f"{sum(gen.records.values())} raw records")]
        stages += run_layers(spark, lake, "full")
        stages += run_layers(spark, lake, "rerun")
        t0 = time.monotonic()
        gen = generate_raw_zone(spark, GeneratorParams(scale=args.scale, days=args.days + 1), env.paths.raw, env.paths.truth)
        stages.append(("generate+1day", time.monotonic() - t0, f"{sum(gen.records.values())} raw records"))
        stages += run_layers(spark, lake, "plus1day")
        print(render(stages, table_stats(spark, lake), reconcile(spark, lake)))
        full = sum(s for n, s, _ in stages if n.startswith("full:"))
        rerun = sum(s for n, s, _ in stages if n.startswith("rerun:"))
        inc = sum(s for n, s, _ in stages if n.startswith("plus1day:"))
        print(
            f"scale {args.scale}, {args.days} days: full build {full:.1f}s; rerun {rerun:.1f}s ({rerun / full:.2f} of full); "
            f"one more day {inc:.1f}s ({inc / full:.2f} of full)"
        )
    finally:
        spark.stop()
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
