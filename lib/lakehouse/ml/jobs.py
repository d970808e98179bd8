"""The model jobs' logic: train, score, promote (thin wrappers in ``jobs/``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import datetime, timezone

from lakehouse.cli import add_wait, context, parser
from lakehouse.leases import leased
from lakehouse.ml import registry
from lakehouse.ml.card import write_card
from lakehouse.ml.dataset import export_sample
from lakehouse.ml.lifecycle import train_and_register
from lakehouse.ml.monitoring import monitor
from lakehouse.ml.score import score_new
from lakehouse.ml.spec import load_model_spec
from lakehouse.runlog import RunLog
from lakehouse.session import get_spark

log = logging.getLogger(__name__)


def _as_of(text: str) -> datetime:
    """An ISO instant; without an offset it is read as UTC (the lake's zone), never the driver's."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        example = "2026-03-01T12:00:00 (read as UTC) or 2026-03-01T12:00:00+01:00"
        raise argparse.ArgumentTypeError(f"--as-of {text!r}: expected an ISO date-time, e.g. {example}") from None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _pin(text: str) -> tuple[str, int]:
    table, sep, version = text.rpartition("=")
    if not sep or not table or not version.isdigit():
        raise argparse.ArgumentTypeError(f"--pin {text!r}: expected TABLE=VERSION, e.g. silver.transactions=12")
    return table, int(version)


def train_main(argv: Sequence[str] | None) -> int:
    p = parser("Train the model on labelled payments, register it (alias challenger), promote it if it beats the champion.")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    p.add_argument("--as-of", type=_as_of, help="labels as known at this instant (default: the latest payment in silver)")
    p.add_argument("--reweigh", default=None, help="comma-separated groups to reweigh (overrides the model's training.reweigh)")
    p.add_argument("--no-promote", action="store_true", help="register as challenger only")
    p.add_argument(
        "--pin",
        type=_pin,
        action="append",
        default=[],
        metavar="TABLE=VERSION",
        help="read TABLE at this Delta version (repeatable; a model card lists the versions its run read)",
    )
    args = p.parse_args(argv)
    ctx = context("train", args)
    spec = load_model_spec(args.conf_dir, args.model)
    spark = get_spark(ctx.env, "lakehouse-train", args.master)
    reweigh = None if args.reweigh is None else tuple(g for g in args.reweigh.split(",") if g)
    report = train_and_register(spark, ctx.lake, spec, args.as_of, reweigh, auto_promote=not args.no_promote, pins=dict(args.pin))
    print(report.summary(), flush=True)
    return 0


def score_main(argv: Sequence[str] | None) -> int:
    p = parser("Score the payments not scored yet with the champion model; write the predictions table.")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    add_wait(p, 0.0)
    args = p.parse_args(argv)
    ctx = context("score", args)
    spec = load_model_spec(args.conf_dir, args.model)
    spark = get_spark(ctx.env, "lakehouse-score", args.master)
    registry.configure(ctx.env)
    runlog = RunLog(spark, ctx.lake, "score", ctx.run_id, args.run_date)
    with leased(spark, ctx.lake, ctx.run_id, "score", [f"ml.{spec.name}_predictions"], wait=args.wait):
        runlog.begin()
        try:
            r = score_new(spark, ctx.lake, spec, runlog)
        except Exception as exc:
            runlog.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        runlog.end()
    rate = r.scored / r.seconds if r.seconds else 0.0
    print(
        f"scored {r.scored:,} new payment(s) with {r.model} version {r.version} in {r.seconds:.1f}s ({rate:,.0f} rows/s): "
        f"{r.declined:,} at or above the threshold; predictions table version {r.table_version}",
        flush=True,
    )
    return 0


def monitor_main(argv: Sequence[str] | None) -> int:
    p = parser("Monitor the champion: drift per day, realized performance and fairness once labels mature; metrics and alerts to Delta.")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    p.add_argument("--days", type=int, default=7, help="days of drift (the latest) and of matured labels measured (default 7)")
    p.add_argument("--as-of", type=_as_of, help="the lake's clock (default: the latest payment in silver)")
    add_wait(p, 0.0)
    args = p.parse_args(argv)
    if args.days < 1:
        p.error(f"--days {args.days} is not a positive number of days")
    ctx = context("monitor", args)
    spec = load_model_spec(args.conf_dir, args.model)
    spark = get_spark(ctx.env, "lakehouse-monitor", args.master)
    registry.configure(ctx.env)
    runlog = RunLog(spark, ctx.lake, "monitor", ctx.run_id, args.run_date)
    with leased(spark, ctx.lake, ctx.run_id, "monitor", [f"ml.{spec.name}_monitoring", f"ml.{spec.name}_alerts"], wait=args.wait):
        runlog.begin()
        try:
            report = monitor(spark, ctx.lake, spec, args.days, args.as_of, run_id=ctx.run_id)
        except Exception as exc:
            runlog.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        runlog.end()
    print(report.summary(), flush=True)
    return 0


def card_main(argv: Sequence[str] | None) -> int:
    p = parser("Write the model card (Markdown with SVG charts) of the champion or a version.")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    p.add_argument("--version", help="the model version (default: the champion)")
    p.add_argument("--out", help="directory (a URI) to write to (default <lake_root>/reports)")
    args = p.parse_args(argv)
    ctx = context("model_card", args)
    spec = load_model_spec(args.conf_dir, args.model)
    spark = get_spark(ctx.env, "lakehouse-model-card", args.master)
    registry.configure(ctx.env)
    uri = write_card(spark, ctx.lake, spec, args.version, args.out)
    print(f"model card: {uri}", flush=True)
    return 0


def promote_main(argv: Sequence[str] | None) -> int:
    p = parser("Make a registered model version the champion (the explicit promotion).")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    p.add_argument("--version", required=True, help="the model version to promote")
    args = p.parse_args(argv)
    ctx = context("promote", args)
    spec = load_model_spec(args.conf_dir, args.model)
    registry.configure(ctx.env)
    registry.promote(spec.name, args.version)
    print(f"{spec.name}: champion -> version {args.version}", flush=True)
    return 0


def export_main(argv: Sequence[str] | None) -> int:
    p = parser("Export a training sample (Parquet) for a notebook: all fraud, a fraction of the rest.")
    p.add_argument("--model", default="fraud", help="conf/models/<model>.yaml (default fraud)")
    p.add_argument("--out", help="where to write (a URI; default <lake_root>/exports/<model name>_training_sample)")
    p.add_argument("--fraction", type=float, default=0.2, help="share of the non-fraud payments kept (default 0.2)")
    p.add_argument("--as-of", type=_as_of, help="labels as known at this instant (default: the latest payment in silver)")
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction {args.fraction} is not in (0, 1]")
    ctx = context("export_training_sample", args)
    spec = load_model_spec(args.conf_dir, args.model)
    out = args.out or f"{ctx.env.lake_root}/exports/{spec.name}_training_sample"
    spark = get_spark(ctx.env, "lakehouse-export", args.master)
    rows, w = export_sample(spark, ctx.lake, spec, out, args.fraction, args.as_of)
    print(f"wrote {rows:,} rows ({w.start} .. {w.end}, labels as of {w.as_of}) to {out}", flush=True)
    return 0
