"""Replay the raw zone's payments into a Kafka topic at a set rate (a payment gateway's feed).

./spark-submit.sh produce [--rate 1000] [--days 2026-01-01,2026-01-02] [--topic payments]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.streaming.produce import produce_main

if __name__ == "__main__":
    run_job(produce_main)
