"""Write the data quality report: a self-contained HTML file with charts.

./spark-submit.sh quality_report [--out PATH]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.quality.report import main

if __name__ == "__main__":
    run_job(main)
