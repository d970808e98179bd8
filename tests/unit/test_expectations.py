"""The expectation engine: each built-in check, severities, table-level checks, one pass."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from lakehouse.errors import ConfigError, QualityError
from lakehouse.quality.checks import CheckContext
from lakehouse.quality.expectations import ERRORS, WARNINGS, Expectation, apply_expectations, parse_expectations


def rules(*items: dict) -> tuple[Expectation, ...]:
    return parse_expectations([{"severity": "quarantine", "description": "d", **i} for i in items], "test.yaml", "silver")


def run(df: DataFrame, exps: tuple[Expectation, ...], **ctx: object):  # noqa: ANN201
    return apply_expectations(
        df, exps, lambda e: CheckContext("silver.t", e.name, ctx.get("keys", ("id",)), ctx.get("tables", {}).get, ctx.get("history"))
    )  # type: ignore[arg-type]


def verdicts(checked, key: str = "id") -> dict:  # noqa: ANN001
    return {r[key]: (r[ERRORS], r[WARNINGS]) for r in checked.df.select(key, ERRORS, WARNINGS).collect()}


def test_each_row_check_flags_exactly_the_breaking_rows(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            (1, "a", 5, "x@y.io", "2026-01-31", date(2026, 1, 31)),
            (2, " ", 5, "x@y.io", "2026-01-31", date(2026, 1, 31)),  # blank counts as missing
            (3, "b", 0, "nope", "2026-02-30", None),
            (4, "z", 11, None, None, None),  # nulls pass all but not_null
        ],
        "id int, code string, n int, email string, d string, typed date",
    )
    exps = rules(
        {"name": "code_present", "check": "not_null", "args": {"column": "code"}},
        {"name": "code_known", "check": "in_set", "args": {"column": "code", "values": ["a", "b", " "]}},
        {"name": "n_range", "check": "between", "args": {"column": "n", "min": 1, "max": 10}},
        {"name": "email_ok", "check": "matches", "args": {"column": "email", "pattern": "^[^@]+@[^@]+$"}},
        {"name": "d_ok", "check": "valid_date", "args": {"column": "d", "format": "yyyy-MM-dd"}},
        {"name": "typed_ok", "check": "valid_date", "args": {"column": "typed", "raw": "d"}},
        {"name": "n_even", "expr": "n % 2 = 1"},
    )
    checked = run(df, exps)
    assert {k: v[0] for k, v in verdicts(checked).items()} == {
        1: [],
        2: ["code_present"],
        3: ["n_range", "email_ok", "d_ok", "typed_ok", "n_even"],
        4: ["code_known", "n_range"],
    }
    by_rule = {r.rule: (r.evaluated, r.failed, r.passed) for r in checked.results}
    assert by_rule["n_range"] == (4, 2, 2)
    assert by_rule["d_ok"] == (4, 1, 3)
    assert checked.rows == 4 and checked.quarantined == 3


def test_well_formed_hides_follow_on_failures_and_when_guards(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, None, None, "x"), (2, "{broken", None, "x"), (3, None, -1, "refund")], "id int, bad string, n int, kind string"
    )
    exps = rules(
        {"name": "parsed", "check": "well_formed", "args": {"column": "bad"}},
        {"name": "n_present", "check": "not_null", "args": {"column": "n"}, "when": "kind <> 'refund'"},
        {"name": "n_negative_refund", "expr": "n < 0", "when": "kind = 'refund'", "severity": "warn"},
    )
    checked = run(df, exps)
    assert verdicts(checked) == {1: (["n_present"], []), 2: (["parsed"], []), 3: ([], [])}
    by_rule = {r.rule: (r.evaluated, r.failed) for r in checked.results}
    assert by_rule == {"parsed": (3, 1), "n_present": (1, 1), "n_negative_refund": (1, 0)}


def test_warn_keeps_rows_and_counts_them(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, 5), (2, 50), (3, None)], "id int, n int")
    checked = run(df, rules({"name": "small", "check": "between", "args": {"column": "n", "max": 10}, "severity": "warn"}))
    assert checked.quarantined == 0 and checked.warned == 1
    assert_df_equality(checked.valid().drop(WARNINGS), df, ignore_row_order=True)
    assert [r.warned for r in checked.results] == [1]


def test_fail_rule_raises_with_rule_table_and_sample_keys_but_ignores_quarantined_rows(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, 5), (2, -1), (3, None), (4, -2)], "id int, n int")
    exps = rules(
        {"name": "n_present", "check": "not_null", "args": {"column": "n"}},
        {"name": "n_nonneg", "expr": "n >= 0 OR id = 4", "severity": "quarantine"},
        {"name": "n_positive", "expr": "n > 0", "severity": "fail"},
    )
    with pytest.raises(QualityError) as info:
        run(df, exps)
    msg = str(info.value)
    assert "silver.t" in msg and "'n_positive' broken by 1 row(s), e.g. 4" in msg and "nothing was committed" in msg
    ok = run(df.where("id <> 4"), exps)  # id 2 is quarantined, so the fail rule does not see it
    assert {r.rule: r.failed for r in ok.results} == {"n_present": 1, "n_nonneg": 1, "n_positive": 0}


def test_unique_within_batch_and_against_the_table(spark: SparkSession) -> None:
    stored = spark.createDataFrame([("k1", 100), ("k2", 200)], "id string, _record_hash bigint")
    batch = spark.createDataFrame(
        [("k1", 100), ("k2", 201), ("k3", 300), ("k3", 301), ("k4", 400), ("k4", 400), (None, 1), (None, 2)],
        "id string, _record_hash bigint",
    )
    checked = run(batch, rules({"name": "one_record_per_id", "check": "unique"}), tables={"silver.t": stored})
    got = sorted((r["id"] or "-", r["_record_hash"], r[ERRORS]) for r in checked.df.collect())
    assert got == [
        ("-", 1, []),
        ("-", 2, []),
        ("k1", 100, []),  # an exact re-send of the stored record
        ("k2", 201, ["one_record_per_id"]),  # a different record under a stored id
        ("k3", 300, ["one_record_per_id"]),  # two records under one id in the batch
        ("k3", 301, ["one_record_per_id"]),
        ("k4", 400, []),
        ("k4", 400, []),
    ]


def test_foreign_key_with_filter(spark: SparkSession) -> None:
    customers = spark.createDataFrame([("c1", True), ("c2", False), ("c2", True), ("c3", False)], "customer_id string, is_current boolean")
    tx = spark.createDataFrame([(1, "c1"), (2, "c2"), (3, "c3"), (4, "c9"), (5, None)], "id int, cust string")
    exps = rules(
        {
            "name": "customer_known",
            "check": "foreign_key",
            "args": {"column": "cust", "table": "silver.customers", "key": "customer_id", "where": "is_current"},
            "severity": "warn",
        }
    )
    checked = run(tx, exps, tables={"silver.customers": customers})
    assert {k: w for k, (_, w) in verdicts(checked).items()} == {1: [], 2: [], 3: ["customer_known"], 4: ["customer_known"], 5: []}
    assert checked.valid().count() == 5  # a join per rule must not multiply rows


def test_table_level_checks(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, None, datetime(2026, 3, 1, 10), date(2026, 3, 2)), (2, "d", datetime(2026, 2, 27, 0), date(2026, 3, 2))],
        "id int, device string, ts timestamp, arrived date",
    )
    exps = rules(
        {"name": "devices", "check": "null_share", "args": {"column": "device", "max": 0.25}, "severity": "warn"},
        {"name": "fresh", "check": "freshness", "args": {"column": "ts", "max_age_hours": 24, "reference": "arrived"}, "severity": "warn"},
        {"name": "volume", "check": "row_count", "args": {"min_ratio": 0.5, "max_ratio": 2.0, "min_history": 2}, "severity": "warn"},
    )
    checked = run(df, exps, history=lambda n: [10.0, 12.0, 8.0][:n])
    got = {r.rule: (r.observed, r.ok, r.threshold) for r in checked.results}
    assert got == {
        "devices": (0.5, False, "<= 0.25"),
        "fresh": (14.0, True, "<= 24 h"),
        "volume": (2.0, False, "5..20 (median of 3 runs 10)"),
    }
    young = run(df, exps, history=lambda n: [10.0])
    assert {r.rule: r.ok for r in young.results}["volume"] is True  # too little history to judge
    with pytest.raises(QualityError, match="'volume' broken by 1 row.*observed 2.0, expected 5..20"):
        run(
            df,
            parse_expectations(
                [{"name": "volume", "check": "row_count", "args": {"min_history": 1}, "severity": "fail", "description": "d"}],
                "t",
                "silver",
            ),
            history=lambda n: [10.0],
        )


def test_rules_are_evaluated_in_one_pass(spark: SparkSession) -> None:
    """Ten rules cost the same number of Spark jobs as one: no action per rule."""
    df = spark.range(1000).selectExpr("id", "id % 7 AS a", "cast(id AS string) AS s")
    one = rules({"name": "r0", "expr": "a < 6"})
    ten = rules(
        *[{"name": f"r{i}", "expr": f"a <> {i}"} for i in range(8)],
        {"name": "s_ok", "check": "matches", "args": {"column": "s", "pattern": "^[0-9]+$"}},
        {"name": "nn", "check": "not_null", "args": {"column": "s"}},
    )

    def jobs(exps: tuple[Expectation, ...]) -> int:
        sc = spark.sparkContext
        group = f"one-pass-{len(exps)}"
        sc.setJobGroup(group, group)
        try:
            checked = run(df, exps)
            checked.unpersist()
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
        return len(sc.statusTracker().getJobIdsForGroup(group))

    assert jobs(ten) == jobs(one)


def test_a_rule_that_does_not_resolve_is_named(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1,)], "id int")
    with pytest.raises(ConfigError, match=r"silver.t: expectations.bad: cannot evaluate 'nope > 1'"):
        run(df, rules({"name": "fine", "expr": "id > 0"}, {"name": "bad", "expr": "nope > 1"}))
