"""Benchmark: a layer's tables built one after another vs side by side (``pipeline.parallel_tables``).

    .venv/bin/python bench/parallel_tables.py [--scale 0.1] [--days 30] [--workers 1,2,4] [--root /tmp/bench-par]

Generates one raw zone, then for each worker count builds a fresh lake from it with the
``pipeline`` job in its own process (a full load), adds one arrival day and runs again (the
incremental run), and runs once more with nothing new. Prints each layer's seconds (the job's
``== <layer> done in`` lines) and the wall time of each run, and the ratio to one worker measured
in this same invocation. Writes ``bench/results/parallel-tables-sf<scale>.json``.
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


def pipeline(root: Path, raw: Path, workers: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        "jobs/pipeline.py",
        "--conf",
        f"lake_root={root}",
        "--conf",
        f"paths.raw={raw}",
        "--conf",
        f"pipeline.parallel_tables={workers}",
        "--no-summary",
    ]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    wall = time.monotonic() - t0
    if done.returncode:
        sys.exit(f"pipeline with {workers} worker(s) failed ({done.returncode}):\n{done.stderr[-4000:]}")
    out = {m.group(1): float(m.group(2)) for m in LAYER_DONE.finditer(done.stderr + done.stdout)}
    out["wall"] = round(wall, 1)
    return out


def generate(raw: Path, truth: Path, scale: float, days: int) -> None:
    cmd = [sys.executable, "jobs/generate_raw.py", "--conf", f"paths.raw={raw}", "--conf", f"paths.truth={truth}"]
    subprocess.run([*cmd, "--scale", str(scale), "--days", str(days)], cwd=REPO, check=True, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--root", default="/tmp/bench-par")
    a = p.parse_args()
    root = Path(a.root)
    shutil.rmtree(root, ignore_errors=True)
    raw, truth = root / "raw", root / "truth"
    counts = [int(w) for w in a.workers.split(",")]
    generate(raw, truth, a.scale, a.days)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for w in counts:
        results[str(w)] = {"full": pipeline(root / f"lake-{w}", raw, w)}
    generate(raw, truth, a.scale, a.days + 1)
    for w in counts:
        results[str(w)]["incremental"] = pipeline(root / f"lake-{w}", raw, w)
        results[str(w)]["nothing new"] = pipeline(root / f"lake-{w}", raw, w)
    base = results[str(counts[0])]
    print(f"scale {a.scale}, {a.days} days (+1), 2 cores; seconds (ratio to {counts[0]} worker(s))")
    for run in ("full", "incremental", "nothing new"):
        for w in counts:
            r = results[str(w)][run]
            cells = [f"{k} {r[k]:.1f} ({r[k] / base[run][k]:.2f})" for k in ("bronze", "silver", "gold", "wall") if k in r]
            print(f"  {run:12s} workers {w}: " + ", ".join(cells))
    out = REPO / "bench" / "results" / f"parallel-tables-sf{a.scale:g}.json"
    machine = f"{os.cpu_count()} cores, {platform.platform()}"
    command = f".venv/bin/python bench/parallel_tables.py --scale {a.scale:g} --days {a.days} --workers {a.workers}"
    out.write_text(json.dumps({"machine": machine, "command": command, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
