"""The producer's pacing (records spread at the asked rate, a slow moment caught up, never run
ahead), and the stream tables kept out of the pipeline job."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.streaming.produce import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(round(s, 6))
        self.now += s


def test_records_are_spread_at_the_rate_and_a_slow_moment_is_caught_up() -> None:
    clock = Clock()
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep, burst=100)
    for n in range(1, 301):
        pacer.sent(n)  # sending itself takes no time: the pacer waits 0.1 s per 100 records
    assert clock.slept == [0.1, 0.1, 0.1]  # n records take n / rate seconds from the first
    clock.now += 0.25  # a slow moment (a GC pause): 0.55 s in, 300 records sent, 550 were due
    for n in range(301, 701):
        pacer.sent(n)
    # records 301..550 go without a wait (catching up), then the pace holds again
    assert clock.slept[3:] == [0.05, 0.1]
    assert clock.now == pytest.approx(100.0 + 0.7)


def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        Pacer(0)


def test_the_pipeline_refuses_a_stream_table_naming_the_stream_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.pipeline.runner import main as pipeline_main

    with pytest.raises(SystemExit) as exit_:
        pipeline_main(["--conf", f"lake_root={tmp_path}", "--tables", "bronze.transactions_stream"])
    assert exit_.value.code == 2
    assert "bronze.transactions_stream is a stream table: the stream job builds it" in capsys.readouterr().err
