"""Benchmark: one more arrival day with gold built incrementally vs rebuilt in full.

    .venv/bin/python bench/gold_rebuild.py [--scale 0.005] [--days 2] [--rounds 2] [--root /tmp/bench-rebuild]

Generates a raw zone, builds one lake from it with the ``pipeline`` job, copies it, then adds an
arrival day ``--rounds`` times; each time both lakes take the day, each with the ``pipeline`` job
in its own process: one with ``pipeline.gold_rebuild_below_mib=0`` (gold incremental, change
data feed, MERGE / replaceWhere of the touched rows), one with a threshold above any size (gold
rebuilt in full, one overwrite per table). The order alternates between rounds. Prints each
layer's seconds (the job's ``== <layer> done in`` lines) and the wall time, and the ratio rebuilt /
incremental of the same round. Writes ``bench/results/gold-rebuild-sf<scale>.json``. The default
64 MiB of ``pipeline.gold_rebuild_below_mib`` is chosen from these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER_DONE = re.compile(r"== (bronze|silver|gold) done in ([0-9.]+)s")
MODES = {"incremental": "0", "rebuilt": "1000000"}


def pipeline(root: Path, raw: Path, threshold: str) -> dict[str, float]:
    cmd = [sys.executable, "jobs/pipeline.py", "--conf", f"lake_root={root}", "--conf", f"paths.raw={raw}"]
    cmd += ["--conf", f"pipeline.gold_rebuild_below_mib={threshold}", "--no-summary"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    wall = time.monotonic() - t0
    if done.returncode:
        sys.exit(f"pipeline (gold_rebuild_below_mib={threshold}) failed ({done.returncode}):\n{done.stderr[-4000:]}")
    out = {m.group(1): float(m.group(2)) for m in LAYER_DONE.finditer(done.stderr + done.stdout)}
    out["wall"] = round(wall, 1)
    return out


def generate(raw: Path, truth: Path, scale: float, days: int) -> None:
    cmd = [sys.executable, "jobs/generate_raw.py", "--conf", f"paths.raw={raw}", "--conf", f"paths.truth={truth}"]
    subprocess.run([*cmd, "--scale", str(scale), "--days", str(days)], cwd=REPO, check=True, capture_output=True)


def upstream_mib(lake: Path) -> float:
    """Bytes of the silver tables gold reads (their data files), in MiB."""
    silver = lake / "tables" / "silver"
    return sum(f.stat().st_size for f in silver.rglob("*.parquet")) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.005)
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--root", default="/tmp/bench-rebuild")
    a = p.parse_args()
    root = Path(a.root)
    shutil.rmtree(root, ignore_errors=True)
    raw, truth = root / "raw", root / "truth"
    generate(raw, truth, a.scale, a.days)
    full = pipeline(root / "incremental", raw, MODES["incremental"])
    shutil.copytree(root / "incremental", root / "rebuilt")
    rounds = []
    for i in range(a.rounds):
        generate(raw, truth, a.scale, a.days + 1 + i)
        order = list(MODES) if i % 2 == 0 else list(reversed(MODES))
        got = {mode: pipeline(root / mode, raw, MODES[mode]) for mode in order}
        rounds.append({"order": order, "silver_mib": round(upstream_mib(root / "incremental"), 1), **got})
    print(f"scale {a.scale}, {a.days} days, then one more day {a.rounds} times; 2 cores; full load {full}")
    for i, r in enumerate(rounds):
        inc, reb = r["incremental"], r["rebuilt"]
        cells = [f"{k} {reb[k]:.1f} / {inc[k]:.1f} = {reb[k] / inc[k]:.2f}" for k in ("bronze", "silver", "gold", "wall") if k in inc]
        print(f"  day +{i + 1} (silver {r['silver_mib']} MiB, first {r['order'][0]}): rebuilt / incremental: " + ", ".join(cells))
    out = {
        "command": " ".join([".venv/bin/python", "bench/gold_rebuild.py", *sys.argv[1:]]),
        "scale": a.scale,
        "days": a.days,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "full_load": full,
        "rounds": rounds,
    }
    dest = REPO / "bench" / "results" / f"gold-rebuild-sf{a.scale:g}.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest.relative_to(REPO)}")


if __name__ == "__main__":
    main()
