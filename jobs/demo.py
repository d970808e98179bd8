"""The demo in one Spark application: generate the raw zone, build every layer, train, register,
score and monitor the fraud model, write its card.

./spark-submit.sh demo [--scale 0.1] [--days 90]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.demo import main

if __name__ == "__main__":
    run_job(main)
