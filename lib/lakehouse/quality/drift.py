"""Schema drift of a raw source: fields the declared schema does not know, and what to do.

Each bronze source declares ``schema_drift`` (default ``rescue``):

* ``rescue``: unexpected JSON fields stay in ``_rescued_data`` (silver keeps them as JSON), with
  a warning naming the fields, the record count and a file;
* ``evolve`` (JSON only): each new field becomes a string column of bronze (and of the silver
  table built from it), with a log line; values are taken out of ``_rescued_data``;
* ``fail``: the batch is refused before anything is written, naming the file and the fields.

Every field arrives as text (bronze keeps raw fidelity), so a type change of an existing field
cannot corrupt bronze: a value that no longer parses becomes null in silver's typed column and
the row is quarantined by the table's rules, with the original record kept.

For CSV sources, drift is a header that differs from the declared columns (checked on each new
file); its rows do not parse into the declared columns and go to ``_corrupt_record``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import BRONZE_METADATA, TableSpec
from lakehouse.io import fs

RESCUED = "_rescued_data"


@dataclass(frozen=True)
class Drift:
    """Unexpected fields found in one batch: ``{field: (records, a file that has it)}``."""

    fields: dict[str, tuple[int, str]]
    missing: tuple[str, ...] = ()  # CSV: declared columns the header lacks

    def __bool__(self) -> bool:
        return bool(self.fields or self.missing)

    @property
    def records(self) -> int:
        return max((n for n, _ in self.fields.values()), default=0)

    def describe(self) -> str:
        parts = [f"{f} ({n} record(s), e.g. {file})" for f, (n, file) in sorted(self.fields.items())]
        if self.missing:
            parts.append(f"missing column(s) {', '.join(self.missing)}")
        return "; ".join(parts)


def rescued_keys(col: Column) -> Column:
    return F.map_keys(F.from_json(col, "map<string,string>"))


def detect_json(batch: DataFrame, known: set[str] = frozenset()) -> Drift:
    """Fields in ``_rescued_data`` (one aggregation over the batch), except ``known`` ones."""
    rows = (
        batch.where(F.col(RESCUED).isNotNull())
        .select(F.explode(rescued_keys(F.col(RESCUED))).alias("field"), "_source_file")
        .where(~F.col("field").isin(list(known)) if known else F.lit(True))
        .groupBy("field")
        .agg(F.count("*").alias("n"), F.min("_source_file").alias("file"))
        .collect()
    )
    return Drift({r["field"]: (int(r["n"]), r["file"]) for r in rows})


def detect_csv(spark: SparkSession, spec: TableSpec, files: dict[str, int]) -> Drift:
    """Header columns of new files (``{file: records}``) that are not declared, and declared
    columns they lack."""
    declared = [c for c, _ in spec.columns]
    extra: dict[str, tuple[int, str]] = {}
    missing: set[str] = set()
    for f, records in sorted(files.items()):
        header = [h.strip().strip('"') for h in fs.first_line(spark, f).split(",")]
        for h in header:
            if h not in declared:
                n, first = extra.get(h, (0, f))
                extra[h] = (n + records, first)
        missing |= {d for d in declared if d not in header}
    return Drift(extra, tuple(sorted(missing)))


def evolved_columns(table_columns: list[str], spec: TableSpec) -> list[str]:
    """Columns a table gained by evolution: neither declared nor bronze metadata."""
    declared = {c for c, _ in spec.columns} | {c for c, _ in BRONZE_METADATA}
    return [c for c in table_columns if c not in declared and not c.startswith("_")]


def evolve(batch: DataFrame, fields: list[str]) -> DataFrame:
    """Move ``fields`` out of ``_rescued_data`` into string columns of their own."""
    if not fields:
        return batch
    as_map = F.from_json(RESCUED, "map<string,string>")
    rest = F.map_filter(as_map, lambda k, _v: ~k.isin(*fields))
    cols = [as_map.getItem(f).alias(f) for f in fields]
    return batch.select(
        *[c for c in batch.columns if c != RESCUED],
        F.when(F.size(rest) > 0, F.to_json(rest)).alias(RESCUED),
        *cols,
    )
