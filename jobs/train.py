"""Train the fraud model, register it in MLflow and promote it if it beats the champion.

./spark-submit.sh train [--model fraud] [--as-of 2026-03-01T00:00:00] [--reweigh age_band] [--no-promote]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import train_main

if __name__ == "__main__":
    run_job(train_main)
