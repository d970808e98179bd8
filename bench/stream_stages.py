"""Benchmark: what one micro-batch of the real-time path costs, stage by stage, by batch size.

    .venv/bin/python bench/stream_stages.py [--root /tmp/bench-stream] [--sizes 10000,1000,10000,1000,40000]

Reads the base lake that ``bench/stream_bench.py`` builds under ``--root`` (one generated day,
the pipeline up to the feature tables, a champion) and writes nothing: the day's raw
transaction lines, repeated to each size, as Kafka records in memory, then per size, in one warm
session with nothing else running: bronze's parsing (``as_bronze``), silver's typing and rules
(``transform_batch`` and ``apply_expectations``, the reference tables read plainly and from
:class:`lakehouse.io.cached.CachedTables`), and the scorer's typing and decisions
(``Scorer.typed``, ``Scorer.decide``). Each stage is run to the end (a ``noop`` write or the
rules' aggregate). The first size pays the JVM's warm-up; compare the later ones. A stage whose
time barely moves from 1,000 to 40,000 rows is fixed cost per micro-batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/bench-stream")
    p.add_argument("--sizes", default="10000,1000,10000,1000,40000")
    args = p.parse_args()

    from lakehouse.config import load_env, load_tables
    from lakehouse.io.cached import CachedTables
    from lakehouse.ml import registry
    from lakehouse.ml.spec import load_model_spec
    from lakehouse.pipeline.silver import stream_feed, transform_batch
    from lakehouse.quality.context import checker, expectations_of
    from lakehouse.quality.expectations import apply_expectations
    from lakehouse.quality.metrics import QualityMetrics
    from lakehouse.runlog import TableRun
    from lakehouse.session import get_spark
    from lakehouse.streaming import bronze as kafka_bronze
    from lakehouse.streaming.jobs import KAFKA_SOURCE_SCHEMA
    from lakehouse.streaming.score import Scorer
    from lakehouse.tables import Lake

    base = Path(args.root) / "base"
    if not (base / "_ready").exists():
        raise SystemExit(f"no base lake at {base}: run bench/stream_bench.py --root {args.root} first")
    env = load_env(REPO / "conf", "local", [f"lake_root={base}", "spark.sql.shuffle.partitions=2"])
    lake = Lake(env, load_tables(REPO / "conf"))
    spark = get_spark(env, "bench-stream-stages")
    registry.configure(env)
    sizes = [int(x) for x in args.sizes.split(",")]
    lines: list[str] = []
    for f in sorted((base / "raw" / "transactions").glob("arrival_date=*/*")):
        lines += f.read_bytes().decode("utf-8", errors="replace").splitlines()
    lines = (lines * (max(sizes) // len(lines) + 1))[: max(sizes)]
    now = datetime.now(timezone.utc)
    records = spark.createDataFrame([(None, v.encode(), "t", i % 3, i, now, 0) for i, v in enumerate(lines)], KAFKA_SOURCE_SCHEMA)
    records = records.cache()
    records.count()
    stream, tx = lake.spec("silver.transactions").streamed_from, lake.spec("silver.transactions")
    assert stream is not None
    driver = stream_feed(lake, tx).driver
    rules = tuple(e for e in expectations_of(lake, tx) if e.check != "row_count")
    cached = CachedTables(spark, lake.path)
    model = load_model_spec(REPO / "conf", "fraud")

    def timed(label: str, fn: Callable[[], object]) -> None:
        t0 = time.monotonic()
        fn()
        print(f"  {label:<44} {time.monotonic() - t0:6.2f} s", flush=True)

    def noop(df) -> None:  # noqa: ANN001
        df.write.format("noop").mode("overwrite").save()

    for size in sizes:
        print(f"{size:,} records", flush=True)
        bronze = kafka_bronze.as_bronze(records.limit(size), lake.spec(stream), "bench").cache()
        timed("bronze: parse (as_bronze)", lambda: bronze.count())  # noqa: B023
        for how, read in (("plain reads", None), ("cached reference tables", cached.read)):

            def check(read=read) -> None:  # noqa: ANN001
                typed, _ = transform_batch(spark, lake, tx, bronze, "bench", driver, read)  # noqa: B023
                try:
                    apply_expectations(typed, rules, checker(spark, lake, tx, QualityMetrics(spark, lake), read)).unpersist()
                except Exception as exc:  # noqa: BLE001 - a fail rule on repeated lines: timed all the same
                    print(f"    ({type(exc).__name__}: {str(exc)[:80]})")

            timed(f"silver: transform and rules, {how}", check)
        scorer = Scorer(spark, lake, model, tx, "bench", TableRun(tx.name, now), tables=cached)
        timed("score: load champion and feature state", lambda: scorer.refresh(0))  # noqa: B023
        timed("score: typed (transform)", lambda: noop(scorer.typed(bronze)))  # noqa: B023
        timed("score: decide (typed, rules, features, model)", lambda: noop(scorer.decide(bronze)))  # noqa: B023
        bronze.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
