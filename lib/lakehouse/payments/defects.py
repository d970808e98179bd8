"""Score the quality rules against the generator's defect ledger: recall and precision.

The generator writes every defective line with its defect kind to ``<truth>/defects``. Each
ledger line is parsed exactly as bronze parses it, and each quarantined record is read back
from its JSON; both become the same canonical text, so records are matched one to one (with
multiplicity: a re-sent defective line is two records). Then, per source and defect kind:

* recall: injected records found in quarantine broken by the rule meant for that defect;
* precision: quarantined records that are injected defects (a clean record in quarantine is a
  false positive), per source.

Example::

    rows = score(spark, lake, env.paths.truth)
    print(format_score(rows))
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import TableSpec
from lakehouse.io import delta
from lakehouse.io.raw import parse_json_lines
from lakehouse.quality.quarantine import read_record
from lakehouse.tables import Lake

# The rule each injected defect kind must be caught by (any one of the set).
EXPECTED_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("transactions", "malformed_json"): frozenset({"well_formed"}),
    ("transactions", "missing_required_field"): frozenset({"customer_id_present", "merchant_id_present"}),
    ("transactions", "negative_amount"): frozenset({"amount_positive"}),
    ("transactions", "absurd_amount"): frozenset({"amount_in_range"}),
    ("transactions", "unknown_currency"): frozenset({"currency_known"}),
    ("transactions", "unparseable_timestamp"): frozenset({"event_time_valid"}),
    ("customers", "missing_required_field"): frozenset({"customer_id_present"}),
    ("customers", "unparseable_date"): frozenset({"birth_date_valid"}),
    ("customers", "malformed_row"): frozenset({"well_formed"}),
    ("merchants", "malformed_json"): frozenset({"well_formed"}),
    ("merchants", "missing_required_field"): frozenset({"merchant_id_present"}),
    ("chargebacks", "unparseable_amount"): frozenset({"amount_valid"}),
}


@dataclass(frozen=True)
class DefectScore:
    source: str
    defect: str  # a defect kind, or '*' for the source's precision line
    injected: int
    caught: int  # injected records quarantined by the rule meant for them
    quarantined: int  # '*' line: records in quarantine; else injected records in quarantine at all
    false_positives: int  # '*' line: quarantined records that are not injected defects

    @property
    def recall(self) -> float:
        return self.caught / self.injected if self.injected else 1.0

    @property
    def precision(self) -> float:
        return (self.quarantined - self.false_positives) / self.quarantined if self.quarantined else 1.0


def _canonical(spec: TableSpec) -> Column:
    names = [c for c, _ in spec.columns]
    return F.to_json(F.struct(*[F.col(n) for n in names], F.col("_corrupt_record"), F.col("_rescued_data")))


def parse_ledger(spec: TableSpec, lines: DataFrame) -> DataFrame:
    """Ledger lines (``line`` plus other columns) parsed as bronze parses the source."""
    names = [c for c, _ in spec.columns]
    source = spec.source
    assert source is not None
    if source.format == "json":
        return parse_json_lines(lines.withColumnRenamed("line", "value"), spec.schema, names)
    opts = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record", **{k: str(v) for k, v in source.options.items()}}
    parsed = lines.select("*", F.from_csv("line", f"{spec.schema}, _corrupt_record string", opts).alias("_p"))
    others = [c for c in lines.columns if c != "line"]
    return parsed.select(
        *[F.col(f"_p.{n}").alias(n) for n in names], F.lit(None).cast("string").alias("_rescued_data"), "_p._corrupt_record", *others
    )


def score(spark: SparkSession, lake: Lake, truth_root: str) -> list[DefectScore]:
    """Recall per (source, defect kind) and precision per source, from the ledger and quarantine."""
    ledger = spark.read.parquet(f"{truth_root}/defects")
    out: list[DefectScore] = []
    for silver in lake.layer("silver"):
        bronze = lake.spec(silver.upstream[0])
        if bronze.source is None:
            continue
        src = bronze.source.path
        injected = parse_ledger(bronze, ledger.where(F.col("source") == src).select("line", "defect"))
        injected = injected.select(_canonical(bronze).alias("key"), "defect")
        q = (
            spark.read.format("delta").load(lake.quarantine_path(silver.name))
            if delta.is_delta(spark, lake.quarantine_path(silver.name))
            else None
        )
        if q is None:
            q = spark.createDataFrame([], "record string, errors array<string>")
        record = read_record(F.col("record"), bronze)
        quarantined = q.select(record.alias("r"), "errors").select("r.*", "errors").select(_canonical(bronze).alias("key"), "errors")
        # number the copies of each record on both sides, so re-sends match one to one
        inj = injected.withColumn("n", F.row_number().over(_by_key()))
        qua = quarantined.withColumn("n", F.row_number().over(_by_key()))
        joined = inj.join(qua, ["key", "n"], "full_outer")
        rows = joined.groupBy("defect").agg(
            F.count_if(F.col("defect").isNotNull()).alias("injected"),
            F.count_if(F.col("defect").isNotNull() & F.col("errors").isNotNull()).alias("in_quarantine"),
            F.count_if(F.col("errors").isNotNull()).alias("quarantined"),
            F.collect_list(F.struct("defect", "errors")).alias("pairs"),
        )
        total_q = false_pos = 0
        for r in rows.collect():
            total_q += r["quarantined"]
            if r["defect"] is None:
                false_pos += r["quarantined"]
                continue
            expected = EXPECTED_RULES.get((src, r["defect"]), frozenset())
            caught = sum(1 for p in r["pairs"] if p["errors"] is not None and expected & set(p["errors"]))
            out.append(DefectScore(src, r["defect"], r["injected"], caught, r["in_quarantine"], 0))
        out.append(DefectScore(src, "*", sum(s.injected for s in out if s.source == src), 0, total_q, false_pos))
    return out


def _by_key():  # noqa: ANN202
    from pyspark.sql import Window

    return Window.partitionBy("key").orderBy(F.lit(1))


def format_score(rows: list[DefectScore]) -> str:
    """A plain-text table: per defect kind its recall, per source its precision."""
    lines = [f"{'source':<13}{'defect':<24}{'injected':>9}{'caught':>8}{'recall':>8}{'quarantined':>12}{'false pos.':>11}{'precision':>10}"]
    for s in rows:
        if s.defect == "*":
            blank = ""
            lines.append(
                f"{s.source:<13}{'(all records)':<24}{s.injected:>9}{blank:>16}"
                f"{s.quarantined:>12}{s.false_positives:>11}{s.precision:>10.1%}"
            )
        else:
            lines.append(f"{s.source:<13}{s.defect:<24}{s.injected:>9}{s.caught:>8}{s.recall:>8.1%}")
    return "\n".join(lines)
