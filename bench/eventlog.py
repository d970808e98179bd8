"""Read a Spark event log and predict the run's time on more cores and more data.

    .venv/bin/python bench/eventlog.py EVENT_LOG [--scale-up 100] [--cores 8,32,64]

An event log (``spark.eventLog.enabled=true``; one JSON event per line, plain or zstd) holds every
stage and task of an application. Per stage this sums the task time (the work), takes the longest
task (the stage's critical path: it cannot end before its slowest task), the shuffle and input
bytes, the skew (longest / median task), and the table the stage worked for (the job's
``lakehouse.table`` local property, set by the run log). The time no stage was running is the
driver's (planning, Delta log reads and commits, Python): it does not shrink with more cores.

The prediction, per stage, on N cores with the data grown k times. A stage that reads and
shuffles less than 1 MiB and whose tasks are short (< 1 s), or a stage of a job no table claims
(the run log's and metrics' appends), is bookkeeping (Delta log, commits, metrics): it does not
grow with the data. Any other stage gets k times the work in k times the
tasks: input splits and AQE's shuffle partitions multiply with the data, so its longest task stays
as measured, except where it cannot::

    work'    = work * k
    longest' = longest                     tasks multiply
             = longest * k                 skewed (longest task >= 4x the median and >= 2 s) after
                                           a shuffle: a hot key grows with the data
             = longest * min(k, 128 MiB / its bytes)
                                           skewed scan (no shuffle input: its tasks are file
                                           splits, one file larger than the others): that file
                                           grows to a split's worth, then splits (the raw zone's
                                           text and Parquet files are splittable)
             = longest * min(k, 128 MiB / bytes)
                                           one task over known bytes: it grows to a task's worth of
                                           data (the split and optimized-write bin size), then splits
    time(N)  = max(work' / N, longest')
    run(N)   = driver + sum of the stages' time(N)

Stages that overlapped in the measured run are summed, so the prediction errs long. At the scale
measured the model needs no assumption but the summing. Grown k times it is optimistic where
today's tasks are far below 128 MiB (they will grow before they multiply), and for single tasks
whose input the event log does not report (Delta's Parquet reads often show 0 bytes): these are
kept as measured (at this scale mostly the first task of a process, JIT and code generation) and
listed as ``single_task_stages`` to check by name. A stage stops scaling at N = work' / longest'; the first stage (lowest N) to
stop, the bookkeeping stages and the driver's time are what bound the scale-out.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TABLE_PROPERTY = "lakehouse.table"  # lakehouse.runlog.TABLE_PROPERTY
SKEW_RATIO = 4.0
SKEW_MIN_SECONDS = 2.0
DATA_BYTES = 1 << 20  # a stage whose tasks read less than this in all is bookkeeping, not data
TASK_BYTES = 128 << 20  # what Spark puts in one task once there is enough data


def _until_split(task_bytes: int, k: float) -> float:
    """How many times longer a task over ``task_bytes`` gets with k times the data: it grows to a
    task's worth (the split and optimized-write bin size), then the data splits into more tasks."""
    return min(k, max(1.0, TASK_BYTES / task_bytes))


@dataclass
class Stage:
    stage_id: int
    attempt: int
    name: str
    table: str
    tasks: int
    work_s: float  # sum of task wall times
    longest_s: float
    median_s: float
    span_s: float  # submission to completion
    start_ms: int
    end_ms: int
    input_bytes: int  # every input: files, and cached or checkpointed blocks read again
    longest_input_bytes: int  # the input of the longest task
    storage_bytes: int  # the input of stages that scan files (a stage mixing both counts whole)
    output_bytes: int
    shuffle_read_bytes: int
    shuffle_write_bytes: int

    @property
    def skewed(self) -> bool:
        return self.tasks > 1 and self.longest_s >= SKEW_MIN_SECONDS and self.longest_s >= SKEW_RATIO * self.median_s

    @property
    def uneven_splits(self) -> bool:
        """Skewed while reading files only (no shuffle input): one input split larger than the rest."""
        return self.skewed and self.shuffle_read_bytes == 0 and self.longest_input_bytes > 0

    @property
    def data_bytes(self) -> int:
        return self.input_bytes + self.shuffle_read_bytes

    @property
    def bookkeeping(self) -> bool:
        """Next to no data and short tasks: the Delta log, commits, metrics. Does not grow with the data."""
        return self.table == "(no table)" or (self.data_bytes < DATA_BYTES and self.longest_s < 1.0)

    @property
    def serial(self) -> bool:
        """One task over data (to check by name: one by construction, or because the data was small?)."""
        return self.tasks == 1 and not self.bookkeeping

    def work_at(self, k: float) -> float:
        return self.work_s if self.bookkeeping else self.work_s * k

    def longest_at(self, k: float) -> float:
        if self.bookkeeping:
            return self.longest_s
        if self.uneven_splits:
            return self.longest_s * _until_split(self.longest_input_bytes, k)
        if self.skewed:
            return self.longest_s * k
        if self.tasks == 1:
            return self.longest_s * (_until_split(self.data_bytes, k) if self.data_bytes >= DATA_BYTES else 1.0)
        return self.longest_s

    def time_at(self, cores: int, k: float = 1.0) -> float:
        return max(self.work_at(k) / cores, self.longest_at(k))

    def stops_scaling_at(self, k: float = 1.0) -> float:
        """Cores beyond which this stage gets no faster."""
        return self.work_at(k) / self.longest_at(k) if self.longest_at(k) > 0 else float("inf")


