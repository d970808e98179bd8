"""Run the gold layer only.

./spark-submit.sh gold [--tables gold.NAME]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.runner import main

if __name__ == "__main__":
    run_job(lambda argv: main(argv, layers="gold", summary=False))
