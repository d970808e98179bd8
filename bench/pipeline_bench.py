"""Benchmark: the pipeline stage by stage at a scale factor, against a bare-Spark floor and DuckDB.

    .venv/bin/python bench/pipeline_bench.py --scale 1 [--days 30] [--root /tmp/bench] [--skip-baselines]

``make bench SCALE=1`` runs it. Steps, each in a fresh process (so a stage's time includes its
JVM start, as a scheduler would see it, and its peak memory is its own):

1. the raw zone at the scale factor (generated once per ``--root`` and reused);
2. our pipeline on a copy of it: bronze, silver, gold (``jobs/pipeline.py --layers X``), with
   Spark's event log on;
3. the floor per stage (``bench/spark_floor.py``: read the stage's input, write Parquet);
4. the same transformations in DuckDB SQL per stage (``bench/duckdb_baseline.py``);
5. one more arrival day of raw data, then bronze, silver and gold again: the incremental run.

Writes ``bench/results/pipeline-sf<scale>.json`` and ``.md``: per stage wall time, rows/s, MB/s of
raw input, peak memory of the driver process tree, ratios to the floor and to DuckDB, the
incremental run's share of the full load (time and bytes read); per table files, bytes and the
most files one run wrote into one partition; and the scale-out predicted from the event logs
(``bench/eventlog.py``) on 8, 32 and 64 cores at this scale and at 100 times the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eventlog  # noqa: E402  (bench/ is a folder of scripts, not a package)

REPO = Path(__file__).resolve().parents[1]
STAGES = ("bronze", "silver", "gold")
# The gold tables the baselines compute too: the gold stage builds these only (the model's feature
# tables have no DuckDB twin, so they are left out of the comparison).
STAGE_TABLES = {"gold": ["--tables", "gold.merchant_daily_kpis,gold.customer_360"]}
CORES = (8, 32, 64)
SCALE_UP = 100.0


def run(cmd: list[str], label: str) -> tuple[float, int, str]:
    """Run ``cmd``; return wall seconds, peak RSS (bytes) of its Java and Python processes, and its stdout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stdout=subprocess.PIPE, text=True)
    peak = 0
    by_name: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                now = [(x.name(), x.memory_info().rss) for x in [p, *p.children(recursive=True)]]
                # the JVM and Python processes; not the JVM's short-lived forks (Hadoop's chmod,
                # readlink), which show the parent's shared pages as their own RSS
                peak = max(peak, sum(r for n, r in now if n.startswith(("java", "python"))))
                for name, rss in now:
                    by_name[name] = max(by_name.get(name, 0), rss)
            except psutil.Error:
                pass
            done.wait(0.25)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    secs = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (exit {proc.returncode}): {' '.join(cmd)}")
    parts = ", ".join(f"{n} {r / 2**20:.0f}" for n, r in sorted(by_name.items(), key=lambda x: -x[1]))
    print(f"  {label:<28} {secs:7.1f}s  peak {peak / 2**20:6.0f} MiB ({parts})", flush=True)
    return secs, peak, out