@dataclass
class App:
    name: str
    wall_s: float
    driver_s: float  # time with no stage running
    stages: list[Stage]

    def predict(self, cores: int, k: float = 1.0) -> float:
        return self.driver_s + sum(s.time_at(cores, k) for s in self.stages)

    def bottleneck(self, k: float = 1.0, min_share: float = 0.02) -> Stage | None:
        """The data stage that stops scaling at the fewest cores, among those holding at least
        ``min_share`` of the work."""
        data = [s for s in self.stages if not s.bookkeeping]
        total = sum(s.work_at(k) for s in data) or 1.0
        big = [s for s in data if s.work_at(k) / total >= min_share]
        return min(big, key=lambda s: s.stops_scaling_at(k), default=None)

    def bookkeeping_at(self, cores: int) -> float:
        return sum(s.time_at(cores) for s in self.stages if s.bookkeeping)

    def by_table(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for s in self.stages:
            t = out.setdefault(s.table, {"stages": 0, "work_s": 0.0, "longest_s": 0.0, "shuffle_bytes": 0, "input_bytes": 0})
            t["stages"] += 1
            t["work_s"] += s.work_s
            t["longest_s"] = max(t["longest_s"], s.longest_s)
            t["shuffle_bytes"] += s.shuffle_write_bytes
            t["input_bytes"] += s.input_bytes
        return out


def events(path: Path) -> Iterator[dict]:
    """The events of a log file, or of every ``events_*`` part of a rolling log folder."""
    files = sorted(path.glob("events_*"), key=lambda p: int(p.name.split("_")[1])) if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".zstd":
            import zstandard  # only for compressed logs

            stream: Iterable[str] = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f.open("rb")), encoding="utf-8")
        else:
            stream = f.open(encoding="utf-8")
        for line in stream:
            if line.strip():
                yield json.loads(line)


