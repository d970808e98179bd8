"""Make a registered model version the champion.

./spark-submit.sh promote --version N [--model fraud]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import promote_main

if __name__ == "__main__":
    run_job(promote_main)
