"""Benchmark: latency of the real-time path, from the produce timestamp, at several rates.

    .venv/bin/python bench/stream_bench.py [--rates 1000,5000,20000] [--seconds 30] [--root /tmp/bench-stream]
                                           [--modes micro-batch,real-time] [--trigger 500ms]

``make bench-stream`` runs it. Once per ``--root``: a small lake (one generated day, the pipeline
up to the feature tables), a champion model (the production model's MLlib pipeline fitted on
that day with a synthetic label: the model's quality does not matter here, its plan does), and a
Kafka broker from ``scripts/kafka.sh``. Then for each scoring mode and rate, on a copy of that
lake and a topic of its own:

1. ``jobs/stream.py --layers bronze,silver,score --trigger <trigger>`` starts (with
   ``--real-time`` for Real-time Mode scoring; ``--layers score``: the decision path alone, as a
   job of its own); a warm-up burst must come back as decisions first;
2. the producer sends valid payments (the generated day's, each with a new id and an event time
   that advances with the clock) at the rate for ``--seconds`` (default 20);
3. the decisions topic is read until every payment has its decision (or a timeout), then the job
   gets SIGTERM;
4. from each payment's Kafka timestamp (set when the producer sent it): the bronze commit
   (``_commit_timestamp`` of the change data feed row), the silver commit (likewise), and the
   decision record's own Kafka timestamp; p50 / p95 / p99 of each.

A rate is *sustained* when the producer kept it (95 %), every payment was decided, and the
stream kept up: bronze p99 under ``SUSTAINED_BRONZE_P99`` (10 s). A stream slower than the rate
falls behind by a growing amount, which over a 20 s run shows as latencies of the order of the
run itself (the first and last thirds' bronze p50 are reported too).

Writes ``bench/results/stream.json`` and ``stream.md`` with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO))

DAY = "2026-01-01"
FULL = "bronze,silver,score"
"""The stream job's layers by default: every Delta layer and scoring in one job."""
SETUP_TABLES = (
    "bronze.customers,bronze.merchants,bronze.fx_rates,bronze.transactions,bronze.chargebacks,"
    "silver.customers,silver.merchants,silver.fx_rates,silver.transactions,silver.chargebacks,"
    "gold.customer_features,gold.merchant_features"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(values: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    a = np.array(values)
    return {"n": len(values), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def conf_for(root: Path, topic: str) -> Path:
    """A copy of conf/ whose stream table reads ``topic`` and whose decisions go to ``topic``-decisions."""
    conf = root / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(REPO / "conf", conf)
    table = conf / "tables" / "bronze" / "transactions_stream.yaml"
    table.write_text(table.read_text().replace("topic: payments", f"topic: {topic}"))
    model = conf / "models" / "fraud.yaml"
    model.write_text(model.read_text().replace("topic: fraud-decisions", f"topic: {topic}-decisions"))
    return conf


def setup(root: Path) -> Path:
    """The base lake (generated day, pipeline, champion), built once per root."""
    base = root / "base"
    if (base / "_ready").exists():
        return base
    if base.exists():
        shutil.rmtree(base)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    args = ["--conf", f"lake_root={base}", "--conf", "spark.sql.shuffle.partitions=4"]
    subprocess.run([sys.executable, "jobs/generate_raw.py", *args, "--scale", "0.01", "--days", "1"], cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, "jobs/pipeline.py", *args, "--tables", SETUP_TABLES, "--no-summary"], cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, __file__, "--register", str(base)], cwd=REPO, env=env, check=True)
    (base / "_ready").touch()
    return base


def register(base: Path) -> None:
    """Fit the model on the day's payments (synthetic label) and make it the champion."""
    import mlflow
    from pyspark.sql import functions as F

    from lakehouse.config import load_env, load_tables
    from lakehouse.features.payments import transaction_features
    from lakehouse.ml import registry
    from lakehouse.ml.lifecycle import log_and_register
    from lakehouse.ml.spec import load_model_spec
    from lakehouse.ml.train import fit
    from lakehouse.session import get_spark
    from lakehouse.tables import Lake

    env = load_env(REPO / "conf", "local", [f"lake_root={base}"])
    lake = Lake(env, load_tables(REPO / "conf"))
    spark = get_spark(env, "bench-stream-register")
    t = {
        n: spark.read.format("delta").load(lake.path(n))
        for n in ("silver.transactions", "gold.customer_features", "gold.merchant_features", "silver.customers")
    }
    rows = transaction_features(t["silver.transactions"], t["gold.customer_features"], t["gold.merchant_features"], t["silver.customers"])
    spec = load_model_spec(REPO / "conf", "fraud")
    _, artifacts = registry.configure(env)
    with mlflow.start_run(experiment_id=registry.experiment_id(spec.name, artifacts)) as run:
        mv = log_and_register(spec, fit(rows.withColumn("label", (F.col("payment_amount") > 60).cast("int")), spec), run.info.run_id)
    registry.set_alias(spec.name, registry.CHAMPION, mv.version)
    spark.stop()


def payloads(base: Path) -> list[dict]:
    """The generated day's payments that silver holds (valid ones), as dicts."""
    import pyarrow.dataset as ds

    valid = set(
        ds.dataset(str(base / "tables" / "silver" / "transactions"), format="parquet")
        .to_table(columns=["transaction_id"])
        .column(0)
        .to_pylist()
    )
    out = []
    for f in sorted((base / "raw" / "transactions").glob("arrival_date=*/*")):
        for line in f.read_bytes().decode("utf-8", errors="replace").splitlines():  # the generator writes a bad byte or two
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and v.get("transaction_id") in valid:
                out.append(v)
    return out


class Decisions(threading.Thread):
    """Reads the decisions topic: per payment id, the first decision record's Kafka timestamp (ms)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time()}", "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topic])
        self.seen: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            key = msg.key().decode()
            self.seen.setdefault(key, msg.timestamp()[1])
        self.consumer.close()


def send(producer, topic: str, pool: list[dict], prefix: str, rate: float, seconds: float, start: datetime) -> dict[str, int]:  # noqa: ANN001
    """Send payments at ``rate`` for ``seconds``; each id's produce timestamp (ms)."""
    from lakehouse.streaming.produce import Pacer

    sent: dict[str, int] = {}
    pacer = Pacer(rate)
    n = int(rate * seconds)
    t0 = time.time()
    for i in range(n):
        v = dict(pool[i % len(pool)])
        now = time.time()
        at = (start + timedelta(seconds=now - t0)).strftime("%Y-%m-%dT%H:%M:%S") + "Z"
        v.update(transaction_id=f"{prefix}-{i}", event_time=at, updated_at=at)
        stamp = int(now * 1000)
        producer.produce(topic, key=v["customer_id"], value=json.dumps(v), timestamp=stamp)
        sent[v["transaction_id"]] = stamp
        if i % 1000 == 0:
            producer.poll(0)
        pacer.sent(i + 1)
    producer.flush(60)
    return sent


def one_run(
    root: Path,
    base: Path,
    bootstrap: str,
    mode: str,
    rate: int,
    seconds: float,
    trigger: str,
    scheduler: str = "FAIR",
    layers: str = FULL,
) -> dict:
    from confluent_kafka import Producer

    from lakehouse.streaming.produce import ensure_topic, producer_config

    name = f"{mode}-{rate}" + ("" if scheduler == "FAIR" else f"-{scheduler.lower()}")
    name += "" if layers == FULL else "-" + layers.replace(",", "-")
    topic = f"bench-{name}-{int(time.time())}"
    run_root = root / name
    if run_root.exists():
        shutil.rmtree(run_root)
    run_root.mkdir(parents=True)
    lake = run_root / "lake"
    shutil.copytree(base, lake)
    conf = conf_for(run_root, topic)
    ensure_topic(bootstrap, topic, 3)
    ensure_topic(bootstrap, f"{topic}-decisions", 3)
    decisions = Decisions(bootstrap, f"{topic}-decisions")
    decisions.start()
    cmd = [
        sys.executable,
        "jobs/stream.py",
        "--conf-dir",
        str(conf),
        "--conf",
        f"lake_root={lake}",
        "--conf",
        f"endpoints.kafka={bootstrap}",
    ]
    cmd += ["--conf", "spark.sql.shuffle.partitions=2", "--layers", layers, "--trigger", trigger]
    cmd += ["--conf", f"spark.scheduler.mode={scheduler}"]  # the job's default: FAIR, a pool per query
    if mode == "real-time":
        # Real-time Mode holds a task per Kafka partition for the whole checkpoint interval
        cmd += ["--real-time", "1 minute", "--master", "local[8]"]
    log_file = run_root / "stream.log"
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, stdout=log_file.open("w"), stderr=subprocess.STDOUT
    )
    pool = payloads(base)
    producer = Producer(producer_config(bootstrap))
    start = datetime.fromisoformat(f"{DAY}T12:00:00+00:00")
    result: dict = {"mode": mode, "rate": rate, "seconds": seconds, "trigger": trigger, "scheduler": scheduler, "layers": layers}
    try:
        warm = send(producer, topic, pool, f"warm-{name}", 50, 1, start)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(k in decisions.seen for k in warm):
            if proc.poll() is not None:
                raise RuntimeError(f"{name}: the stream job exited {proc.returncode}:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.5)
        result["warmup_seconds"] = round(300 - (deadline - time.monotonic()), 1)
        t0 = time.monotonic()
        sent = send(producer, topic, pool, f"p-{name}", rate, seconds, start + timedelta(minutes=5))
        result["achieved_rate"] = round(len(sent) / (time.monotonic() - t0), 1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(k in decisions.seen for k in sent) < len(sent):
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
        decisions.stop.set()
        decisions.join(10)
    result["decided"] = sum(k in decisions.seen for k in sent)
    result["sent"] = len(sent)
    result["decision_ms"] = percentiles([decisions.seen[k] - t for k, t in sent.items() if k in decisions.seen])
    commit = commit_latencies(lake, sent)
    result.update(commit)
    order = sorted(sent, key=sent.get)
    third = max(1, len(order) // 3)
    b = commit.pop("_bronze_by_id")
    commit.pop("_silver_by_id", None)
    result["bronze_p50_first_third_ms"] = percentiles([b[k] for k in order[:third] if k in b])["p50"]
    result["bronze_p50_last_third_ms"] = percentiles([b[k] for k in order[-third:] if k in b])["p50"]
    result["sustained"] = is_sustained(result)
    result.pop("_bronze_by_id", None)
    result.pop("_silver_by_id", None)
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}), flush=True)
    return {k: v for k, v in result.items() if not k.startswith("_")}


