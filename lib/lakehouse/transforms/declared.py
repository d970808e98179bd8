"""Tables declared in YAML alone: a silver table typed from its bronze record, a gold table by SQL.

A silver table without ``transform`` takes each declared column from the bronze field of the same
name, ``try_cast`` to the declared type (a value that does not parse becomes null, for its
expectations to catch), or from the SQL expression its ``select:`` gives for it. A gold table with
``sql:`` is that query over its upstream tables, each written ``{short_name}``. Both are functions
of the same shape as a Python transform, so the runners, notebooks and tests call them alike.

Example (in a notebook)::

    spec = lake.spec("gold.daily_station")
    spec.transform_fn()({"readings": spark.read.format("delta").load(lake.path("silver.readings"))}, None).show()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import SILVER_METADATA, TableSpec
from lakehouse.errors import PipelineError

_LINEAGE = ("_source_file", "_ingested_at")


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def column_expr(spec: TableSpec, name: str, ddl_type: str) -> Column:
    """The expression of one typed column: ``select``'s, else the same-named field cast."""
    text = spec.select.get(name) or f"try_cast({_quoted(name)} AS {ddl_type})"
    try:
        return F.expr(text)
    except ParseException as exc:
        raise PipelineError(f"{spec.file}: select.{name}: {text!r} is not a SQL expression: {exc.getMessage()}") from None


def typed_transform(spec: TableSpec) -> Callable[[DataFrame], DataFrame]:
    """The transform of a silver table declared by its schema (and ``select``): bronze rows in,
    the declared columns out, with the runner's ``__`` columns and the lineage carried through."""
    metadata = {c for c, _ in SILVER_METADATA}

    def build(batch: DataFrame) -> DataFrame:
        out = []
        for name, ddl_type in spec.columns:
            if name in metadata:
                continue
            out.append(column_expr(spec, name, ddl_type).alias(name))
        carried = [c for c in batch.columns if c.startswith("__") or c in _LINEAGE]
        try:
            return batch.select(*out, *carried)
        except AnalysisException as exc:
            bad = [n for n, t in spec.columns if n not in metadata and not _resolves(batch, column_expr(spec, n, t))]
            where = f"select.{bad[0]}" if bad and bad[0] in spec.select else f"column {bad[0]!r}" if bad else "schema"
            raise PipelineError(f"{spec.file}: {where}: {exc.getMessage().splitlines()[0]}") from None

    build.__name__ = f"typed_{spec.short_name}"
    return build


def _resolves(df: DataFrame, col: Column) -> bool:
    try:
        df.select(col).schema  # noqa: B018 - analysis only
        return True
    except AnalysisException:
        return False


def sql_transform(spec: TableSpec) -> Callable[..., DataFrame]:
    """The transform of a gold table declared by ``sql``: the query over the upstream tables
    (``tables``, by short name; ``{name}`` in the query). Always a full build: ``changes`` must
    be None (the gold runner rebuilds such a table whenever its upstream changes)."""
    assert spec.sql is not None

    def build(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame] | None = None) -> DataFrame:
        if changes is not None:
            raise PipelineError(f"{spec.name}: a table declared by sql is built in full, not from changes")
        if not tables:
            raise PipelineError(f"{spec.name}: no upstream tables given")
        spark = next(iter(tables.values())).sparkSession
        try:
            return spark.sql(spec.sql, **dict(tables))
        except (AnalysisException, ParseException) as exc:
            raise PipelineError(f"{spec.file}: sql: {exc.getMessage().splitlines()[0]}") from None

    build.__name__ = f"sql_{spec.short_name}"
    return build
