from __future__ import annotations

import pytest

from lakehouse.ddl import DDLError, parse_ddl


def test_parses_nested_and_parameterised_types() -> None:
    cols = parse_ddl(
        "id bigint NOT NULL, amount decimal(18, 2), tags array<string>, "
        "attrs map<string, int>, addr struct<city: string, geo struct<lat double, lon double>>, "
        "`odd name` string COMMENT 'quoted'"
    )
    assert cols == [
        ("id", "bigint"),
        ("amount", "decimal(18,2)"),
        ("tags", "array<string>"),
        ("attrs", "map<string,int>"),
        ("addr", "struct<city:string,geo:struct<lat:double,lon:double>>"),
        ("odd name", "string"),
    ]


@pytest.mark.parametrize(
    ("ddl", "fragment"),
    [
        ("id bigint,", "expected more text"),
        ("id bigints", "unknown type 'bigints'"),
        ("id decimal(40,2)", "out of range"),
        ("a int, A string", "appears twice"),
        ("tags array<string", "expected '>'"),
        ("", "empty"),
        ("id int; drop table x", "unexpected character"),
    ],
)
def test_rejects_bad_ddl_with_a_position(ddl: str, fragment: str) -> None:
    with pytest.raises(DDLError, match=fragment):
        parse_ddl(ddl)
