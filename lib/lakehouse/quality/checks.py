"""Built-in checks: small registered functions that return a Column (or a table-level verdict).

A row check returns :class:`RowCheck`: ``failed`` is true where a row breaks the rule (a rule
on a null value passes unless the rule is about nulls, as in SQL ``CHECK`` constraints), plus
optionally a ``prepare`` step that adds helper columns (a join, a window) and the SQL of the
equivalent Delta ``CHECK`` constraint. A table check returns :class:`TableCheck`: aggregate
columns computed in the same pass as every other rule, and a ``verdict`` on their values.

Add a check with the decorator; its keyword arguments are what the YAML's ``args`` may hold::

    @check("positive")
    def positive(ctx: CheckContext, column: str) -> RowCheck:
        return RowCheck(failed=F.col(column) <= 0, sql=f"{column} > 0")
"""

from __future__ import annotations

import inspect
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


@dataclass(frozen=True)
class CheckContext:
    """What a check may need besides its arguments.

    Attributes:
        table: the table the rule belongs to (``silver.transactions``).
        rule: the rule's name (helper columns are prefixed with it).
        keys: the table's business keys (the default of ``unique``).
        read_table: resolves another table's name to a DataFrame (foreign keys, ``unique``).
        history: past observed values of this rule, newest first (``row_count``).
    """

    table: str
    rule: str
    keys: tuple[str, ...] = ()
    read_table: Callable[[str], DataFrame] | None = None
    history: Callable[[int], list[float]] | None = None

    def helper(self, suffix: str) -> str:
        return f"__dq_{self.rule}_{suffix}"

    def table_df(self, name: str) -> DataFrame:
        if self.read_table is None:
            raise ValueError(f"{self.table}: rule {self.rule} reads table {name}, but no table resolver was given")
        return self.read_table(name)


@dataclass(frozen=True)
class RowCheck:
    failed: Column
    prepare: Callable[[DataFrame], DataFrame] | None = None
    sql: str | None = None
    not_null: str | None = None  # a column the rule requires to be non-null (a NOT NULL constraint)
    well_formed: bool = False  # when it fails, the row's other failures are not listed


@dataclass(frozen=True)
class TableCheck:
    aggregates: Mapping[str, Column]
    verdict: Callable[[Mapping[str, Any], int], tuple[float | None, bool, str]]
    """``(aggregate values, row count) -> (observed value, passed, threshold text)``"""


CHECKS: dict[str, Callable[..., RowCheck | TableCheck]] = {}
TABLE_LEVEL: set[str] = set()


def check(name: str, table_level: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a built-in check under ``name`` (what the YAML's ``check:`` says)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        CHECKS[name] = fn
        if table_level:
            TABLE_LEVEL.add(name)
        return fn

    return register


def argument_problems(name: str, args: Mapping[str, Any]) -> str | None:
    """Why ``args`` do not fit check ``name`` (unknown or missing arguments), else None."""
    if name not in CHECKS:
        return f"unknown check {name!r} (known: {', '.join(sorted(CHECKS))})"
    params = dict(inspect.signature(CHECKS[name]).parameters)
    params.pop("ctx")
    unknown = sorted(set(args) - set(params))
    if unknown:
        return f"check {name} takes no argument {', '.join(unknown)} (it takes: {', '.join(params)})"
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in args]
    if missing:
        return f"check {name} needs argument {', '.join(missing)}"
    return None


def _ident(column: str) -> str:
    """Quote a (possibly nested) column name for SQL."""
    return ".".join(f"`{part}`" for part in column.split("."))


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col.cast("string")) == "")


# ---------------------------------------------------------------------------------------------
# Row checks
# ---------------------------------------------------------------------------------------------


@check("well_formed")
def well_formed(ctx: CheckContext, column: str = "__in._corrupt_record") -> RowCheck:
    """The source record parsed (its corrupt-record column is empty). A malformed record is
    reported under this rule only: every other failure follows from it."""
    return RowCheck(failed=F.col(column).isNotNull(), well_formed=True)


@check("not_null")
def not_null(ctx: CheckContext, column: str) -> RowCheck:
    """The column has a value (an empty string counts as missing)."""
    return RowCheck(failed=is_blank(F.col(column)), sql=f"{_ident(column)} IS NOT NULL", not_null=column)


