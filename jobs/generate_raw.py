"""Generate (or extend) the sample raw zone: card payments of an online marketplace.

./spark-submit.sh generate_raw --scale 0.1 --days 30 [--start-date 2026-01-01] [--seed 42]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.generate import generate_main

if __name__ == "__main__":
    run_job(generate_main)
