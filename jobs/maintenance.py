"""Table maintenance: OPTIMIZE (Z-order where declared), VACUUM with each table's retention,
refresh the data-skipping statistics. Safe to run at any time beside the pipeline.

./spark-submit.sh maintenance [--tables silver.transactions,ops.run_log,...]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.pipeline.maintenance import main

if __name__ == "__main__":
    run_job(main)