SUSTAINED_BRONZE_P99 = 10_000.0


def is_sustained(r: dict) -> bool:
    """The rate was kept, every payment decided, and bronze kept up (see the module doc); with
    scoring alone (no bronze), the decisions kept up."""
    p99 = r["bronze_ms"]["p99"] if r["bronze_ms"]["n"] else r["decision_ms"]["p99"]
    kept = r.get("achieved_rate", 0) >= 0.95 * r["rate"] and r["decided"] == r["sent"]
    return bool(kept and p99 is not None and p99 < SUSTAINED_BRONZE_P99)


def commit_latencies(lake: Path, sent: dict[str, int]) -> dict:
    """Bronze and silver commit latencies (ms) of the sent payments, from the change data feeds."""
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO / "lib")!r})
from lakehouse.config import load_env
from lakehouse.session import get_spark
from pyspark.sql import functions as F
env = load_env({str(REPO / "conf")!r}, "local", ["lake_root={lake}"])
spark = get_spark(env, "bench-stream-latency")
def cdf(path):
    return spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path)
b = cdf("{lake}/tables/bronze/transactions_stream").where("transaction_id LIKE 'p-%'").select(
    "transaction_id", (F.unix_millis("_commit_timestamp")).alias("c"))
s = cdf("{lake}/tables/silver/transactions").where("_change_type = 'insert' AND transaction_id LIKE 'p-%'").select(
    "transaction_id", (F.unix_millis("_commit_timestamp")).alias("c"))
