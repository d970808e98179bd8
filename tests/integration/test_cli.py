"""Jobs and spark-submit.sh: one-line causes and non-zero exits for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONF, REPO

pytestmark = pytest.mark.integration


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:") or ln.startswith("spark-submit.sh:")]


def test_unknown_job(tmp_path: Path) -> None:
    proc = run(["./spark-submit.sh", "no_such_job"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "spark-submit.sh: unknown job 'no_such_job' "
        "(known: bronze, demo, export_training_sample, generate_raw, gold, maintenance, model_card, monitor, pipeline, produce, "
        "promote, quality_profile, quality_report, replay, score, silver, stream, stream_demo, train)"
    )
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_config_fails_before_spark_with_file_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    path = conf / "tables" / "silver" / "transactions.yaml"
    path.write_text(path.read_text().replace("keys: [transaction_id]", "keys: [transaction_idd]"))
    proc = run([sys.executable, "jobs/pipeline.py", "--conf-dir", str(conf)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {path}: keys: column 'transaction_idd' is not in the schema"]


def test_unknown_environment_and_layer(tmp_path: Path) -> None:
    proc = run([sys.executable, "jobs/pipeline.py", "--env", "prod"])
    assert proc.returncode == 2 and "unknown environment 'prod'" in proc.stderr
    proc = run([sys.executable, "jobs/pipeline.py", "--layers", "bronze,platinum"])
    assert proc.returncode == 2 and "unknown layer(s) platinum" in proc.stderr


def test_unresolved_maven_packages_say_what_to_do(tmp_path: Path) -> None:
    proc = run([sys.executable, "-m", "lakehouse.cli", "submit-args"], LAKEHOUSE_CACHE_DIR=str(tmp_path / "empty-cache"))
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    packages = "io.delta:delta-spark_4.2_2.13:4.4.0, org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
    assert f"{packages} are not resolved yet: run `make setup`" in line


def test_unresolvable_maven_package_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    base = conf / "env" / "base.yaml"
    base.write_text(base.read_text().replace("io.delta:delta-spark_4.2_2.13:4.4.0", "org.example.nowhere:missing-lib_2.13:0.0.1"))
    proc = run([sys.executable, "-m", "lakehouse.cli", "warm", "--conf-dir", str(conf)], LAKEHOUSE_CACHE_DIR=str(tmp_path / "c"))
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("error: cannot resolve org.example.nowhere:missing-lib_2.13:0.0.1")


@pytest.mark.slow  # over 8 s here: left out of make test-fast
def test_spark_submit_runs_a_job_end_to_end(tmp_path: Path) -> None:
    proc = run(["./spark-submit.sh", "generate_raw", "--scale", "0.002", "--days", "1"], LAKEHOUSE_ROOT=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "raw" / "_manifests" / "2026-01-01.json").read_text())
    assert manifest["sources"]["transactions"]["records"] > 0
    noise = [ln for ln in proc.stderr.splitlines() if "lakehouse" not in ln and "incubator" not in ln]
    assert noise == [], "\n".join(noise)  # only the project's own progress lines
