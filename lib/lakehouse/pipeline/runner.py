"""The pipeline job's logic: run layers in order, log each stage, print the summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from lakehouse.cli import context, parser
from lakehouse.pipeline import bronze, gold, silver
from lakehouse.pipeline.summary import reconcile, render, table_stats
from lakehouse.runlog import RunLog
from lakehouse.session import get_spark

log = logging.getLogger(__name__)

LAYERS = {"bronze": bronze.run, "silver": silver.run, "gold": gold.run}


def main(argv: Sequence[str] | None, layers: str = "bronze,silver,gold", summary: bool = True) -> int:
    """Parse the job's arguments, build the session and run the layers."""
    p = parser("Run lakehouse layers (bronze -> silver -> gold).")
    p.add_argument("--layers", default=layers, help=f"comma-separated layers, in order (default {layers})")
    p.add_argument("--tables", default="", help="comma-separated table names to restrict to")
    p.add_argument("--no-summary", action="store_true", default=not summary, help="skip the closing summary")
    args = p.parse_args(argv)
    chosen = [x for x in args.layers.split(",") if x]
    unknown = [x for x in chosen if x not in LAYERS]
    if unknown:
        p.error(f"unknown layer(s) {', '.join(unknown)} (known: {', '.join(LAYERS)})")
    ctx = context("pipeline", args)
    tables = [t for t in args.tables.split(",") if t]
    for t in tables:
        ctx.lake.spec(t)
    spark = get_spark(ctx.env, f"lakehouse-{'-'.join(chosen)}", args.master)
    runlog = RunLog(spark, ctx.lake, "pipeline", ctx.run_id, args.run_date, background=True)
    runlog.begin()
    stages: list[tuple[str, float, str]] = []
    for layer in chosen:
        t0 = time.monotonic()
        log.info("== %s ==", layer)
        try:
            LAYERS[layer](spark, ctx.lake, runlog, tables or None)
        except Exception:
            runlog.end("failed")
            raise
        secs = time.monotonic() - t0
        entries = [e for e in runlog.entries if e.table.startswith(layer + ".")]
        detail = ", ".join(f"{e.table.split('.', 1)[1]} +{e.rows_inserted}" for e in entries)
        log.info("== %s done in %.1fs: %s", layer, secs, detail)
        stages.append((layer, secs, detail))
    runlog.end()
    if not args.no_summary:
        print(render(stages, table_stats(spark, ctx.lake), reconcile(spark, ctx.lake), runlog.entries), flush=True)
    return 0
