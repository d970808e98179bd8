#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker and controller in one process) on 127.0.0.1,
# run from Kafka's own jars on Maven Central. No Docker, no mock.
#
#   scripts/kafka.sh fetch      # resolve the broker's jars once (Maven; offline afterwards)
#   scripts/kafka.sh start      # format the store if new, start, wait until it answers
#   scripts/kafka.sh stop       # SIGTERM (a clean shutdown), SIGKILL after 30 s
#   scripts/kafka.sh status
#
# KAFKA_PORT (9092; the controller listens on KAFKA_PORT+1) and KAFKA_DIR (data, log and pid:
# $LAKEHOUSE_ROOT/_servers/kafka, or lakehouse-data/_servers/kafka) choose where it runs. The
# jars go to $LAKEHOUSE_CACHE_DIR/kafka-<version> (~/.cache/lakehouse by default).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/scripts/kafka/pom.xml")"
LIBS="${LAKEHOUSE_CACHE_DIR:-$HOME/.cache/lakehouse}/kafka-$VERSION/libs"
ROOT="${LAKEHOUSE_ROOT:-$HERE/lakehouse-data}"
[[ "$ROOT" == *://* && "$ROOT" != file://* ]] && ROOT="$HERE/build"  # the broker's disk is local
DIR="${KAFKA_DIR:-${ROOT#file://}/_servers/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER=$((PORT + 1))
PIDFILE="$DIR/kafka.pid"
LOG="$DIR/server.log"

die() { echo "kafka.sh: $*" >&2; exit 1; }
alive() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

fetch() {
  [[ -f "$LIBS/.complete" ]] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed once to fetch the broker's jars"
  rm -rf "$LIBS"
  mvn -q -B -f "$HERE/scripts/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$LIBS" || die "could not resolve org.apache.kafka:kafka_2.13:$VERSION from Maven Central"
  touch "$LIBS/.complete"
  echo "Kafka $VERSION broker jars in $LIBS"
}

properties() {
  cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
}

start() {
  alive && { echo "Kafka already running: 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return 0; }
  answers && die "port $PORT on 127.0.0.1 is taken by another process: set KAFKA_PORT"
  [[ -f "$LIBS/.complete" ]] || die "the broker's jars are not fetched: run 'scripts/kafka.sh fetch' (or 'make setup')"
  command -v java >/dev/null || die "java not found: install Java 17"
  mkdir -p "$DIR"
  properties > "$DIR/server.properties"
  local cp="$LIBS/*"
  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    local id
    id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    java -cp "$cp" -Dlog4j2.configurationFile="$HERE/scripts/kafka/log4j2.properties" -Dkafka.logs.file="$LOG" \
      kafka.tools.StorageTool format --standalone -t "$id" -c "$DIR/server.properties" >/dev/null \
      || die "formatting the store in $DIR/data failed"
  fi
  nohup java -Xms256m -Xmx512m -XX:+UseSerialGC -cp "$cp" \
    -Dlog4j2.configurationFile="$HERE/scripts/kafka/log4j2.properties" -Dkafka.logs.file="$LOG" \
    kafka.Kafka "$DIR/server.properties" >"$DIR/stdout.log" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$LOG" 2>/dev/null && answers; then
      echo "Kafka $VERSION up: 127.0.0.1:$PORT (pid $(cat "$PIDFILE")); data and log in $DIR"
      return 0
    fi
    alive || die "the broker exited while starting: see $LOG and $DIR/stdout.log"
    sleep 0.5
  done
  die "the broker did not answer on 127.0.0.1:$PORT within 60 s: see $LOG"
}

stop() {
  alive || { rm -f "$PIDFILE"; echo "Kafka not running"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "Kafka stopped"; return 0; }; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "Kafka killed after 30 s without a clean shutdown"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) if alive; then echo "Kafka running: 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; else echo "Kafka not running"; exit 3; fi ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
