"""Profile silver and gold tables: column statistics, outlier flags, anomaly alerts.

./spark-submit.sh quality_profile [--tables silver.transactions,...]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.profile import main

if __name__ == "__main__":
    run_job(main)
