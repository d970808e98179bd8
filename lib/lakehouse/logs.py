"""Python logging for jobs: one format, every line tagged with the run id."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)-5s [%(run_id)s] %(name)s: %(message)s"


class _RunIdFilter(logging.Filter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = self.run_id
        return True


def configure(run_id: str, level: int = logging.INFO) -> None:
    """Send ``lakehouse.*`` logs to stderr, tagged with ``run_id``; quiet py4j."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_RunIdFilter(run_id))
    root = logging.getLogger("lakehouse")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("py4j").setLevel(logging.ERROR)


@contextmanager
def stage(logger: logging.Logger, name: str) -> Iterator[dict[str, object]]:
    """Log the start and end of a stage with its duration; the body fills ``info`` for the end line.

    Example::

        with stage(log, "bronze.transactions") as info:
            info["rows"] = 1234
    """
    info: dict[str, object] = {}
    start = time.monotonic()
    logger.info("%s: started", name)
    try:
        yield info
    except Exception:
        logger.error("%s: failed after %.1fs", name, time.monotonic() - start)
        raise
    info["seconds"] = round(time.monotonic() - start, 1)
    details = ", ".join(f"{k}={v}" for k, v in info.items())
    logger.info("%s: done (%s)", name, details)


class Laps:
    """Time the steps of a piece of work for its log line: ``laps.lap("check")`` after each step.

    Example::

        laps = Laps()
        ...; laps.lap("check")
        ...; laps.lap("merge")
        log.info("batch done (%s)", laps)   # batch done (check 1.2s, merge 3.4s)
    """

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.laps.items())
