"""What a table's rules are evaluated with in a job: the other tables, the rule's history."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import TableSpec
from lakehouse.quality.checks import CheckContext
from lakehouse.quality.expectations import Expectation
from lakehouse.quality.metrics import QualityMetrics
from lakehouse.tables import Lake


def checker(
    spark: SparkSession, lake: Lake, spec: TableSpec, metrics: QualityMetrics, read: Callable[[str], DataFrame] | None = None
) -> Callable[[Expectation], CheckContext]:
    """The context each of ``spec``'s rules is evaluated with (other tables, read by ``read``
    when given, and its own history)."""

    def read_table(name: str) -> DataFrame:
        return read(name) if read is not None else spark.read.format("delta").load(lake.path(name))

    def context(e: Expectation) -> CheckContext:
        return CheckContext(spec.name, e.name, spec.keys, read_table, lambda n: metrics.history(spec.name, e.name, n))

    return context


def expectations_of(lake: Lake, spec: TableSpec) -> tuple[Expectation, ...]:
    """The table's rules, or none when the environment turns expectations off (benchmarks)."""
    return spec.expectations if lake.env.quality.expectations else ()