def event_conf(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": folder.resolve().as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    return [x for k, v in conf.items() for x in ("--conf", f"{k}={v}")]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def raw_bytes(raw: Path, days: set[str] | None = None) -> int:
    total = 0
    for source in raw.iterdir():
        if source.name.startswith("_"):
            continue
        for day in source.iterdir():
            if days is None or day.name.removeprefix("arrival_date=") in days:
                total += folder_bytes(day)
    return total


def delta_commits(table: Path) -> list[tuple[int, dict, list[dict], list[dict]]]:
    """``(version, commitInfo, adds, removes)`` of every JSON commit of a Delta table."""
    out = []
    for f in sorted((table / "_delta_log").glob("*.json"), key=lambda p: int(p.stem)):
        info, adds, removes = {}, [], []
        for line in f.read_text().splitlines():
            a = json.loads(line)
            if "commitInfo" in a:
                info = a["commitInfo"]
            elif "add" in a:
                adds.append(a["add"])
            elif "remove" in a:
                removes.append(a["remove"])
        out.append((int(f.stem), info, adds, removes))
    return out


def layout(table: Path, since: int = -1, until: int | None = None) -> dict:
    """Files and bytes of the table now, and the most files one commit in ``(since, until]`` wrote
    to one partition (maintenance's OPTIMIZE aside)."""
    live: dict[str, dict] = {}
    most = 0
    for version, info, adds, removes in delta_commits(table):
        for r in removes:
            live.pop(r["path"], None)
        for a in adds:
            live[a["path"]] = a
        if since < version <= (until if until is not None else version) and info.get("operation") != "OPTIMIZE" and adds:
            per = Counter(json.dumps(a.get("partitionValues") or {}, sort_keys=True) for a in adds if a.get("dataChange", True))
            most = max(most, max(per.values(), default=0))
    parts = Counter(json.dumps(a.get("partitionValues") or {}, sort_keys=True) for a in live.values())
    return {
        "files": len(live),
        "mib": round(sum(a["size"] for a in live.values()) / 2**20, 1),
        "partitions": len(parts),
        "max_files_in_a_partition": max(parts.values(), default=0),
        "max_files_per_partition_per_commit": most,
    }


def last_version(table: Path) -> int:
    commits = sorted((table / "_delta_log").glob("*.json"), key=lambda p: int(p.stem))
    return int(commits[-1].stem) if commits else -1


def tables_of(lake: Path) -> list[tuple[str, Path]]:
    out = []
    for layer in ("bronze", "silver", "gold", "quarantine"):
        base = lake / "tables" / layer
        if base.exists():
            out += [(f"{layer}.{p.name}", p) for p in sorted(base.iterdir()) if (p / "_delta_log").exists()]
    return out


def machine() -> dict:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    import duckdb
    import pyspark

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "spark": pyspark.__version__,
        "duckdb": duckdb.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Pipeline benchmark, scale factor {r['scale']:g} ({r['days']} days, {r['raw_rows']:,} raw records, {r['raw_mib']:.0f} MiB raw)",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['platform']}; Spark {m['spark']}, DuckDB {m['duckdb']}; "
        f"{m['date']}. Each step a fresh process; times include the JVM start. Driver heap {m.get('driver_memory', '4g')} "
        f"(`LAKEHOUSE_DRIVER_MEMORY`); command: `{m.get('command', '?')}`.",
        "",
        "| stage | ours | rows/s | raw MB/s | peak MiB | floor | ours/floor | DuckDB | ours/DuckDB | incremental | inc/full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["stages"]:
        lines.append(
            f"| {s['stage']} | {s['seconds']:.1f}s | {s['rows_per_s']:,.0f} | {s['raw_mb_per_s']:.1f} | {s['peak_mib']:.0f} | "
            f"{s.get('floor_s', float('nan')):.1f}s | {s.get('vs_floor', float('nan')):.2f} | {s.get('duckdb_s', float('nan')):.1f}s | "
            f"{s.get('vs_duckdb', float('nan')):.2f} | {s['incremental_s']:.1f}s | {s['incremental_share']:.3f} |"
        )
    t = r["total"]
    lines += [
        f"| **all** | {t['seconds']:.1f}s | | | | {t.get('floor_s', float('nan')):.1f}s | {t.get('vs_floor', float('nan')):.2f} | "
        f"{t.get('duckdb_s', float('nan')):.1f}s | {t.get('vs_duckdb', float('nan')):.2f} | {t['incremental_s']:.1f}s | "
        f"{t['incremental_share']:.3f} |",
        "",
        f"Incremental run: {r['incremental']['new_raw_share']:.3%} new raw bytes; it read "
        + (
            f"{r['incremental']['storage_bytes_share']:.1%} of the bytes the full load read from files "
            f"({r['incremental']['input_bytes_share']:.1%} with cached and checkpointed data read again; event-log input metrics), spent "
            if r["incremental"].get("storage_bytes_share") is not None
            else f"{r['incremental']['input_bytes_share']:.1%} of the bytes the full load read (event-log input metrics), spent "
        )
        + f"{r['incremental']['data_work_share']:.1%} of its task time in data stages, and took {t['incremental_share']:.1%} of its "
        "wall time: the rest is fixed per run (JVM start, planning, Delta log reads and commits, run log), per stage: "
        + ", ".join(
            f"{s['stage']} data work {s['incremental_data_work_s']:.0f}s of {s['data_work_s']:.0f}s, "
            f"driver {s['incremental_driver_s']:.0f}s"
            for s in r["stages"]
        )
        + ".",
        "",
        "## Tables",
        "",
        "| table | files | MiB | partitions | most files in a partition | most files a commit wrote to a partition (full / incremental) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in r["tables"].items():
        lines.append(
            f"| {name} | {d['files']} | {d['mib']} | {d['partitions']} | {d['max_files_in_a_partition']} | "
            f"{d['max_files_per_partition_per_commit']} / {d['max_files_per_partition_per_commit_incremental']} |"
        )
    lines += [
        "",
        "## Predicted scale-out (from the event logs; model in bench/eventlog.py)",
        "",
        "Driver: time no stage ran (JVM start, planning, Delta log and commits, Python), fixed. Bookkeeping: stages",
        "reading under 1 MiB (Delta log, metrics), fixed. Predicted times: driver + every stage's max(work / cores, longest task).",
        "",
        "| stage | data | measured (2 cores) | model at 2 cores | driver | bookkeeping at 64 | "
        + " | ".join(f"{n} cores" for n in CORES)
        + " | first data stage to stop scaling |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(CORES) + "---|",
    ]
    for s in r["stages"]:
        so = s["scale_out"]
        for key, label in (("at_1x", f"sf {r['scale']:g}"), ("scaled", f"sf {r['scale'] * SCALE_UP:g}")):
            p = so[key]
            f = p["first_to_stop"]
            stop = f"{f['table']} stage {f['stage']} ({f['name']}, {f['tasks']} tasks, {f['why']}): {f['cores']} cores" if f else "-"
            lines.append(
                f"| {s['stage']} | {label} | {so['summary']['wall_s']:.1f}s | {so['summary']['model_at_2_cores_s']:.1f}s | "
                f"{so['summary']['driver_s']:.1f}s | {p['bookkeeping_s'][str(CORES[-1])]:.1f}s | "
                + " | ".join(f"{p['predicted_s'][str(n)]:.1f}s" for n in CORES)
                + f" | {stop} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--root", help="work folder, kept; a later run reuses its raw zone (default: a temporary folder)")
    p.add_argument("--skip-baselines", action="store_true", help="only our pipeline (no floor, no DuckDB)")
    p.add_argument("--report-only", action="store_true", help="write the report of the last run in --root again (no runs)")
    args = p.parse_args()
    if args.report_only and not args.root:
        p.error("--report-only needs the --root of an earlier run")
    root = Path(args.root or tempfile.mkdtemp(prefix="lakehouse-bench-")).resolve()
    py = sys.executable
    raw_cached, work = root / "raw", root / "work"
    ident = {"scale": args.scale, "days": args.days}

    def generate(raw: Path, days: int, label: str) -> None:
        run(
            [
                py,
                "jobs/generate_raw.py",
                "--scale",
                str(args.scale),
                "--days",
                str(days),
                "--conf",
                f"lake_root={root / 'gen'}",
                "--conf",
                f"paths.raw={raw}",
            ],
            label,
        )

    if args.report_only:
        report(args, json.loads((work / "measured.json").read_text()), work)
        return
    print(f"benchmark at scale {args.scale:g}, {args.days} days, in {root}", flush=True)
    if not (root / "generated.json").exists() or json.loads((root / "generated.json").read_text()) != ident:
        shutil.rmtree(raw_cached, ignore_errors=True)
        generate(raw_cached, args.days, "generate raw zone")
        (root / "generated.json").write_text(json.dumps(ident))
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(raw_cached, work / "raw")
    raw, lake, events = work / "raw", work / "lake", work / "events"
    lake_conf = ["--conf", f"lake_root={lake}", "--conf", f"paths.raw={raw}"]
    manifests = [json.loads(f.read_text()) for f in (raw / "_manifests").glob("*.json") if not f.name.startswith("_")]
    raw_rows = sum(int(s["records"]) for m in manifests for s in m["sources"].values() if "records" in s)
    total_raw = raw_bytes(raw)

    stages = []
    for stage in STAGES:
        secs, peak, _ = run(
            [
                py,
                "jobs/pipeline.py",
                "--layers",
                stage,
                *STAGE_TABLES.get(stage, []),
                "--no-summary",
                *lake_conf,
                *event_conf(events / f"full-{stage}"),
            ],
            f"ours {stage}",
        )
        stages.append({"stage": stage, "seconds": round(secs, 1), "peak_mib": round(peak / 2**20)})
    versions = {n: last_version(t) for n, t in tables_of(lake)}
    if not args.skip_baselines:
        for s in stages:
            secs, _, _ = run(
                [
                    py,
                    "bench/spark_floor.py",
                    "--stage",
                    s["stage"],
                    "--raw",
                    str(raw),
                    "--lake",
                    str(lake),
                    "--out",
                    str(work / "floor"),
                    *event_conf(events / f"floor-{s['stage']}"),
                ],
                f"floor {s['stage']}",
            )
            s["floor_s"] = round(secs, 1)
        for s in stages:
            secs, peak, out = run(
                [py, "bench/duckdb_baseline.py", "--stage", s["stage"], "--raw", str(raw), "--out", str(work / "duckdb")],
                f"duckdb {s['stage']}",
            )
            s["duckdb_s"], s["duckdb_peak_mib"], s["duckdb_rows"] = (
                round(secs, 1),
                round(peak / 2**20),
                json.loads(out.splitlines()[-1])["rows"],
            )

    before = {f.name for f in (raw / "transactions").iterdir()}
    generate(raw, args.days + 1, "generate one more day")
    new_days = {f.name.removeprefix("arrival_date=") for f in (raw / "transactions").iterdir()} - {
        b.removeprefix("arrival_date=") for b in before
    }
    new_raw = raw_bytes(raw, new_days)
    for s in stages:
        secs, _, _ = run(
            [
                py,
                "jobs/pipeline.py",
                "--layers",
                s["stage"],
                *STAGE_TABLES.get(s["stage"], []),
                "--no-summary",
                *lake_conf,
                *event_conf(events / f"inc-{s['stage']}"),
            ],
            f"incremental {s['stage']}",
        )
        s["incremental_s"] = round(secs, 1)
    measured = {
        "stages": stages,
        "versions": versions,
        "new_days": sorted(new_days),
        "raw_rows": raw_rows,
        "total_raw": total_raw,
        # how the stages ran: the command and the driver heap (conf/env/local.yaml; in local mode
        # the executors share it)
        "command": " ".join(["python", *sys.argv]),
        "driver_memory": os.environ.get("LAKEHOUSE_DRIVER_MEMORY", "4g"),
        "new_raw": new_raw,
    }
    (work / "measured.json").write_text(json.dumps(measured, indent=1))
    report(args, measured, work)
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


def report(args: argparse.Namespace, measured: dict, work: Path) -> None:
    """Figures from the event logs and the lake of a measured run; the JSON and Markdown files."""
    stages, versions, raw_rows, total_raw = measured["stages"], measured["versions"], measured["raw_rows"], measured["total_raw"]
    new_days, new_raw = set(measured["new_days"]), measured["new_raw"]
    events, lake = work / "events", work / "lake"
    full_in = inc_in = full_st = inc_st = 0
    full_work = inc_work = 0.0
    for s in stages:
        app = eventlog.read_app(eventlog.log_of(events / f"full-{s['stage']}"))
        inc = eventlog.read_app(eventlog.log_of(events / f"inc-{s['stage']}"))
        s["scale_out"] = {
            "summary": eventlog.summary(app),
            "at_1x": eventlog.scale_out(app, CORES, 1.0),
            "scaled": eventlog.scale_out(app, CORES, SCALE_UP),
        }
        inc_summary = eventlog.summary(inc)
        s["input_bytes"], s["incremental_input_bytes"] = s["scale_out"]["summary"]["input_bytes"], inc_summary["input_bytes"]
        s["storage_bytes"], s["incremental_storage_bytes"] = s["scale_out"]["summary"]["storage_bytes"], inc_summary["storage_bytes"]
        full_in += s["input_bytes"]
        inc_in += s["incremental_input_bytes"]
        full_st += s["storage_bytes"]
        inc_st += s["incremental_storage_bytes"]
        # task time of the stages that process data (bookkeeping and the driver aside)
        s["data_work_s"] = round(sum(x.work_s for x in app.stages if not x.bookkeeping), 1)
        s["incremental_data_work_s"] = round(sum(x.work_s for x in inc.stages if not x.bookkeeping), 1)
        s["driver_s"], s["incremental_driver_s"] = round(app.driver_s, 1), round(inc.driver_s, 1)
        full_work += s["data_work_s"]
        inc_work += s["incremental_data_work_s"]
        s["rows_per_s"] = round(raw_rows / s["seconds"])  # raw records per second
        s["raw_mb_per_s"] = round(total_raw / 1e6 / s["seconds"], 2)
        s["incremental_share"] = round(s["incremental_s"] / s["seconds"], 3)
        if "floor_s" in s:
            s["vs_floor"] = round(s["seconds"] / s["floor_s"], 2)
            s["vs_duckdb"] = round(s["seconds"] / s["duckdb_s"], 2)
    total = {
        k: round(sum(s[k] for s in stages), 1) for k in ("seconds", "incremental_s", "floor_s", "duckdb_s") if all(k in s for s in stages)
    }
    total["incremental_share"] = round(total["incremental_s"] / total["seconds"], 3)
    if "floor_s" in total:
        total["vs_floor"] = round(total["seconds"] / total["floor_s"], 2)
        total["vs_duckdb"] = round(total["seconds"] / total["duckdb_s"], 2)
    result = {
        "scale": args.scale,
        "days": args.days,
        "raw_rows": raw_rows,
        "raw_mib": round(total_raw / 2**20, 1),
        "machine": {**machine(), "command": measured.get("command", "?"), "driver_memory": measured.get("driver_memory", "4g")},
        "stages": stages,
        "total": total,
        "incremental": {
            "new_days": sorted(new_days),
            "new_raw_share": round(new_raw / total_raw, 4),
            "input_bytes_share": round(inc_in / full_in, 4) if full_in else None,
            "storage_bytes_share": round(inc_st / full_st, 4) if full_st else None,
            "data_work_share": round(inc_work / full_work, 4) if full_work else None,
        },
        "tables": {
            n: layout(t, until=versions.get(n, -1))
            | {"max_files_per_partition_per_commit_incremental": layout(t, versions.get(n, -1))["max_files_per_partition_per_commit"]}
            for n, t in tables_of(lake)
        },
    }
    dest = REPO / "bench" / "results" / f"pipeline-sf{args.scale:g}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{dest}.json").write_text(json.dumps(result, indent=1))
    md = markdown(result)
    Path(f"{dest}.md").write_text(md)
    print("\n" + md)
    print(f"written {dest.relative_to(REPO)}.json and .md")


if __name__ == "__main__":
    main()
