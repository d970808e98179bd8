"""Stream Kafka topics into their bronze tables (catch up and stop, or run until SIGTERM).

./spark-submit.sh stream [--trigger available-now|5s] [--tables bronze.transactions_stream]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.streaming.jobs import stream_main

if __name__ == "__main__":
    run_job(stream_main)
