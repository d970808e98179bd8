"""Write the sample raw zone: only the arrival days it does not hold yet."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import SourceError
from lakehouse.io import fs
from lakehouse.payments import generator as g

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    new_days: list[str]
    existing_days: list[str]
    records: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def existing_days(spark: SparkSession, raw_root: str) -> list[str]:
    """Arrival dates whose manifest exists (a day is complete once its manifest is written)."""
    names = [n for n, is_dir, _ in fs.list_dir(spark, f"{raw_root}/_manifests") if not is_dir]
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and not n.startswith("_"))


def generate_raw_zone(spark: SparkSession, params: g.GeneratorParams, raw_root: str, truth_root: str) -> GenerateResult:
    """Generate days ``0..params.days-1`` of the raw zone, skipping days already written.

    Raises:
        SourceError: the raw zone was generated with other parameters (seed, scale, start).
    """
    start = time.monotonic()
    ident_uri = f"{raw_root}/_manifests/_generator.json"
    if fs.exists(spark, ident_uri):
        found = json.loads(fs.read_text(spark, ident_uri))
        if found != params.identity():
            raise SourceError(
                f"{ident_uri}: the raw zone was generated with {found}, not {params.identity()}; "
                "use another LAKEHOUSE_ROOT or the same parameters"
            )
    have = set(existing_days(spark, raw_root))
    wanted = [params.day(d).isoformat() for d in range(params.days)]
    new = [d for d in range(params.days) if params.day(d).isoformat() not in have]
    result = GenerateResult(new_days=[params.day(d).isoformat() for d in new], existing_days=sorted(have & set(wanted)))
    if not new:
        log.info("raw zone already holds all %d days (%s..%s): nothing to generate", params.days, wanted[0], wanted[-1])
        return result
    log.info(
        "generating %d day(s) %s..%s at scale %s (%d payments/day, %d customers, %d merchants)",
        len(new),
        result.new_days[0],
        result.new_days[-1],
        params.scale,
        params.txns_per_day,
        params.customers,
        params.merchants,
    )
    made = tuple(df.persist(StorageLevel.MEMORY_AND_DISK) for df in g.entities(spark, params, params.days))
    records = g.records_by_source(spark, params, params.days, made)
    per_source: dict[str, dict[int, dict[str, object]]] = {}
    for source in g.SOURCES:
        t0 = time.monotonic()
        df = records[source].persist(StorageLevel.MEMORY_AND_DISK)
        per_source[source] = g.manifest_counts(df)
        g.write_day_folders(df, raw_root, source, params, new)
        g.write_defect_ledger(df, f"{truth_root}/defects", source, params, new)
        df.unpersist()
        n = sum(int(per_source[source].get(d, {}).get("records", 0)) for d in new)
        result.records[source] = n
        log.info("raw %s: %d records in %d day folder(s) (%.1fs)", source, n, len(new), time.monotonic() - t0)
    truth = g.fraud_truth(spark, params, params.days, made).where(F.col("arrival_day").isin(new))
    (
        truth.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("arrival_day")
        .parquet(f"{truth_root}/fraud_labels")
    )
    for df in made:
        df.unpersist()
    for d in new:
        fs.write_text_atomic(spark, f"{raw_root}/_manifests/{params.day(d).isoformat()}.json", g.manifest_json(params, d, per_source))
    fs.write_text_atomic(spark, ident_uri, json.dumps(params.identity(), sort_keys=True))
    result.seconds = round(time.monotonic() - start, 1)
    return result


def read_manifests(spark: SparkSession, raw_root: str) -> dict[str, dict[str, object]]:
    """Every day's manifest, by arrival date."""
    return {d: json.loads(fs.read_text(spark, f"{raw_root}/_manifests/{d}.json")) for d in existing_days(spark, raw_root)}


def generate_main(argv: Sequence[str] | None = None) -> int:
    """The ``generate_raw`` job: ``--scale``, ``--days``, ``--start-date``, ``--seed``."""
    from lakehouse.cli import context, parser
    from lakehouse.session import get_spark

    p = parser("Generate (or extend) the sample raw zone: card payments of an online marketplace.")
    p.add_argument("--scale", type=float, default=0.1, help="1.0 = about 1 million payments over 30 days")
    p.add_argument("--days", type=int, default=30, help="arrival days to hold (existing days are kept)")
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2026, 1, 1))
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    ctx = context("generate_raw", args)
    params = g.GeneratorParams(scale=args.scale, start_date=args.start_date, days=args.days, seed=args.seed)
    spark = get_spark(ctx.env, "lakehouse-generate_raw", args.master)
    result = generate_raw_zone(spark, params, ctx.env.paths.raw, ctx.env.paths.truth)
    print(
        f"raw zone {ctx.env.paths.raw}: {len(result.new_days)} new day(s), "
        f"{len(result.existing_days)} already there; records written {result.records or 0} in {result.seconds}s",
        flush=True,
    )
    return 0
