"""Monitor the champion: drift per day against the training baseline, realized performance and
fairness once labels mature; metrics and alerts to Delta tables.

./spark-submit.sh monitor [--model fraud] [--days 7]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import monitor_main

if __name__ == "__main__":
    run_job(monitor_main)