def union_ms(intervals: Sequence[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def read_app(path: Path) -> App:
    """Stages, tasks and the driver's time of one application's event log."""
    name, app_start, app_end = path.name, None, None
    stage_table: dict[int, str] = {}
    info: dict[tuple[int, int], dict] = {}
    tasks: dict[tuple[int, int], list[dict]] = {}
    for e in events(path):
        kind = e["Event"]
        if kind == "SparkListenerApplicationStart":
            name, app_start = e.get("App Name", name), e["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            app_end = e["Timestamp"]
        elif kind == "SparkListenerJobStart":
            table = (e.get("Properties") or {}).get(TABLE_PROPERTY) or "(no table)"
            for sid in e.get("Stage IDs", []):
                stage_table.setdefault(sid, table)
        elif kind == "SparkListenerStageCompleted":
            si = e["Stage Info"]
            info[(si["Stage ID"], si.get("Stage Attempt ID", 0))] = si
        elif kind == "SparkListenerTaskEnd":
            tasks.setdefault((e["Stage ID"], e.get("Stage Attempt ID", 0)), []).append(e)
    stages = []
    for key, si in sorted(info.items()):
        ts = tasks.get(key, [])
        if not ts or "Submission Time" not in si:
            continue  # skipped stage (its shuffle output was reused)
        walls = [(t["Task Info"]["Finish Time"] - t["Task Info"]["Launch Time"]) / 1000 for t in ts]
        m = [t.get("Task Metrics") or {} for t in ts]
        slowest = m[walls.index(max(walls))]
        sr = [x.get("Shuffle Read Metrics") or {} for x in m]
        stages.append(
            Stage(
                stage_id=key[0],
                attempt=key[1],
                name=si.get("Stage Name", ""),
                table=stage_table.get(key[0], "(no table)"),
                tasks=len(ts),
                work_s=sum(walls),
                longest_s=max(walls),
                median_s=statistics.median(walls),
                span_s=(si["Completion Time"] - si["Submission Time"]) / 1000,
                start_ms=si["Submission Time"],
                end_ms=si["Completion Time"],
                input_bytes=(inb := sum((x.get("Input Metrics") or {}).get("Bytes Read", 0) for x in m)),
                longest_input_bytes=(slowest.get("Input Metrics") or {}).get("Bytes Read", 0),
                storage_bytes=inb if any(r.get("Name") == "FileScanRDD" for r in si.get("RDD Info", [])) else 0,
                output_bytes=sum((x.get("Output Metrics") or {}).get("Bytes Written", 0) for x in m),
                shuffle_read_bytes=sum(r.get("Remote Bytes Read", 0) + r.get("Local Bytes Read", 0) for r in sr),
                shuffle_write_bytes=sum((x.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0) for x in m),
            )
        )
    if app_start is None:
        raise ValueError(f"{path}: not a Spark event log (no SparkListenerApplicationStart event)")
    end = app_end or max((s.end_ms for s in stages), default=app_start)
    busy = union_ms([(s.start_ms, s.end_ms) for s in stages])
    return App(name=name, wall_s=(end - app_start) / 1000, driver_s=max(0.0, (end - app_start - busy) / 1000), stages=stages)


def log_of(folder: Path) -> Path:
    """The one application log in ``folder`` (the bench gives each process its own folder)."""
    found = [p for p in folder.iterdir() if not p.name.startswith(".") and not p.name.endswith(".inprogress")]
    if len(found) != 1:
        raise ValueError(f"{folder}: expected one finished event log, found {[p.name for p in folder.iterdir()]}")
    return found[0]


def scale_out(app: App, cores: Sequence[int], k: float) -> dict:
    """The prediction of :func:`read_app`'s run on ``cores`` with ``k`` times the data."""
    b = app.bottleneck(k)
    pred = {n: app.predict(n, k) for n in cores}
    base = cores[0]
    return {
        "scale_up": k,
        "predicted_s": {str(n): round(t, 1) for n, t in pred.items()},
        "speedup_vs_first": {str(n): round(pred[base] / t, 2) for n, t in pred.items()},
        "driver_share": {str(n): round(app.driver_s / t, 3) for n, t in pred.items()},
        "bookkeeping_s": {str(n): round(app.bookkeeping_at(n), 1) for n in cores},
        "first_to_stop": None
        if b is None
        else {
            "table": b.table,
            "stage": b.stage_id,
            "name": b.name.split(" at ")[0],
            "tasks": b.tasks,
            "cores": round(b.stops_scaling_at(k)),
            "why": "uneven files" if b.uneven_splits else "skewed" if b.skewed else "one task" if b.serial else "longest task",
        },
    }


def summary(app: App) -> dict:
    return {
        "wall_s": round(app.wall_s, 1),
        "driver_s": round(app.driver_s, 1),
        "stages": len(app.stages),
        "work_s": round(sum(s.work_s for s in app.stages), 1),
        "model_at_2_cores_s": round(app.predict(2), 1),
        "input_bytes": sum(s.input_bytes for s in app.stages),
        "storage_bytes": sum(s.storage_bytes for s in app.stages),
        "shuffle_bytes": sum(s.shuffle_write_bytes for s in app.stages),
        "bookkeeping_stages": sum(1 for s in app.stages if s.bookkeeping),
        "bookkeeping_work_s": round(sum(s.work_s for s in app.stages if s.bookkeeping), 1),
        "single_task_stages": [
            {
                "table": s.table,
                "stage": s.stage_id,
                "name": s.name.split(" at ")[0],
                "mib": round(s.data_bytes / 2**20, 1),
                "s": round(s.longest_s, 1),
            }
            for s in app.stages
            if s.serial
        ],
        "by_table": {t: {k: round(v, 1) for k, v in d.items()} for t, d in app.by_table().items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", type=Path, help="an event log file, rolling-log folder, or a folder holding one log")
    p.add_argument("--scale-up", type=float, default=100.0)
    p.add_argument("--cores", default="8,32,64")
    args = p.parse_args()
    path = args.log
    if path.is_dir() and not path.name.startswith("eventlog_v2_"):
        path = log_of(path)
    app = read_app(path)
    cores = [int(c) for c in args.cores.split(",")]
    print(
        json.dumps({"summary": summary(app), "at_1x": scale_out(app, cores, 1.0), "scaled": scale_out(app, cores, args.scale_up)}, indent=1)
    )


if __name__ == "__main__":
    main()
