"""The demo in one Spark application: generate the raw zone, build every layer, train, register,
score and monitor the fraud model, write its card.

Each step is the job of the same name (``generate_raw``, ``pipeline``, ``train``, ``score``,
``monitor``, ``model_card``), called with the same arguments it would get from
``spark-submit.sh``; they share one session, so the JVM, the Delta and MLflow start-up and the
JIT's warm-up are paid once instead of six times. A step that fails stops the demo with its own
error; the steps before it have committed what they wrote, and running the demo again takes up
from there (each job is idempotent).

    ./spark-submit.sh demo [--scale 0.1] [--days 90] [--conf KEY=VALUE ...]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from lakehouse.cli import parser

log = logging.getLogger(__name__)


def _steps() -> list[tuple[str, Callable[[Sequence[str] | None], int | None], list[str]]]:
    from lakehouse.ml.jobs import card_main, monitor_main, score_main, train_main
    from lakehouse.pipeline.generate import generate_main
    from lakehouse.pipeline.runner import main as pipeline_main

    return [
        ("generate_raw", generate_main, ["--scale", "{scale}", "--days", "{days}"]),
        ("pipeline", pipeline_main, []),
        ("train", train_main, []),
        ("score", score_main, []),
        ("monitor", monitor_main, []),
        ("model_card", card_main, []),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("The demo in one Spark application: every layer, training, scoring, monitoring, the model card.")
    p.add_argument("--scale", type=float, default=0.1, help="generator scale (1.0 = about 1 million payments over 30 days)")
    p.add_argument("--days", type=int, default=90, help="arrival days the raw zone holds")
    args = p.parse_args(argv)
    common = ["--env", args.env, "--conf-dir", args.conf_dir, *[a for c in args.conf for a in ("--conf", c)]]
    if args.master:
        common += ["--master", args.master]
    took: list[tuple[str, float]] = []
    start = time.monotonic()
    for name, step, extra in _steps():
        t0 = time.monotonic()
        code = step([*[e.format(scale=args.scale, days=args.days) for e in extra], *common]) or 0
        took.append((name, time.monotonic() - t0))
        if code:
            log.error("demo: %s exited %d; the steps before it are done", name, code)
            return code
    total = time.monotonic() - start
    steps = ", ".join(f"{n} {s:.0f}s" for n, s in took)
    print(f"\ndemo done in {total:.0f}s ({steps})", flush=True)
    return 0
