"""Export a training sample (Parquet) for a data scientist's notebook.

./spark-submit.sh export_training_sample [--model fraud] [--fraction 0.2] [--out URI]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import export_main

if __name__ == "__main__":
    run_job(export_main)
