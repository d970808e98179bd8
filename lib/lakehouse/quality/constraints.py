"""Delta ``NOT NULL`` and ``CHECK`` constraints derived from a table's ``fail`` rules.

The jobs stop on a broken ``fail`` rule before writing; the constraints make the table itself
refuse such a row from any other writer (a notebook, a backfill script). A ``not_null`` rule
makes the column ``NOT NULL`` when the table is created (:func:`table_schema`; Spark cannot
tighten an existing column, so on an older table it becomes ``CHECK (c IS NOT NULL)``); any
other rule with a SQL form over the table's own columns becomes ``CHECK`` constraint
``dq_<rule>``. Rules that need other tables or the batch
(foreign keys, uniqueness, table-level checks) have no constraint form and are skipped.

:func:`sync_constraints` makes the table's constraints equal to what the rules say: it adds the
missing ones, replaces changed ones and drops ``dq_`` constraints whose rule is gone. A table
whose stored rows break a new constraint keeps its old constraints, and the error names the
table and the rule.
"""

from __future__ import annotations

import logging
import re

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from lakehouse.config import TableSpec
from lakehouse.errors import PipelineError
from lakehouse.io import delta
from lakehouse.quality.checks import CheckContext, RowCheck, build, sql_check
from lakehouse.quality.expectations import Expectation

log = logging.getLogger(__name__)

PREFIX = "dq_"


def constraint_sql(exp: Expectation, table: str, schema: StructType, spark: SparkSession) -> tuple[str | None, str | None]:
    """``(NOT NULL column, CHECK expression)`` for a fail rule, or ``(None, None)`` when the rule
    has no form a Delta table can check (it reads other tables, or columns the table lacks)."""
    if exp.table_level:
        return None, None
    chk = sql_check(exp.expr) if exp.expr else build(exp.check or "", CheckContext(table, exp.name), exp.args)
    if not isinstance(chk, RowCheck) or chk.prepare is not None or not chk.sql:
        return None, None
    if chk.not_null and not exp.when and chk.not_null in schema.fieldNames():
        return chk.not_null, None
    # Delta refuses a row whose CHECK is null; our rules let a null pass (not_null's business),
    # so the constraint says the same: COALESCE(rule, true)
    sql = f"COALESCE(CASE WHEN {exp.when} THEN {chk.sql} ELSE true END, true)" if exp.when else f"COALESCE({chk.sql}, true)"
    try:  # does it resolve against the table's own columns?
        spark.createDataFrame([], schema).where(F.expr(sql)).schema  # noqa: B018
    except Exception:  # noqa: BLE001 - any analysis error means: not a constraint of this table
        log.info("%s: rule %s reads columns the table does not store; enforced by the jobs only", table, exp.name)
        return None, None
    return None, sql


def not_null_columns(spec: TableSpec) -> set[str]:
    """Columns a ``fail`` rule of ``spec`` requires to be non-null (``not_null`` without ``when``)."""
    out = set()
    for e in spec.expectations:
        if e.severity == "fail" and e.check in ("not_null", "valid_date") and not e.when and "format" not in e.args and "raw" not in e.args:
            out.add(str(e.args["column"]))
    return out


def table_schema(spark: SparkSession, spec: TableSpec, enforce: bool = True) -> StructType:
    """The declared schema, with the ``fail`` rules' non-null columns marked NOT NULL (unless
    ``enforce`` is false: expectations turned off, to measure what they cost)."""
    schema = delta.schema_of(spark, spec.schema)
    required = not_null_columns(spec) if enforce else set()
    return StructType([StructField(f.name, f.dataType, f.nullable and f.name not in required, f.metadata) for f in schema.fields])


def _same(a: str | None, b: str | None) -> bool:
    """Delta stores a constraint re-tokenised ('COALESCE ( x > 0 , true )'): compare without blanks."""
    return a is not None and b is not None and re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


def _table(path: str) -> str:
    if "`" in path:
        raise PipelineError(f"table path {path!r} contains a backtick")
    return f"delta.`{path}`"


def wanted_constraints(spark: SparkSession, spec: TableSpec, schema: StructType) -> tuple[set[str], dict[str, str]]:
    """``(NOT NULL columns, CHECK constraints name -> SQL)`` that ``spec``'s fail rules ask of a
    table with ``schema``."""
    not_null: set[str] = set()
    checks: dict[str, str] = {}
    for exp in spec.expectations:
        if exp.severity != "fail":
            continue
        nn, sql = constraint_sql(exp, spec.name, schema, spark)
        if nn and not schema[nn].nullable:
            not_null.add(nn)
        elif nn:  # an older table whose column is nullable: Spark cannot tighten it, so CHECK
            checks[f"{PREFIX}{exp.name}"] = f"`{nn}` IS NOT NULL"
        elif sql:
            checks[f"{PREFIX}{exp.name}"] = sql
    return not_null, checks


def ensure_constrained_table(spark: SparkSession, path: str, spec: TableSpec, enforce: bool = True) -> None:
    """Create ``spec``'s table at ``path`` if missing, with the constraints of its fail rules in
    its first commit (Delta enforces ``delta.constraints.*`` given at creation as if added by
    ``ALTER TABLE ADD CONSTRAINT``); an existing table gets them by :func:`sync_constraints`.
    ``enforce`` false (expectations off, to measure their cost): no constraints at all."""
    schema = table_schema(spark, spec, enforce)
    exists = delta.is_delta(spark, path)
    props = dict(spec.properties or {})
    if enforce and not exists:
        props.update({f"delta.constraints.{name}": sql for name, sql in wanted_constraints(spark, spec, schema)[1].items()})
    delta.ensure_table(spark, path, schema, spec.partition_by, props, spec.description)
    if enforce and exists:
        sync_constraints(spark, path, spec)


def sync_constraints(spark: SparkSession, path: str, spec: TableSpec) -> dict[str, str]:
    """Make the Delta table at ``path`` carry exactly the constraints of ``spec``'s fail rules.

    Returns:
        The CHECK constraints now on the table (name -> SQL) plus ``NOT NULL`` entries.
    """
    table = _table(path)
    schema = spark.read.format("delta").load(path).schema
    not_null, checks = wanted_constraints(spark, spec, schema)
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    stored = {k.removeprefix("delta.constraints."): v for k, v in props.items() if k.startswith(f"delta.constraints.{PREFIX}")}
    for name, sql in stored.items():
        if not _same(checks.get(name), sql):
            spark.sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
            log.info("%s: dropped constraint %s", spec.name, name)
    for name, sql in checks.items():
        if _same(stored.get(name), sql):
            continue
        try:
            spark.sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({sql})")
        except Exception as exc:  # noqa: BLE001 - Delta's refusal (rows break it) becomes one clear line
            first = str(exc).splitlines()[0]
            raise PipelineError(f"{spec.name}: cannot add constraint {name} for rule {name[len(PREFIX) :]} ({sql}): {first}") from None
        log.info("%s: added constraint %s CHECK (%s)", spec.name, name, sql)
    for f in schema.fields:
        if not f.nullable and f.name not in not_null_columns(spec):
            spark.sql(f"ALTER TABLE {table} ALTER COLUMN `{f.name}` DROP NOT NULL")
            log.info("%s: %s may be null again (no fail rule asks otherwise)", spec.name, f.name)
    return {**checks, **{f"not_null({c})": "NOT NULL" for c in sorted(not_null)}}
