"""Declarative expectations: parse them from a table's YAML, apply them in one pass, split.

A table declares its rules next to its schema::

    expectations:
      - name: amount_positive
        expr: amount > 0                      # a SQL boolean expression ...
        severity: quarantine
        description: A payment moves money.
      - name: currency_known
        check: in_set                         # ... or a built-in check with arguments
        args: {column: currency, values: [EUR, USD]}
        severity: quarantine
        description: Only currencies we hold rates for.

Severities: ``warn`` keeps the row and counts it; ``quarantine`` routes the row to the table's
quarantine table with every rule it broke; ``fail`` stops the run before anything is committed
(applied to the rows that would be written, i.e. those no quarantine rule caught). A rule may
carry ``when:`` (SQL): it then applies only to the rows where that holds.

:func:`apply_expectations` evaluates every rule in one pass: the rule columns are added in one
projection (after any joins the checks need), the result is persisted, and a single aggregation
gives every rule's counts and every table-level value. ``valid`` and ``rejected`` are then
filters of the persisted rows (which hold one boolean per rule; the lists of rules broken are
built when rows are read).

Example (in a notebook)::

    checked = apply_expectations(df, spec.expectations, context_for(spec))
    checked.metrics          # one RuleResult per rule
    checked.valid().show()   # rows to write
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.errors import ConfigError, QualityError
from lakehouse.quality.checks import TABLE_LEVEL, CheckContext, RowCheck, TableCheck, argument_problems, build, sql_check

ERRORS = "_errors"
WARNINGS = "_warnings"
FAILS = "__dq_fail"
MALFORMED = "__dq_malformed"
SEVERITIES = ("warn", "quarantine", "fail")
_KEYS = {"name", "severity", "description", "check", "args", "expr", "when"}
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class Expectation:
    """One declared rule. Exactly one of ``check`` (a built-in, with ``args``) or ``expr`` (SQL)."""

    name: str
    severity: str
    description: str
    check: str | None = None
    args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    expr: str | None = None
    when: str | None = None

    @property
    def table_level(self) -> bool:
        return self.check in TABLE_LEVEL

    @property
    def kind(self) -> str:
        return self.check or "sql"

    def describe(self) -> str:
        """The rule as one line (for reports): ``in_set(column=currency, ...)`` or the SQL."""
        rule = self.expr or f"{self.check}({', '.join(f'{k}={v}' for k, v in self.args.items())})"
        return f"{rule} when {self.when}" if self.when else rule


def parse_expectations(items: Sequence[Any], file: str, layer: str) -> tuple[Expectation, ...]:
    """Validate the ``expectations`` list of one table file (no Spark needed).

    Raises:
        ConfigError: naming the file and ``expectations[i].<key>`` of the first problem.
    """
    out: list[Expectation] = []
    seen: set[str] = set()
    for i, e in enumerate(items):
        where = f"expectations[{i}]"
        if not isinstance(e, Mapping):
            raise ConfigError(file, where, "expected a mapping with name, severity, description and check or expr")
        unknown = sorted(set(e) - _KEYS)
        if unknown:
            raise ConfigError(file, f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
        for req in ("name", "severity", "description"):
            if not isinstance(e.get(req), str) or not e[req].strip():
                raise ConfigError(file, f"{where}.{req}", "required (a non-empty string)")
        name = e["name"]
        where = f"expectations[{i}] ({name})"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ConfigError(file, f"{where}.name", "use lower_snake_case")
        if name in seen:
            raise ConfigError(file, f"{where}.name", "another rule of this table has this name")
        seen.add(name)
        severity = e["severity"]
        if severity not in SEVERITIES:
            raise ConfigError(file, f"{where}.severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
        if ("check" in e) == ("expr" in e):
            raise ConfigError(file, where, "give exactly one of check (a built-in) or expr (SQL)")
        args = e.get("args") or {}
        if not isinstance(args, Mapping):
            raise ConfigError(file, f"{where}.args", "expected a mapping of argument: value")
        if "expr" in e:
            if args:
                raise ConfigError(file, f"{where}.args", "only a built-in check takes args")
            if not isinstance(e["expr"], str) or not e["expr"].strip():
                raise ConfigError(file, f"{where}.expr", "expected a SQL boolean expression")
        else:
            problem = argument_problems(str(e["check"]), args)
            if problem:
                raise ConfigError(file, f"{where}.check", problem)
        exp = Expectation(
            name=name,
            severity=severity,
            description=" ".join(e["description"].split()),
            check=e.get("check"),
            args=MappingProxyType(dict(args)),
            expr=e.get("expr"),
            when=e.get("when"),
        )
        if exp.table_level and exp.severity == "quarantine":
            raise ConfigError(file, f"{where}.severity", f"{exp.check} judges the whole batch; it can warn or fail, not quarantine rows")
        if exp.table_level and exp.when:
            raise ConfigError(file, f"{where}.when", f"{exp.check} judges the whole batch; when: applies to row rules only")
        if layer != "silver" and exp.severity == "quarantine":
            raise ConfigError(file, f"{where}.severity", f"{layer} tables have no quarantine; use warn or fail")
        out.append(exp)
    return tuple(out)


@dataclass
class RuleResult:
    """What one rule found in one batch (or, summed, in one run)."""

    rule: str
    severity: str
    kind: str
    level: str  # row | table
    evaluated: int = 0
    failed: int = 0
    observed: float | None = None
    threshold: str | None = None
    ok: bool = True

    @property
    def passed(self) -> int:
        return self.evaluated - self.failed

    @property
    def warned(self) -> int:
        return self.failed if self.severity == "warn" else 0

    @property
    def quarantined(self) -> int:
        return self.failed if self.severity == "quarantine" else 0

    def add(self, other: RuleResult) -> None:
        """Fold a later batch of the same run in."""
        self.evaluated += other.evaluated
        self.failed += other.failed
        if other.observed is not None:
            self.observed, self.threshold = other.observed, other.threshold
        self.ok = self.ok and other.ok


KEPT = "__dq_kept"


@dataclass
class Checked:
    """The rows with their verdicts, the counts, and each rule's result.

    ``df`` is the rows with ``_errors``, ``_warnings`` and the checks' helper columns; what is
    persisted (``stored``) holds only one boolean per rule, so the arrays are built for the rows
    that are read with them (the quarantined ones, mostly), not for every row.
    """

    df: DataFrame
    rows: int
    quarantined: int
    warned: int
    results: list[RuleResult]
    helpers: tuple[str, ...]
    stored: DataFrame

    def valid(self) -> DataFrame:
        """Rows no quarantine rule caught (with ``_warnings``; checks' helper columns dropped)."""
        return self.df.where(F.col(KEPT)).drop(ERRORS, *self.helpers)

    def rejected(self) -> DataFrame:
        """Rows for the quarantine table (with ``_errors``, every rule they broke)."""
        return self.df.where(~F.col(KEPT)).drop(*self.helpers)

    def unpersist(self) -> None:
        self.stored.unpersist()


def _names_where(flags: list[tuple[str, str]]) -> Column:
    """The names whose boolean column is true, as an array (``[]`` when none).

    Built with ``concat_ws`` and ``split`` (rule names are snake_case, no commas) rather than a
    higher-order ``filter``, which Spark evaluates row by row outside generated code.
    """
    if not flags:
        return F.array().cast("array<string>")
    if any("," in n for n, _ in flags):
        raise ValueError(f"rule names may not contain a comma: {[n for n, _ in flags if ',' in n]}")
    joined = F.concat_ws(",", *[F.when(F.col(c), F.lit(n)) for n, c in flags])
    return F.when(joined == "", F.array().cast("array<string>")).otherwise(F.split(joined, ","))


def _wrap(exp: Expectation, table: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except QualityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad SQL expression or argument: name the table and the rule
        raise ConfigError(table, f"expectations.{exp.name}", f"cannot evaluate {exp.describe()!r}: {str(exc).splitlines()[0]}") from None


@dataclass
class _Flags:
    """Each row rule's verdict as a boolean column of ``df`` (``flag``: rule -> column)."""

    df: DataFrame
    row_rules: list[tuple[Expectation, RowCheck, Column]]
    table_rules: list[tuple[Expectation, TableCheck]]
    flag: dict[str, str]
    by_severity: dict[str, list[tuple[str, str]]]
    keys: tuple[str, ...]
    table: str


def _flag_rows(df: DataFrame, expectations: Sequence[Expectation], context: Callable[[Expectation], CheckContext]) -> _Flags:
    """The row rules' verdicts as columns (no action runs: a streaming DataFrame qualifies)."""
    row_rules: list[tuple[Expectation, RowCheck, Column]] = []
    table_rules: list[tuple[Expectation, TableCheck]] = []
    table_name = context(expectations[0]).table if expectations else "table"
    keys = context(expectations[0]).keys if expectations else ()
    for exp in expectations:
        ctx = context(exp)
        chk = _wrap(exp, table_name, lambda e=exp, c=ctx: sql_check(e.expr) if e.expr else build(e.check, c, e.args))
        if isinstance(chk, TableCheck):
            table_rules.append((exp, chk))
            continue
        if chk.prepare is not None:
            df = _wrap(exp, table_name, lambda c=chk, d=df: c.prepare(d))
        applies = _wrap(exp, table_name, lambda e=exp: F.coalesce(F.expr(e.when), F.lit(False))) if exp.when else F.lit(True)
        row_rules.append((exp, chk, applies))
    malformed: Column = F.lit(False)
    for _e, c, a in row_rules:
        if c.well_formed:
            malformed = malformed | (F.coalesce(c.failed, F.lit(False)) & a)
    # Each rule's verdict becomes a boolean column; the verdict arrays and every count are then
    # cheap reads of those (and of ``__dq_malformed``, which limits what the other rules judge).
    flag: dict[str, str] = {}
    flag_cols: list[Column] = []
    for i, (e, c, a) in enumerate(row_rules):
        flag[e.name] = f"__dq_flag{i}"
        judged = a if c.well_formed else a & ~F.col(MALFORMED)
        flag_cols.append((F.coalesce(c.failed, F.lit(False)) & judged).alias(flag[e.name]))
    by_severity = {s: [(e.name, flag[e.name]) for e, _, _ in row_rules if e.severity == s] for s in SEVERITIES}
    try:
        flagged = df.select("*", malformed.alias(MALFORMED)).select("*", *flag_cols)
    except Exception:
        for e, c, a in row_rules:  # find the rule that does not resolve, and name it
            _wrap(e, table_name, lambda c=c, a=a: df.select(F.coalesce(c.failed, F.lit(False)) & a))
        raise
    return _Flags(flagged, row_rules, table_rules, flag, by_severity, tuple(keys), table_name)


def passing(df: DataFrame, expectations: Sequence[Expectation], context: Callable[[Expectation], CheckContext]) -> DataFrame:
    """The rows no ``quarantine`` row rule catches, judged exactly as :func:`apply_expectations`
    judges them, but without counting anything: a streaming DataFrame qualifies (real-time
    scoring). Table-level rules are not evaluated."""
    f = _flag_rows(df, expectations, context)
    caught: Column = F.lit(False)
    for _n, col in f.by_severity["quarantine"]:
        caught = caught | F.col(col)
    return f.df.where(~caught).drop(*[c for c in f.df.columns if c.startswith("__dq_")])


def apply_expectations(
    df: DataFrame,
    expectations: Sequence[Expectation],
    context: Callable[[Expectation], CheckContext],
    storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
) -> Checked:
    """Evaluate every rule on ``df`` in one pass; raise QualityError if a ``fail`` rule broke.

    Adds ``_errors`` (quarantine rules broken) and ``_warnings`` (warn rules broken). Nothing is
    written here: on a QualityError the caller has committed nothing.
    """
    f = _flag_rows(df, expectations, context)
    row_rules, table_rules, flag, by_severity, flagged, keys = f.row_rules, f.table_rules, f.flag, f.by_severity, f.df, f.keys
    table_name = f.table
    quarantined: Column = F.lit(False)
    for _n, col in by_severity["quarantine"]:
        quarantined = quarantined | F.col(col)
    kept = F.col(KEPT)
    none = F.array().cast("array<string>")
    stored = flagged.select("*", (~quarantined).alias(KEPT)).persist(storage)
    out = stored.select(
        "*",
        _names_where(by_severity["quarantine"]).alias(ERRORS),
        _names_where(by_severity["warn"]).alias(WARNINGS),
        # fail rules judge the rows that would be written: those no quarantine rule caught
        F.when(kept, _names_where(by_severity["fail"])).otherwise(none).alias(FAILS),
    )
    helpers = tuple(c for c in out.columns if c.startswith("__dq_"))

    any_warning: Column = F.lit(False)
    for _n, col in by_severity["warn"]:
        any_warning = any_warning | F.col(col)
    aggs: list[Column] = [
        F.count(F.lit(1)).alias("__rows"),
        F.count_if(~kept).alias("__rejected"),
        F.count_if(kept & any_warning).alias("__warned"),
    ]
    for i, (e, c, a) in enumerate(row_rules):
        judged, broke = (a if c.well_formed else a & ~F.col(MALFORMED)), F.col(flag[e.name])
        if e.severity == "fail":
            judged, broke = judged & kept, broke & kept
        aggs.append(F.count_if(judged).alias(f"__e{i}"))
        aggs.append(F.count_if(broke).alias(f"__f{i}"))
    for j, (_e, t) in enumerate(table_rules):
        aggs.extend(col.alias(f"__t{j}_{k}") for k, col in t.aggregates.items())
    try:
        got = stored.agg(*aggs).first()
    except Exception:
        stored.unpersist()
        raise
    rows, rejected = int(got["__rows"]), int(got["__rejected"])

    results: list[RuleResult] = []
    for i, (e, _, _) in enumerate(row_rules):
        r = RuleResult(e.name, e.severity, e.kind, "row", evaluated=int(got[f"__e{i}"]), failed=int(got[f"__f{i}"]))
        r.ok = r.failed == 0
        results.append(r)
    for j, (e, t) in enumerate(table_rules):
        values = {k: got[f"__t{j}_{k}"] for k in t.aggregates}
        observed, ok, threshold = t.verdict(values, rows)
        results.append(
            RuleResult(
                e.name, e.severity, e.kind, "table", evaluated=1, failed=0 if ok else 1, observed=observed, threshold=threshold, ok=ok
            )
        )

    broken = [r for r in results if r.severity == "fail" and not r.ok]
    if broken:
        failures = []
        for r in broken:
            samples: list[str] = []
            if r.level == "row":
                sel = [F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("null")) for k in keys])] if keys else [F.lit("")]
                samples = [x[0] for x in out.where(F.array_contains(FAILS, r.rule)).select(*sel).limit(SAMPLE_KEYS).collect()]
            else:
                samples = [f"observed {r.observed}, expected {r.threshold}"]
            failures.append((r.rule, r.failed, samples))
        stored.unpersist()
        raise QualityError(table_name, failures, results)
    return Checked(out, rows, rejected, int(got["__warned"]), results, helpers, stored)
