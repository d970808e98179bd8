"""Write the model card (Markdown with SVG charts) of the champion or a version.

./spark-submit.sh model_card [--model fraud] [--version N] [--out DIR]
"""

from __future__ import annotations

from lakehouse.cli import run_job
from lakehouse.ml.jobs import card_main

if __name__ == "__main__":
    run_job(card_main)
