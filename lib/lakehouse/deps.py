"""JVM dependencies: resolve the Maven packages once, then start Spark from local jars.

``make setup`` calls :func:`warm`, which lets Spark's own Ivy resolution fetch the packages that
``spark.packages`` names (Delta Lake, later Kafka and JDBC drivers) into the Ivy cache and records
the resolved jar files in a small list keyed by the coordinates. Every later start uses that list
(``spark.jars`` / ``--jars``): no network, no Ivy chatter, and the same jars on a cluster because
spark-submit ships them to the executors.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lakehouse.errors import DependencyError


def cache_dir() -> Path:
    """Where resolved jar lists are kept (``$LAKEHOUSE_CACHE_DIR`` or ``~/.cache/lakehouse``)."""
    return Path(os.environ.get("LAKEHOUSE_CACHE_DIR", Path.home() / ".cache" / "lakehouse"))


def _list_file(packages: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:16]
    return cache_dir() / f"jars-{digest}.json"


def resolved_jars(packages: Sequence[str]) -> list[str]:
    """Return the local jar files for ``packages``, resolved earlier by :func:`warm`.

    Raises:
        DependencyError: never resolved, or a recorded jar has gone from the Ivy cache.
    """
    if not packages:
        return []
    f = _list_file(packages)
    if not f.is_file():
        raise DependencyError(
            f"Maven packages {', '.join(packages)} are not resolved yet: run `make setup` (needs Maven Central once; expected list {f})"
        )
    jars = json.loads(f.read_text())["jars"]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise DependencyError(
            f"{len(missing)} jar(s) resolved for {', '.join(packages)} are gone from the Ivy cache "
            f"(first: {missing[0]}): run `make setup` again"
        )
    return jars


_PROBE = """
import json, os, sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("lakehouse-resolve")
         .config("spark.jars.packages", sys.argv[1]).config("spark.ui.enabled", "false")
         .getOrCreate())
jars = spark.sparkContext.getConf().get("spark.jars", "")
print("JARS=" + json.dumps([os.path.normpath(j.removeprefix("file:")) for j in jars.split(",") if j]))
spark.stop()
"""


def warm(packages: Sequence[str], log_file: Path | None = None) -> list[str]:
    """Resolve ``packages`` through Spark's Ivy (Maven Central or the Ivy cache) and record them.

    Raises:
        DependencyError: with one line naming the packages and the log holding Ivy's report.
    """
    try:
        return resolved_jars(packages)
    except DependencyError:
        pass
    log_file = log_file or cache_dir() / "resolve.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(packages)],
        capture_output=True,
        text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    log_file.write_text(proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JARS=")]
    if proc.returncode != 0 or not lines:
        unresolved = [ln.strip() for ln in proc.stderr.splitlines() if "not found" in ln or "UNRESOLVED" in ln]
        cause = unresolved[-1] if unresolved else f"exit code {proc.returncode}"
        raise DependencyError(
            f"cannot resolve {', '.join(packages)}: not in the Ivy cache and Maven Central did not "
            f"serve it ({cause}); Ivy's report is in {log_file}"
        )
    jars = json.loads(lines[-1][len("JARS=") :])
    _list_file(packages).write_text(json.dumps({"packages": list(packages), "jars": jars}, indent=1))
    return jars
