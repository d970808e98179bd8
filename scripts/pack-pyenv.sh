#!/usr/bin/env bash
# Pack the Python environment the executors need into one archive, shipped with spark-submit's
# --archives (the env's `spark.python_archive`): on YARN, Kubernetes or a standalone cluster whose
# nodes lack our Python packages (native ones above all), each executor unpacks it as ./environment
# and runs ./environment/bin/python.
#
#   scripts/pack-pyenv.sh [OUT]     # default build/pyenv.tar.gz
#
# The archive holds the library's run-time dependencies except pyspark (the executors take it from
# the Spark installation: $SPARK_HOME/python/lib/pyspark.zip), delta-spark (its Python API runs on
# the driver only) and the lakehouse package itself (spark-submit.sh ships it with --py-files, one
# zip per code version). It is rebuilt only when
# setup.py changes. The nodes need the same Python (3.11) at the same path as this machine:
# venv-pack links the interpreter, it does not copy it (conda-pack does, for nodes without one).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$HERE/build/pyenv.tar.gz}"
PY="${LAKEHOUSE_PYTHON:-$HERE/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "pack-pyenv.sh: no Python environment at $PY: run 'make setup' first" >&2; exit 2; }
STAMP="$OUT.$(sha1sum "$HERE/setup.py" | cut -c1-12)"
if [[ -f "$OUT" && -f "$STAMP" ]]; then echo "$OUT is up to date"; exit 0; fi
BUILD="$HERE/build/pyenv-src"
rm -rf "$BUILD" "$OUT" "$OUT".*
BASE="$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3"
"$BASE" -m venv "$BUILD"
# run-time requirements of setup.py, without pyspark and delta-spark
REQS="$(cd "$HERE" && "$PY" - <<'PY'
import ast, pathlib
tree = ast.parse(pathlib.Path("setup.py").read_text())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        print("\n".join(r for r in ast.literal_eval(node.value) if not r.startswith(("pyspark", "delta-spark"))))
PY
)"
"$BUILD/bin/python" -m pip install -q --upgrade pip
mapfile -t REQ_ARR <<<"$REQS"
"$BUILD/bin/python" -m pip install -q "${REQ_ARR[@]}"
mkdir -p "$(dirname "$OUT")"
"$PY" -m venv_pack -p "$BUILD" -o "$OUT" -q
rm -rf "$BUILD"
touch "$STAMP"
echo "packed $(du -h "$OUT" | cut -f1) into $OUT"