print("RESULT" + json.dumps({{"bronze": {{r[0]: r[1] for r in b.collect()}}, "silver": {{r[0]: r[1] for r in s.collect()}}}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[6:])
    bronze = {k: got["bronze"][k] - t for k, t in sent.items() if k in got["bronze"]}
    silver = {k: got["silver"][k] - t for k, t in sent.items() if k in got["silver"]}
    return {
        "bronze_ms": percentiles(list(bronze.values())),
        "silver_ms": percentiles(list(silver.values())),
        "_bronze_by_id": bronze,
        "_silver_by_id": silver,
    }


def machine() -> dict:
    import psutil
    import pyspark

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "platform": platform.platform(),
        "spark": pyspark.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(r: dict) -> str:
    def ms(p: dict) -> str:
        return " / ".join("-" if p[k] is None else f"{p[k] / 1000:.2f}" for k in ("p50", "p95", "p99"))

    lines = [
        "# Real-time path latency (`make bench-stream`)",
        "",
        "Machine: {cores} cores, {memory_gib} GiB, {cpu}; Spark {spark}; {date}.".format(**r["machine"]),
        f"Command: `{r['command']}`",
        "",
        "Seconds from the produce timestamp, p50 / p95 / p99. Decisions: the decision record's Kafka timestamp.",
        "",
        "| layers | mode | scheduler | rate (ev/s) | achieved | bronze commit | silver commit | decision | decided / sent | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        lines.append(
            f"| {x.get('layers', FULL)} | {x['mode']} | {x.get('scheduler', 'FIFO')} | {x['rate']:,} | {x.get('achieved_rate', 0):,.0f} | "
            f"{ms(x['bronze_ms'])} | {ms(x['silver_ms'])} | "
            f"{ms(x['decision_ms'])} | {x['decided']:,} / {x['sent']:,} | {'yes' if x['sustained'] else 'no'} |"
        )
    lines += [
        "",
        f"Sustained: the rate kept (95 %), every payment decided, bronze p99 under {SUSTAINED_BRONZE_P99 / 1000:.0f} s "
        "(decisions p99 when the job only scores; a stream slower than the rate falls further behind through the run).",
    ]

    def kind(x: dict) -> tuple[str, str, str]:
        return (x.get("layers", FULL), x["mode"], x.get("scheduler", "FIFO"))

    for k in dict.fromkeys(kind(x) for x in r["runs"]):
        kept = [x["rate"] for x in r["runs"] if kind(x) == k and x["sustained"]]
        lines.append(f"Highest rate sustained, {', '.join(k)}: {f'{max(kept):,} payments/s' if kept else 'none of those tried'}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="1000,5000,20000")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--modes", default="micro-batch,real-time")
    p.add_argument("--trigger", default="500ms")
    p.add_argument(
        "--layers",
        default=FULL,
        help="the stream job's --layers, each in turn, separated by ';': e.g. 'bronze,silver,score;score' (scoring alone)",
    )
    p.add_argument("--schedulers", default="FAIR", help="the stream job's spark.scheduler.mode, each in turn: FAIR, FIFO or FAIR,FIFO")
    p.add_argument("--root", default="/tmp/bench-stream")
    p.add_argument("--register", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rewrite", action="store_true", help="only rewrite the markdown (and the sustained flags) from the JSON")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "stream"))
    args = p.parse_args()
    if args.register:
        register(Path(args.register))
        return 0
    if args.rewrite:
        result = json.loads(Path(f"{args.out}.json").read_text())
        for x in result["runs"]:
            x.pop("lag_grew", None)
            x["sustained"] = is_sustained(x)
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
        Path(f"{args.out}.md").write_text(markdown(result))
        print(markdown(result))
        return 0
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    base = setup(root)
    port = free_port()
    kenv = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DIR": str(root / "kafka")}
    subprocess.run(["scripts/kafka.sh", "start"], cwd=REPO, env=kenv, check=True)
    runs = []
    try:
        for mode in args.modes.split(","):
            for rate in [int(x) for x in args.rates.split(",")]:
                for layers in args.layers.split(";"):
                    for scheduler in args.schedulers.split(","):
                        runs.append(one_run(root, base, f"127.0.0.1:{port}", mode, rate, args.seconds, args.trigger, scheduler, layers))
    finally:
        subprocess.run(["scripts/kafka.sh", "stop"], cwd=REPO, env=kenv, check=False)
    result = {"machine": machine(), "command": "python bench/stream_bench.py " + shlex.join(sys.argv[1:]), "runs": runs}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
