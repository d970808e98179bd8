"""Generate (or extend) the sample raw zone: card payments of an online marketplace.

./spark-submit.sh generate_raw --scale 0.1 --days 30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from lakehouse.cli import context, parser, run_job
from lakehouse.payments.generator import GeneratorParams
from lakehouse.pipeline.generate import generate_raw_zone
from lakehouse.session import get_spark


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.1, help="1.0 = about 1 million payments over 30 days")
    p.add_argument("--days", type=int, default=30, help="arrival days to hold (existing days are kept)")
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2026, 1, 1))
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    ctx = context("generate_raw", args)
    params = GeneratorParams(scale=args.scale, start_date=args.start_date, days=args.days, seed=args.seed)
    spark = get_spark(ctx.env, "lakehouse-generate_raw", args.master)
    result = generate_raw_zone(spark, params, ctx.env.paths.raw, ctx.env.paths.truth)
    print(
        f"raw zone {ctx.env.paths.raw}: {len(result.new_days)} new day(s), "
        f"{len(result.existing_days)} already there; records written {result.records or 0} in {result.seconds}s"
    )
    return 0


if __name__ == "__main__":
    run_job(main)