@check("in_set")
def in_set(ctx: CheckContext, column: str, values: Sequence[Any]) -> RowCheck:
    """The value is one of ``values``."""
    return RowCheck(
        failed=~F.col(column).isin(list(values)),
        sql=f"{_ident(column)} IN ({', '.join(_literal(v) for v in values)})",
    )


@check("between")
def between(ctx: CheckContext, column: str, min: Any = None, max: Any = None) -> RowCheck:  # noqa: A002
    """``min <= value <= max`` (either bound may be left out)."""
    if min is None and max is None:
        raise ValueError("between needs min or max")
    c = F.col(column)
    failed, sql = F.lit(False), []
    if min is not None:
        failed = failed | (c < F.lit(min))
        sql.append(f"{_ident(column)} >= {_literal(min)}")
    if max is not None:
        failed = failed | (c > F.lit(max))
        sql.append(f"{_ident(column)} <= {_literal(max)}")
    return RowCheck(failed=failed, sql=" AND ".join(sql))


@check("matches")
def matches(ctx: CheckContext, column: str, pattern: str) -> RowCheck:
    """The value matches the regular expression ``pattern`` (Java syntax, searched, so anchor it)."""
    re.compile(pattern)  # a bad pattern fails at configuration time rather than in a task
    return RowCheck(failed=~F.col(column).rlike(pattern), sql=f"{_ident(column)} RLIKE {_literal(pattern)}")


@check("valid_date")
def valid_date(ctx: CheckContext, column: str, format: str | None = None, raw: str | None = None) -> RowCheck:  # noqa: A002
    """A date or timestamp that parses.

    With ``format``: ``column`` is text and must parse with it (blank passes: that is not_null's
    business). Without: ``column`` is the typed result of a parse and must not be null where the
    ``raw`` text (if named) was given; without ``raw`` a null counts as unparseable.
    """
    if format is not None:
        c = F.col(column)
        return RowCheck(
            failed=~is_blank(c) & F.try_to_timestamp(F.trim(c.cast("string")), F.lit(format)).isNull(),
            sql=f"try_to_timestamp({_ident(column)}, {_literal(format)}) IS NOT NULL",
        )
    failed = F.col(column).isNull()
    if raw is not None:
        failed = failed & ~is_blank(F.col(raw))
        return RowCheck(failed=failed)
    return RowCheck(failed=failed, sql=f"{_ident(column)} IS NOT NULL", not_null=column)


@check("unique")
def unique(
    ctx: CheckContext, columns: Sequence[str] | None = None, against_table: bool = True, hash_column: str = "_record_hash"
) -> RowCheck:
    """One record per key: within the batch no two different records (by ``hash_column``) share
    the key, and (``against_table``) the table does not already hold a different record for it.
    An exact re-send of a stored record passes (it is a duplicate, not a conflict)."""
    cols = list(columns or ctx.keys)
    if not cols:
        raise ValueError("unique needs columns (or table keys)")
    in_batch, stored = ctx.helper("n"), ctx.helper("stored")
    key_present = F.lit(True)
    for c in cols:
        key_present = key_present & F.col(c).isNotNull()

    def prepare(df: DataFrame) -> DataFrame:
        w = Window.partitionBy(*cols)
        out = df.withColumn(in_batch, F.when(key_present, F.size(F.collect_set(hash_column).over(w))).otherwise(F.lit(1)))
        if against_table:
            t = ctx.table_df(ctx.table).groupBy(*cols).agg(F.collect_set(hash_column).alias(stored))
            out = out.join(t, cols, "left")
        return out

    failed = F.col(in_batch) > 1
    if against_table:
        failed = failed | (F.col(stored).isNotNull() & ~F.array_contains(F.col(stored), F.col(hash_column)))
    return RowCheck(failed=failed, prepare=prepare)


