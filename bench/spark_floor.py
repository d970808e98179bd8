"""Floor: what Spark needs just to read a stage's input and write it as Parquet, nothing else.

    .venv/bin/python bench/spark_floor.py --stage bronze|silver|gold --raw RAW --lake LAKE --out OUT [--conf k=v ...]

bronze: every raw source (as the bronze table declares it: format, schema, options) to Parquet;
silver: every bronze table's rows to Parquet; gold: the silver tables gold reads, to Parquet.
Same session settings as the pipeline (local environment, Delta, AQE, row-group size), so the
ratio pipeline / floor is the cost of what the pipeline does beyond moving the bytes: typing,
checks, deduplication, joins, MERGE and the Delta log. Prints rows per table as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import load_env, load_tables
from lakehouse.session import default_conf_dir, get_spark
from lakehouse.tables import Lake


def inputs(spark: SparkSession, lake: Lake, stage: str) -> dict[str, DataFrame]:
    if stage == "bronze":
        out = {}
        for spec in lake.layer("bronze"):
            assert spec.source is not None
            reader = spark.read.format(spec.source.format).schema(spec.schema).options(**dict(spec.source.options))
            if spec.source.format == "csv":
                reader = reader.option("header", "true")
            out[spec.name] = reader.load(f"{lake.raw_path(spec.name)}/arrival_date=*")
        return out
    upstream = "bronze" if stage == "silver" else "silver"
    names = sorted({u for s in lake.layer(stage) for u in s.upstream if u.startswith(upstream + ".")})
    return {n: spark.read.format("delta").load(lake.path(n)) for n in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("bronze", "silver", "gold"), required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--lake", required=True, help="lake root holding the stage's input tables")
    p.add_argument("--out", required=True)
    p.add_argument("--conf", action="append", default=[], help="Spark setting key=value (the event log)")
    args = p.parse_args()
    env = load_env(default_conf_dir(), "local", [f"lake_root={args.lake}", f"paths.raw={args.raw}"])
    lake = Lake(env, load_tables(default_conf_dir()))
    spark = get_spark(env, f"floor-{args.stage}", extra_conf=dict(c.split("=", 1) for c in args.conf))
    t0 = time.monotonic()
    rows = {}
    for name, df in inputs(spark, lake, args.stage).items():
        df.write.mode("overwrite").parquet(f"{args.out}/{args.stage}/{name}")
        rows[name] = spark.read.parquet(f"{args.out}/{args.stage}/{name}").count()
    spark.stop()
    print(json.dumps({"stage": args.stage, "seconds": round(time.monotonic() - t0, 2), "rows": rows}))


if __name__ == "__main__":
    main()
