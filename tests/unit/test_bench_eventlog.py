"""The benchmark's event-log reader and scale-out model (bench/eventlog.py), on a written log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import eventlog  # noqa: E402

T0 = 1_000_000


def task(stage: int, start_s: float, secs: float, *, input_bytes: int = 0, shuffle_write: int = 0, shuffle_read: int = 0) -> dict:
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Stage Attempt ID": 0,
        "Task Info": {"Launch Time": T0 + int(start_s * 1000), "Finish Time": T0 + int((start_s + secs) * 1000)},
        "Task Metrics": {
            "Input Metrics": {"Bytes Read": input_bytes},
            "Shuffle Write Metrics": {"Shuffle Bytes Written": shuffle_write},
            "Shuffle Read Metrics": {"Remote Bytes Read": 0, "Local Bytes Read": shuffle_read},
        },
    }


def stage_done(stage: int, name: str, start_s: float, end_s: float) -> dict:
    return {
        "Event": "SparkListenerStageCompleted",
        "Stage Info": {
            "Stage ID": stage,
            "Stage Attempt ID": 0,
            "Stage Name": name,
            "Submission Time": T0 + int(start_s * 1000),
            "Completion Time": T0 + int(end_s * 1000),
        },
    }


def write_log(tmp_path: Path, events: list[dict]) -> Path:
    """An event-log folder holding ``events``, one JSON per line."""
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "local-1").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return folder


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A 20 s application: 5 s of driver work, a 4-task scan of 32 MiB a task (4 x 2 s on 2 cores:
    4 s), a 0.5 s bookkeeping stage (no data), 2.5 s of driver work, a single-task stage over
    8 MiB (6 s), 2 s of driver work at the end."""
    events = [
        {"Event": "SparkListenerApplicationStart", "App Name": "lakehouse-silver", "Timestamp": T0},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Stage IDs": [0], "Properties": {"lakehouse.table": "silver.transactions"}},
        *[task(0, 5 + 2 * (i // 2), 2.0, input_bytes=32 << 20, shuffle_write=500) for i in range(4)],
        stage_done(0, "save at NativeMethodAccessorImpl.java:0", 5, 9),
        {"Event": "SparkListenerJobStart", "Job ID": 2, "Stage IDs": [2], "Properties": {}},
        task(2, 9, 0.5, input_bytes=4000),
        stage_done(2, "toString at String.java:0", 9, 9.5),
        {"Event": "SparkListenerJobStart", "Job ID": 1, "Stage IDs": [1], "Properties": {"lakehouse.table": "silver.customers"}},
        task(1, 12, 6.0, input_bytes=8 << 20),
        stage_done(1, "collect at x.py:1", 12, 18),
        {"Event": "SparkListenerApplicationEnd", "Timestamp": T0 + 20_000},
    ]
    return write_log(tmp_path, events)


def test_reads_stages_tables_and_the_drivers_time(log: Path) -> None:
    app = eventlog.read_app(eventlog.log_of(log))
    assert (app.name, app.wall_s, app.driver_s) == ("lakehouse-silver", 20.0, 9.5)
    scan, single, small = app.stages
    assert (scan.table, scan.tasks, scan.work_s, scan.longest_s, scan.input_bytes, scan.shuffle_write_bytes) == (
        "silver.transactions",
        4,
        8.0,
        2.0,
        128 << 20,
        2000,
    )
    assert (single.table, single.tasks, single.serial, scan.serial) == ("silver.customers", 1, True, False)
    assert (small.bookkeeping, single.bookkeeping, scan.bookkeeping) == (True, False, False)


def test_predicts_time_on_more_cores_and_more_data(log: Path) -> None:
    app = eventlog.read_app(eventlog.log_of(log))
    # on the measured 2 cores the model gives back the measured run
    assert app.predict(2) == pytest.approx(9.5 + 4 + 6 + 0.5)
    # 8 cores: the scan is bound by its longest task (2 s), the single task stays 6 s
    assert app.predict(8) == pytest.approx(9.5 + 2 + 6 + 0.5)
    # 100x the data on 64 cores: the scan's tasks grow to 128 MiB (8 s) and 800 s of work spreads
    # (12.5 s); the single task grows to 128 MiB (96 s), then splits; bookkeeping stays 0.5 s
    assert app.predict(64, 100) == pytest.approx(9.5 + 800 / 64 + 96 + 0.5)
    first = app.bottleneck(100)
    assert first is not None and (first.stage_id, first.stops_scaling_at(100)) == (1, pytest.approx(600 / 96))
    pred = eventlog.scale_out(app, [8, 32, 64], 100)
    assert (pred["first_to_stop"]["why"], pred["first_to_stop"]["cores"]) == ("one task", 6)
    assert pred["predicted_s"]["8"] == round(9.5 + 800 / 8 + 96 + 0.5, 1)
    assert pred["bookkeeping_s"]["64"] == 0.5


def test_a_skewed_scan_splits_as_its_large_file_grows_a_skewed_shuffle_does_not(tmp_path: Path) -> None:
    """Two 4-task stages whose first task takes 4 s and the others 0.5 s: a scan whose first file
    is 8 MiB (the others 0.5 MiB), and an aggregation reading a shuffle with one hot key."""
    events = [
        {"Event": "SparkListenerApplicationStart", "App Name": "lakehouse-bronze", "Timestamp": T0},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Stage IDs": [0, 1], "Properties": {"lakehouse.table": "bronze.customers"}},
        task(0, 0, 4.0, input_bytes=8 << 20),
        *[task(0, 0, 0.5, input_bytes=1 << 19) for _ in range(3)],
        stage_done(0, "save at NativeMethodAccessorImpl.java:0", 0, 4),
        task(1, 4, 4.0, shuffle_read=8 << 20),
        *[task(1, 4, 0.5, shuffle_read=1 << 19) for _ in range(3)],
        stage_done(1, "save at NativeMethodAccessorImpl.java:0", 4, 8),
        {"Event": "SparkListenerApplicationEnd", "Timestamp": T0 + 8_000},
    ]
    scan, agg = eventlog.read_app(eventlog.log_of(write_log(tmp_path, events))).stages
    assert (scan.skewed, scan.uneven_splits, scan.longest_input_bytes, agg.skewed, agg.uneven_splits) == (True, True, 8 << 20, True, False)
    # 100x the data: the 8 MiB file grows to 128 MiB splits (16x its time), the hot key 100x
    assert (scan.longest_at(100), agg.longest_at(100)) == (pytest.approx(64.0), pytest.approx(400.0))
    assert (scan.longest_at(1), agg.longest_at(1)) == (4.0, 4.0)


def test_a_file_that_is_not_an_event_log_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"Event": "SomethingElse"}\n')
    with pytest.raises(ValueError, match="notes.json: not a Spark event log"):
        eventlog.read_app(bad)
