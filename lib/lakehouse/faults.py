"""Named crash points for fault-injection tests.

``crash_point("silver.after_merge", table)`` kills the process with SIGKILL when the environment
variable ``LAKEHOUSE_FAULT`` names that point (``silver.after_merge``, or only for one table:
``silver.after_merge:silver.transactions``), and does nothing otherwise. The points sit where
a real crash hurts most: after a commit to one table and before the next bookkeeping step.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

POINTS = (
    "bronze.after_append",
    "silver.after_merge",
    "gold.after_write",
    "replay.after_upsert",
    "score.after_write",
    "score.after_send",
    "monitor.after_metrics",
)


def crash_point(name: str, table: str | None = None) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get("LAKEHOUSE_FAULT") in (name, f"{name}:{table}"):
        log.warning("LAKEHOUSE_FAULT=%s: killing this process (SIGKILL)", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
