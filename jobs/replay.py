"""Replay quarantined records of a silver table through its current transform and rules.

./spark-submit.sh replay --table silver.transactions [--rule fx_rate_known] [--from-run RUN_ID]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.replay import main

if __name__ == "__main__":
    run_job(main)
