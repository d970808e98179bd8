"""Run the silver layer only.

./spark-submit.sh silver [--tables silver.NAME]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.runner import main

if __name__ == "__main__":
    run_job(lambda argv: main(argv, layers="silver", summary=False))
