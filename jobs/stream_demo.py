"""The real-time demo on the lake `make demo` built: broker, producer and stream job for about a
minute, then a summary with the accounting.

./spark-submit.sh stream_demo [--rate 60] [--trigger 2s]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.streaming.demo import stream_demo_main

if __name__ == "__main__":
    run_job(stream_demo_main)
