#!/usr/bin/env bash
# Start or stop a Spark standalone cluster on 127.0.0.1 from pyspark's own scripts.
#
#   scripts/standalone-cluster.sh start [WORKERS]   # master spark://127.0.0.1:7077, WORKERS x (1 core, 2g)
#   scripts/standalone-cluster.sh stop
#   scripts/standalone-cluster.sh status
#
# Logs, pids and work dirs go to $LAKEHOUSE_CLUSTER_DIR (default build/cluster). The pip package
# of pyspark ships spark-daemon.sh but not start-master.sh/start-worker.sh, so this calls the
# daemon script with the Master and Worker classes directly.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${LAKEHOUSE_PYTHON:-$HERE/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "standalone-cluster.sh: no Python environment at $PY: run 'make setup' first" >&2; exit 2; }
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
DIR="${LAKEHOUSE_CLUSTER_DIR:-$HERE/build/cluster}"
PORT="${SPARK_MASTER_PORT:-7077}"
WEBUI="${SPARK_MASTER_WEBUI_PORT:-8080}"
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_IDENT_STRING=lakehouse
export SPARK_LOG_DIR="$DIR/logs" SPARK_PID_DIR="$DIR/pids" SPARK_WORKER_DIR="$DIR/work"
export PYSPARK_PYTHON="$PY" SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false"
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$SPARK_WORKER_DIR"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker
URL="spark://127.0.0.1:$PORT"

case "${1:-}" in
  start)
    n="${2:-1}"
    "$SPARK_HOME/sbin/spark-daemon.sh" start $MASTER_CLASS 1 --host 127.0.0.1 --port "$PORT" --webui-port "$WEBUI" >/dev/null
    for i in $(seq 1 "$n"); do
      "$SPARK_HOME/sbin/spark-daemon.sh" start $WORKER_CLASS "$i" --host 127.0.0.1 --cores 1 --memory 2g \
        --webui-port $((WEBUI + i)) "$URL" >/dev/null
    done
    for _ in $(seq 1 60); do
      alive=$(grep -h "Registering worker" "$SPARK_LOG_DIR"/*Master*.out 2>/dev/null | wc -l || true)
      [[ "$alive" -ge "$n" ]] && { echo "cluster up: $URL with $n worker(s); logs in $SPARK_LOG_DIR"; exit 0; }
      sleep 1
    done
    echo "standalone-cluster.sh: workers did not register within 60s (see $SPARK_LOG_DIR)" >&2
    exit 1 ;;
  stop)
    for pid in "$SPARK_PID_DIR"/*Worker*.pid; do
      [[ -f "$pid" ]] || continue
      i="${pid##*-}"; i="${i%.pid}"
      "$SPARK_HOME/sbin/spark-daemon.sh" stop $WORKER_CLASS "$i" >/dev/null || true
    done
    "$SPARK_HOME/sbin/spark-daemon.sh" stop $MASTER_CLASS 1 >/dev/null || true
    rm -f "$SPARK_LOG_DIR"/*.out
    echo "cluster stopped" ;;
  status)
    ls "$SPARK_PID_DIR"/*.pid 2>/dev/null || echo "no daemons" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
