"""Readers of the raw zone: one streaming reader per file format, with raw fidelity.

Every line of every file becomes one record. JSON lines are read as text and parsed here, so a
line that does not parse is kept whole in ``_corrupt_record`` and fields the declared schema does
not know are kept as JSON in ``_rescued_data`` (schema drift is never silently dropped). CSV uses
Spark's reader in PERMISSIVE mode: a row with a wrong number of fields or a broken quote is kept
whole in ``_corrupt_record``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.errors import SourceError
from lakehouse.io import fs

ARRIVAL_DIR = "arrival_date="


def parse_json_lines(lines: DataFrame, ddl: str, names: list[str], blank: str = "drop") -> DataFrame:
    """Parse a ``value`` column of JSON lines into the declared fields plus rescue columns.

    Args:
        lines: a DataFrame with a string column ``value`` (other columns are kept).
        ddl: the declared fields as DDL.
        names: the declared top-level field names (fields outside it are rescued).
        blank: ``drop``: a blank line is no record (a file's empty line); ``corrupt``: it is a
            record whose ``_corrupt_record`` is the value ('' for null: a Kafka record without one).

    Returns:
        The declared fields, ``_rescued_data`` (JSON of unknown fields or null),
        ``_corrupt_record`` (the line, when it is not valid JSON) and the input's other columns.

    Example::

        df = spark.createDataFrame([('{"a": "1", "b": 2}',)], "value string")
        parse_json_lines(df, "a string", ["a"])  # a='1', _rescued_data='{"b":"2"}'
    """
    parsed = F.from_json(
        "value",
        f"{ddl}, _corrupt_record string",
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"},
    )
    as_map = F.from_json("value", "map<string,string>")
    extras = F.map_filter(as_map, lambda k, _v: ~k.isin(*names))
    if blank == "drop":
        lines, corrupt = lines.where(F.trim("value") != ""), F.col("_p._corrupt_record")
    elif blank == "corrupt":
        lines = lines.withColumn("_blank", F.coalesce(F.trim("value"), F.lit("")) == "").withColumn("_value", F.col("value"))
        corrupt = F.when(F.col("_blank"), F.coalesce("_value", F.lit(""))).otherwise(F.col("_p._corrupt_record"))
    else:
        raise ValueError(f"blank must be 'drop' or 'corrupt', got {blank!r}")
    carried = [c for c in lines.columns if c not in ("value", "_blank", "_value")]
    out = lines.select(parsed.alias("_p"), extras.alias("_extras"), *[c for c in lines.columns if c != "value"])
    return out.select(
        *[F.col(f"_p.{n}").alias(n) for n in names],
        F.when(F.size("_extras") > 0, F.to_json("_extras")).alias("_rescued_data"),
        corrupt.alias("_corrupt_record"),
        *carried,
    )


def arrival_date_of(path: Column) -> Column:
    """The ``arrival_date=YYYY-MM-DD`` folder of a file path, as a date (null if absent)."""
    txt = F.regexp_extract(path, r"arrival_date=(\d{4}-\d{2}-\d{2})", 1)
    return F.when(txt != "", F.to_date(txt))


def delivered(spark: SparkSession, raw_path: str, table: str) -> bool:
    """Whether anything was delivered to a source's landing folder: False if the folder or its
    arrival folders do not exist yet (a source declared before its first delivery).

    Raises:
        SourceError: an arrival folder holds no data file (a broken delivery), naming it.
    """
    if not fs.exists(spark, raw_path):
        return False
    if not any(is_dir and n.startswith(ARRIVAL_DIR) for n, is_dir, _ in fs.list_dir(spark, raw_path)):
        return False
    check_landing_folder(spark, raw_path, table)
    return True


def check_landing_folder(spark: SparkSession, raw_path: str, table: str) -> list[str]:
    """Fail clearly if the source folder is missing or an arrival folder holds no data file.

    Returns:
        The arrival folders found.

    Raises:
        SourceError: naming the folder.
    """
    if not fs.exists(spark, raw_path):
        raise SourceError(f"{table}: raw folder {raw_path} does not exist (generate or land the source first)")
    days = sorted(n for n, is_dir, _ in fs.list_dir(spark, raw_path) if is_dir and n.startswith(ARRIVAL_DIR))
    if not days:
        raise SourceError(f"{table}: raw folder {raw_path} holds no {ARRIVAL_DIR}YYYY-MM-DD folders")
    for d in days:
        files = [n for n, is_dir, size in fs.list_dir(spark, f"{raw_path}/{d}") if not is_dir and not n.startswith((".", "_"))]
        if not files:
            raise SourceError(f"{table}: empty batch: {raw_path}/{d} holds no data files")
    return days


def raw_stream(spark: SparkSession, spec: TableSpec, raw_path: str) -> DataFrame:
    """A streaming DataFrame over every arrival folder of a bronze table's source."""
    source = spec.source
    if source is None:
        raise SourceError(f"{spec.name} declares no source")
    names = [c for c, _ in spec.columns]
    glob = f"{raw_path}/{ARRIVAL_DIR}*"
    opts = dict(source.options)
    if source.format == "json":
        lines = spark.readStream.format("text").options(**opts).load(glob)
        lines = lines.select("value", F.col("_metadata.file_path").alias("_source_file"))
        return parse_json_lines(lines, spec.schema, names)
    reader = (
        spark.readStream.format("csv")
        .schema(f"{spec.schema}, _corrupt_record string")
        .option("header", "true")
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .options(**opts)
    )
    df = reader.load(glob)
    return df.select(
        *names,
        F.lit(None).cast("string").alias("_rescued_data"),
        "_corrupt_record",
        F.col("_metadata.file_path").alias("_source_file"),
    )
