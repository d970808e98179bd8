"""The pipeline job's logic: run layers in order, log each stage, print the summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from lakehouse.cli import add_wait, context, parser
from lakehouse.errors import ReconciliationError
from lakehouse.leases import leased
from lakehouse.pipeline import bronze, gold, silver
from lakehouse.pipeline.summary import mismatches, reconcile, render, table_stats
from lakehouse.runlog import RunLog
from lakehouse.session import get_spark
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

LAYERS = {"bronze": bronze.run, "silver": silver.run, "gold": gold.run}


def downstream(lake: Lake, blocked: Sequence[str]) -> set[str]:
    """``blocked`` and every table that reads one of them, directly or not."""
    out = set(blocked)
    for layer in ("silver", "gold"):
        for spec in lake.layer(layer):  # topological: a table after the same-layer tables it reads
            if any(u in out for u in spec.upstream):
                out.add(spec.name)
    return out


def main(argv: Sequence[str] | None, layers: str = "bronze,silver,gold", summary: bool = True) -> int:
    """Parse the job's arguments, build the session and run the layers."""
    p = parser("Run lakehouse layers (bronze -> silver -> gold).")
    p.add_argument("--layers", default=layers, help=f"comma-separated layers, in order (default {layers})")
    p.add_argument("--tables", default="", help="comma-separated table names to restrict to")
    p.add_argument("--no-summary", action="store_true", default=not summary, help="skip the closing summary")
    add_wait(p, 1800.0)  # a scheduler that fired twice: the second run waits, then finds nothing to do
    args = p.parse_args(argv)
    chosen = [x for x in args.layers.split(",") if x]
    unknown = [x for x in chosen if x not in LAYERS]
    if unknown:
        p.error(f"unknown layer(s) {', '.join(unknown)} (known: {', '.join(LAYERS)})")
    ctx = context("pipeline", args)
    tables = [t for t in args.tables.split(",") if t]
    streams = {s.name for s in ctx.lake.streams()}
    for t in tables:
        ctx.lake.spec(t)
        if t in streams:
            p.error(f"{t} is a stream table: the stream job builds it (./spark-submit.sh stream --tables {t})")
    spark = get_spark(ctx.env, f"lakehouse-{'-'.join(chosen)}", args.master)
    # checked before anything is written: a source with nothing delivered yet is skipped with
    # what reads it (a required one, or a broken delivery, stops the run here)
    skipped = downstream(ctx.lake, bronze.undelivered(spark, ctx.lake, tables or None)) if "bronze" in chosen else set()
    plan = {layer: [s.name for s in ctx.lake.select(layer, tables or None) if s.name not in skipped] for layer in chosen}
    writes = [name for names in plan.values() for name in names]
    runlog = RunLog(spark, ctx.lake, "pipeline", ctx.run_id, args.run_date, background=True)
    with leased(spark, ctx.lake, ctx.run_id, "pipeline", writes, wait=args.wait) as leases:
        runlog.begin()
        stages: list[tuple[str, float, str]] = []
        for layer in chosen:
            t0 = time.monotonic()
            log.info("== %s ==", layer)
            try:
                leases.check()
                if plan[layer]:
                    LAYERS[layer](spark, ctx.lake, runlog, plan[layer])
            except Exception as exc:
                runlog.end("failed", f"{type(exc).__name__}: {exc}")
                raise
            runlog.save()  # the layer's run-log and metrics rows, one commit each, written beside the next layer
            secs = time.monotonic() - t0
            entries = [e for e in runlog.entries if e.table.startswith(layer + ".")]
            detail = ", ".join(f"{e.table.split('.', 1)[1]} +{e.rows_inserted}" for e in entries)
            if any(n.startswith(layer + ".") for n in skipped):
                detail += f" (skipped, nothing delivered yet: {', '.join(sorted(n for n in skipped if n.startswith(layer + '.')))})"
            log.info("== %s done in %.1fs: %s", layer, secs, detail)
            stages.append((layer, secs, detail))
        # every run checks the accounting of the silver tables it changed (read bronze rows
        # into): a table that absorbed nothing is as the run that changed it last left it, and
        # that run checked it; the summary shows (and so checks) every silver table of the run
        built = [e.table for e in runlog.entries if e.table.startswith("silver.") and (e.rows_read or not args.no_summary)]
        stats = None if args.no_summary else table_stats(spark, ctx.lake, tables or None)
        counted = {name: rows for name, rows, *_ in stats or []}
        recon = reconcile(spark, ctx.lake, built, counted) if built else []
        problem = mismatches(recon)
        runlog.end("failed" if problem else "finished", f"reconciliation: {problem}" if problem else None)
    if not args.no_summary:
        print(render(stages, stats or [], recon, runlog.entries), flush=True)
    if problem:
        raise ReconciliationError(f"reconciliation failed: {problem}; run {ctx.run_id} is marked failed in ops.run_log")
    return 0
