"""``Column -> Column`` helpers for cleaning and typing raw strings. All built from ``F.*``.

Example::

    df.select(normalize_string(F.col("name")).alias("name"),
              try_timestamp(F.col("ts"), "yyyy-MM-dd HH:mm:ss").alias("ts"))
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F


def normalize_string(col: Column) -> Column:
    """Trim, collapse inner whitespace to one space; an empty result becomes null."""
    out = F.trim(F.regexp_replace(col, r"\s+", " "))
    return F.when(out != "", out)


def normalize_email(col: Column) -> Column:
    """Trimmed, lower-cased email; null if empty."""
    return F.lower(normalize_string(col))


def normalize_name(col: Column) -> Column:
    """Trimmed name; a name written all in capitals is put in title case ('ANNA' -> 'Anna')."""
    s = normalize_string(col)
    return F.when(s == F.upper(s), F.initcap(s)).otherwise(s)


def normalize_code(col: Column) -> Column:
    """Trimmed, upper-cased code (ids, currencies); null if empty."""
    return F.upper(normalize_string(col))


def to_iso_country(col: Column, aliases: Mapping[str, str]) -> Column:
    """Map any known spelling of a country ('de', 'Germany', 'DEU') to ISO 3166 alpha-2; else null."""
    mapping = F.create_map(*[x for k, v in sorted(aliases.items()) for x in (F.lit(k), F.lit(v))])
    return mapping[normalize_code(col)]


def try_timestamp(col: Column, fmt: str) -> Column:
    """Parse with a pattern; null (not an error) when the text does not match."""
    return F.try_to_timestamp(normalize_string(col), F.lit(fmt))


def try_date(col: Column, fmt: str = "yyyy-MM-dd") -> Column:
    """Parse a date with a pattern; null when the text is not a real date (e.g. 31.02.)."""
    return F.to_date(F.try_to_timestamp(normalize_string(col), F.lit(fmt)))


def try_decimal(col: Column, precision: int = 18, scale: int = 2) -> Column:
    """Cast text to ``decimal(precision, scale)``; null when it is not a number or too large."""
    return normalize_string(col).try_cast(f"decimal({precision},{scale})")


def is_blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")
