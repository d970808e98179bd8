"""Score the payments not scored yet with the champion model (incremental, idempotent).

./spark-submit.sh score [--model fraud]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import score_main

if __name__ == "__main__":
    run_job(score_main)
