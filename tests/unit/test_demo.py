"""The demo job: each step is the job of that name, with the arguments spark-submit.sh would give it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lakehouse import demo


def test_the_demo_runs_each_job_in_order_with_the_common_arguments_and_stops_at_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def step(name: str, code: int = 0):  # noqa: ANN202
        def run(argv: Sequence[str] | None) -> int:
            calls.append((name, list(argv or [])))
            return code

        return run

    names = ["generate_raw", "pipeline", "train", "score", "monitor", "model_card"]
    monkeypatch.setattr(
        demo, "_steps", lambda: [(n, step(n), ["--scale", "{scale}", "--days", "{days}"] if n == "generate_raw" else []) for n in names]
    )
    assert demo.main(["--scale", "0.02", "--days", "7", "--conf", "lake_root=/tmp/x", "--conf-dir", "/c", "--master", "local[1]"]) == 0
    common = ["--env", "local", "--conf-dir", "/c", "--conf", "lake_root=/tmp/x", "--master", "local[1]"]
    assert calls == [("generate_raw", ["--scale", "0.02", "--days", "7", *common])] + [(n, common) for n in names[1:]]
    assert "demo done in" in capsys.readouterr().out

    calls.clear()
    monkeypatch.setattr(demo, "_steps", lambda: [(n, step(n, 2 if n == "train" else 0), []) for n in names])
    assert demo.main(["--conf-dir", "/c"]) == 2
    assert [n for n, _ in calls] == ["generate_raw", "pipeline", "train"]
