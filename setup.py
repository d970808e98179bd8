"""Packaging for the `lakehouse` library (lib/lakehouse)."""

from __future__ import annotations

from setuptools import find_packages, setup

setup(
    name="lakehouse",
    version="0.1.0",
    description="PySpark + Delta Lake lakehouse: card payments of an online marketplace",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    python_requires=">=3.10",
    install_requires=[
        # A compatible pair: delta-spark 4.4.x supports pyspark <=4.2.0. Maven Central serves the
        # matching jar io.delta:delta-spark_4.2_2.13 at 4.4.0 (4.4.1 exists only on PyPI), so both
        # sides are pinned to 4.4.0: the Python API and the JVM jar must be the same release.
        "pyspark==4.2.0",
        "delta-spark==4.4.0",
        "importlib_metadata<=8.7.1",
        "pyyaml>=6.0",
        # the model registry and tracking store; its pandas, numpy, scikit-learn and SQLAlchemy
        # serve the scoring of notebook models and the SQLite backend
        "mlflow>=3.17,<3.18",
        "pandas<3",  # PySpark 4.2 warns on pandas 3
        # the Kafka producer and admin client (librdkafka in the wheel); Spark reads and writes
        # topics through its own connector (spark.packages)
        "confluent-kafka>=2.6,<3",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "chispa==0.12.0",
            "ruff>=0.6",
            "deltalake>=1.0",  # delta-rs: an independent reader for the tables we write
            "pyarrow>=15",
            "venv-pack>=0.2",  # scripts/pack-pyenv.sh: the executors' Python environment
            "duckdb>=1.1",  # bench/: the single-machine baseline
            "psutil>=5.9",  # bench/: peak memory of each stage's processes
        ],
    },
)
