"""Run the whole lakehouse (bronze -> silver -> gold) and print a summary.

./spark-submit.sh pipeline [--layers bronze,silver] [--tables silver.transactions]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.runner import main

if __name__ == "__main__":
    run_job(main)
