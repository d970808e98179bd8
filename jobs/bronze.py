"""Run the bronze layer only.

./spark-submit.sh bronze [--tables bronze.NAME]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.runner import main

if __name__ == "__main__":
    run_job(lambda argv: main(argv, layers="bronze", summary=False))
