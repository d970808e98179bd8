"""Where the project's folders are found, however the package was loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_the_project_root_is_found_from_the_zip_spark_submit_ships(tmp_path: Path) -> None:
    """spark-submit.sh loads the package from ``build/lakehouse-<hash>.zip``: the project root is
    still the folder holding ``jobs/`` and ``conf/`` (once it was ``build/``, and the stream demo
    looked for ``build/jobs/generate_raw.py``)."""
    project = tmp_path / "project"
    for d in ("jobs", "conf", "build"):
        (project / d).mkdir(parents=True)
    archive = project / "build" / "lakehouse-0123456789ab.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((REPO / "lib" / "lakehouse").rglob("*.py")):
            z.write(f, f.relative_to(REPO / "lib").as_posix())
    code = "import sys; sys.path.insert(0, sys.argv[1]); from lakehouse.session import project_root; print(project_root())"
    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUSE_HOME"}
    env["PYTHONPATH"] = ""  # not the editable install's lib/ first
    done = subprocess.run([sys.executable, "-S", "-c", code, str(archive)], cwd=tmp_path, env=env, capture_output=True, text=True)
    if "No module named" in done.stderr:  # -S leaves out site-packages (pyspark): then with them, the zip first
        done = subprocess.run([sys.executable, "-c", code, str(archive)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(project)
    # $LAKEHOUSE_HOME (spark-submit.sh sets it) wins
    env["LAKEHOUSE_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code, str(archive)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == str(tmp_path), done.stderr[-2000:]