@check("foreign_key")
def foreign_key(
    ctx: CheckContext,
    column: str,
    table: str,
    key: str | None = None,
    where: str | None = None,
    broadcast: bool = True,
    large_reference: bool = False,
) -> RowCheck:
    """The value exists as ``key`` (default: the same name) in ``table`` (filtered by ``where``).

    A dimension is looked up with an ``EXISTS`` subquery, which Spark plans as an existence join
    (broadcast when the dimension is small; ``broadcast: false`` leaves the strategy to Spark): one
    boolean per row, no ``distinct`` of the reference and no risk of multiplying rows. For a
    reference far larger than the batch (a fact table, e.g. the payments a chargeback names) say
    ``large_reference: true``: the batch's distinct values are broadcast to filter the reference's
    key column instead, so no large side is shuffled or broadcast.
    """
    found, ref_key = ctx.helper("found"), ctx.helper("key")

    def prepare(df: DataFrame) -> DataFrame:
        ref = ctx.table_df(table)
        if where:
            ref = ref.where(where)
        ref = ref.select(F.col(key or column).alias(ref_key))
        if not large_reference:
            ref = F.broadcast(ref) if broadcast else ref
            batch, probe = ctx.helper("batch"), ctx.helper("ref")
            hit = ref.alias(probe).where(F.col(f"{probe}.{ref_key}") == F.col(f"{batch}.{column}").outer()).exists()
            return df.alias(batch).select("*", hit.alias(found))
        wanted = df.select(F.col(column).alias(ref_key)).where(F.col(ref_key).isNotNull()).distinct()
        ref = ref.join(F.broadcast(wanted), ref_key, "left_semi")
        ref = ref.distinct().select(ref_key, F.lit(True).alias(found))
        joined = df.join(F.broadcast(ref), F.col(column) == F.col(ref_key), "left")
        return joined.drop(ref_key)  # only the boolean is kept with the rows

    missing = F.col(found).isNull() if large_reference else ~F.col(found)
    return RowCheck(failed=F.col(column).isNotNull() & missing, prepare=prepare)


# ---------------------------------------------------------------------------------------------
# Table checks (one verdict per batch, from aggregates computed in the same pass)
# ---------------------------------------------------------------------------------------------


@check("freshness", table_level=True)
def freshness(ctx: CheckContext, column: str, max_age_hours: float, reference: str | None = None) -> TableCheck:
    """The newest ``column`` is at most ``max_age_hours`` older than the newest ``reference``
    (a column, e.g. the arrival date; default: now)."""
    ref = F.max(F.col(reference).cast("timestamp")) if reference else F.current_timestamp()
    aggregates = {"newest": F.max(F.col(column).cast("timestamp")), "reference": ref}

    def verdict(values: Mapping[str, Any], rows: int) -> tuple[float | None, bool, str]:
        newest, reference_ts = values["newest"], values["reference"]
        if newest is None or reference_ts is None:
            return None, rows == 0, f"<= {max_age_hours} h"
        age = (reference_ts - newest).total_seconds() / 3600
        return round(age, 2), age <= max_age_hours, f"<= {max_age_hours} h"

    return TableCheck(aggregates, verdict)


@check("row_count", table_level=True)
def row_count(
    ctx: CheckContext, min_ratio: float = 0.5, max_ratio: float = 2.0, last_runs: int = 7, min_history: int = 3, min_rows: int = 0
) -> TableCheck:
    """The batch's row count is within ``[min_ratio, max_ratio]`` times the median of the last
    ``last_runs`` runs' counts (with fewer than ``min_history`` runs only ``min_rows`` applies)."""

    def verdict(values: Mapping[str, Any], rows: int) -> tuple[float | None, bool, str]:
        past = ctx.history(last_runs) if ctx.history else []
        if len(past) < min_history:
            return float(rows), rows >= min_rows, f">= {min_rows} (history: {len(past)} of {min_history} runs)"
        median = statistics.median(past)
        lo, hi = median * min_ratio, median * max_ratio
        return float(rows), rows >= min_rows and lo <= rows <= hi, f"{lo:.0f}..{hi:.0f} (median of {len(past)} runs {median:.0f})"

    return TableCheck({}, verdict)


@check("null_share", table_level=True)
def null_share(ctx: CheckContext, column: str, max: float) -> TableCheck:  # noqa: A002
    """The share of rows with no ``column`` value is at most ``max`` (0..1)."""

    def verdict(values: Mapping[str, Any], rows: int) -> tuple[float | None, bool, str]:
        share = (values["nulls"] or 0) / rows if rows else 0.0
        return round(share, 6), share <= max, f"<= {max}"

    return TableCheck({"nulls": F.count_if(is_blank(F.col(column)))}, verdict)


def sql_check(expr: str) -> RowCheck:
    """A rule written as a SQL boolean expression: true passes, false fails, null passes."""
    return RowCheck(failed=F.coalesce(~F.expr(expr), F.lit(False)), sql=expr)


def build(name: str, ctx: CheckContext, args: Mapping[str, Any]) -> RowCheck | TableCheck:
    """Call the registered check ``name`` with the rule's arguments."""
    return CHECKS[name](ctx, **args)
