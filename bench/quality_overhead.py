"""Benchmark: what the expectations cost in the silver stage, and how well they catch defects.

    .venv/bin/python bench/quality_overhead.py --scale 1 [--days 30] [--root /tmp/bench-quality] [--repeat 3]

Generates one raw zone and its bronze tables, then builds silver on copies of that lake,
alternately with expectations on and off (``--conf quality.expectations=false``), each silver
run in a fresh process. Prints the silver stage's time per run (from the run log: the first
silver table's start to the job's end, when its last run-log and metrics rows have landed)
and the ratio on/off of the medians of ``--repeat`` runs each (and of the best runs), then
scores the quarantine of an "on" lake against the generator's defect ledger (recall per
defect kind, precision per source). Writes the figures to ``bench/results/quality-sf<scale>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from lakehouse.config import load_env, load_tables
from lakehouse.logs import configure
from lakehouse.payments.defects import format_score, score
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.session import default_conf_dir, get_spark
from lakehouse.tables import Lake

REPO = Path(__file__).resolve().parents[1]


def job(lake_root: Path, raw: Path, *args: str) -> float:
    cmd = [
        sys.executable,
        str(REPO / "jobs" / "pipeline.py"),
        "--conf",
        f"lake_root={lake_root}",
        "--conf",
        f"paths.raw={raw}",
        "--no-summary",
        *args,
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--root", help="work folder, kept; a later run reuses its raw zone (default: a temporary folder, deleted after)")
    args = p.parse_args()
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="lakehouse-bench-quality-"))
    raw = root / "raw"
    configure("bench")
    env = load_env(default_conf_dir(), "local", [f"lake_root={root / 'gen'}", f"paths.raw={raw}"])
    spark = get_spark(env, "lakehouse-bench-quality")
    try:
        if args.root and (root / "generated.json").exists():
            if json.loads((root / "generated.json").read_text()) != {"scale": args.scale, "days": args.days}:
                raise SystemExit(f"{root} holds a raw zone of other parameters: {(root / 'generated.json').read_text()}")
            print(f"raw zone at scale {args.scale}, {args.days} days: reused from {raw}", flush=True)
        else:
            t0 = time.monotonic()
            generate_raw_zone(spark, GeneratorParams(scale=args.scale, days=args.days), str(raw), env.paths.truth)
            (root / "generated.json").write_text(json.dumps({"scale": args.scale, "days": args.days}))
            print(f"raw zone at scale {args.scale}, {args.days} days: {time.monotonic() - t0:.0f}s", flush=True)
        runs: dict[str, list[float]] = {"on": [], "off": []}
        last_on = None
        bronze_lake = root / "lake-bronze"  # bronze is built once; each silver run starts from a copy
        if not bronze_lake.exists():
            building = root / "lake-bronze.partial"
            shutil.rmtree(building, ignore_errors=True)
            job(building, raw, "--layers", "bronze")
            building.rename(bronze_lake)
        for i in range(args.repeat):
            for mode in ("on", "off"):
                lake_root = root / f"lake-{mode}-{i}"
                shutil.rmtree(lake_root, ignore_errors=True)
                shutil.copytree(bronze_lake, lake_root)
                flag = [] if mode == "on" else ["--conf", "quality.expectations=false"]
                wall = job(lake_root, raw, "--layers", "silver", *flag)
                lake = Lake(
                    load_env(default_conf_dir(), "local", [f"lake_root={lake_root}", f"paths.raw={raw}"]), load_tables(default_conf_dir())
                )
                log = spark.read.format("delta").load(lake.ops_path("run_log"))
                # the stage: from the first silver table's start to the job's end (after its
                # last run-log and metrics rows landed)
                first = log.where(F.col("table").startswith("silver.")).agg(F.min("started_at")).first()[0]
                last = log.where((F.col("table") == "*") & (F.col("status") == "finished")).agg(F.max("ended_at")).first()[0]
                secs = (last - first).total_seconds()
                runs[mode].append(float(secs))
                print(
                    f"  silver, expectations {mode:<3} (run {i + 1}): {secs:7.1f}s in the stage ({wall:.0f}s with the JVM start)",
                    flush=True,
                )
                if mode == "on":
                    if last_on is not None:
                        shutil.rmtree(last_on[0], ignore_errors=True)
                    last_on = (lake_root, lake)
                else:
                    shutil.rmtree(lake_root, ignore_errors=True)
        med_on, med_off = statistics.median(runs["on"]), statistics.median(runs["off"])
        ratio = med_on / med_off
        best_ratio = min(runs["on"]) / min(runs["off"])
        print(
            f"\nsilver stage, median of {args.repeat}: expectations on {med_on:.1f}s, off {med_off:.1f}s: "
            f"on/off = {ratio:.3f} (+{(ratio - 1) * 100:.1f}%); best of each: {best_ratio:.3f}"
        )
        assert last_on is not None
        lake = last_on[1]
        lake = Lake(
            load_env(default_conf_dir(), "local", [f"lake_root={last_on[0]}", f"paths.raw={raw}", f"paths.truth={env.paths.truth}"]),
            lake.specs,
        )
        rows = score(spark, lake, lake.env.paths.truth)
        print("\nDefects caught by the rule meant for them (recall) and clean records kept out of quarantine (precision):")
        print(format_score(rows))
        out = {
            "scale": args.scale,
            "days": args.days,
            "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
            "silver_seconds": runs,
            "ratio_on_off": round(ratio, 4),
            "ratio_on_off_best": round(best_ratio, 4),
            "score": [
                {
                    "source": s.source,
                    "defect": s.defect,
                    "injected": s.injected,
                    "caught": s.caught,
                    "recall": s.recall,
                    "precision": s.precision,
                }
                for s in rows
            ],
        }
        dest = REPO / "bench" / "results" / f"quality-sf{args.scale:g}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(out, indent=1))
        print(f"\nwritten {dest.relative_to(REPO)}")
    finally:
        spark.stop()
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
