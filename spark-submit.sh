#!/usr/bin/env bash
# Run a job of jobs/ with spark-submit, locally or against a cluster.
#
#   ./spark-submit.sh [--env local|cluster] [--master URL] JOB [JOB ARGS...]
#
# Packages lib/ once per code version (build/lakehouse-<hash>.zip, shipped with --py-files),
# renders master, jars and JVM options from conf/env/<env>.yaml, and passes --env/--master on to
# the job. The Maven packages must have been resolved once (`make setup`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENV_NAME="local"
MASTER=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) ENV_NAME="${2:?--env needs a value}"; shift 2 ;;
    --env=*) ENV_NAME="${1#--env=}"; shift ;;
    --master) MASTER="${2:?--master needs a value}"; shift 2 ;;
    --master=*) MASTER="${1#--master=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
known_jobs() { (cd "$HERE/jobs" && ls *.py | sed 's/\.py$//' | paste -sd, - | sed 's/,/, /g'); }
JOB="${1:-}"
if [[ -z "$JOB" ]]; then
  echo "spark-submit.sh: no job given (known: $(known_jobs))" >&2
  exit 2
fi
shift
JOB_FILE="$HERE/jobs/$JOB.py"
if [[ ! -f "$JOB_FILE" ]]; then
  echo "spark-submit.sh: unknown job '$JOB' (known: $(known_jobs))" >&2
  exit 2
fi

PY="${LAKEHOUSE_PYTHON:-$HERE/.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
  echo "spark-submit.sh: no Python environment at $PY: run 'make setup' first" >&2
  exit 2
fi
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export LAKEHOUSE_CONF_DIR="${LAKEHOUSE_CONF_DIR:-$HERE/conf}"
export LAKEHOUSE_HOME="${LAKEHOUSE_HOME:-$HERE}"  # jobs/ and scripts/, for jobs that start others (stream_demo)
export LAKEHOUSE_GIT_COMMIT="${LAKEHOUSE_GIT_COMMIT:-$(git -C "$HERE" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"

# One zip of lib/ per code version.
HASH="$(cd "$HERE/lib" && find lakehouse -name '*.py' -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-12)"
ZIP="$HERE/build/lakehouse-$HASH.zip"
if [[ ! -f "$ZIP" ]]; then
  mkdir -p "$HERE/build"
  rm -f "$HERE"/build/lakehouse-*.zip
  (cd "$HERE/lib" && find lakehouse -name '*.py' | sort | "$PY" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for line in sys.stdin:
        z.write(line.strip())
' "$ZIP.tmp") && mv "$ZIP.tmp" "$ZIP"
fi

MASTER_ARGS=()
[[ -n "$MASTER" ]] && MASTER_ARGS=(--master "$MASTER")
if ! RENDERED="$("$PY" -m lakehouse.cli submit-args --env "$ENV_NAME" "${MASTER_ARGS[@]}")"; then
  exit 2
fi
mapfile -t SUBMIT_ARGS <<<"$RENDERED"

exec "$SPARK_HOME/bin/spark-submit" "${SUBMIT_ARGS[@]}" --py-files "$ZIP" \
  "$JOB_FILE" --env "$ENV_NAME" "${MASTER_ARGS[@]}" "$@"
