"""Compute a gold feature table from its ``features:`` declaration, in full or incrementally.

Each definition chooses its windows: (t - w, t] (the state including the row's own events, e.g.
a merchant's hour) or (t - w, t) (``before=True``: only events strictly earlier, e.g. a customer's
state just before a payment). A reader takes, for an event at t, the latest row stamped strictly
before t (:func:`lakehouse.features.pit.point_in_time_join`), so the event never sees itself or
anything after it.

Example (in a notebook)::

    spec = load_tables("conf")["gold.customer_features"]
    rows = build({"transactions": spark.read.format("delta").load(tx_path)}, None, spec=spec)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from lakehouse.config import FeatureSpec, TableSpec, import_dotted
from lakehouse.errors import PipelineError
from lakehouse.instants import utc_or_none

log = logging.getLogger(__name__)


def window(fs: FeatureSpec, label: str, before: bool = False) -> WindowSpec:
    """The entity's events in the window (t - w, t] of the row at t (ties at t included), or with
    ``before`` in (t - w, t): only the events strictly earlier than the row's own."""
    micros = fs.seconds(label) * 1_000_000
    return Window.partitionBy(fs.entity).orderBy(F.unix_micros(F.col(fs.time))).rangeBetween(-(micros - 1), -1 if before else 0)


def compute(events: DataFrame, fs: FeatureSpec) -> DataFrame:
    """Every definition's columns beside the events. All windows share the entity partitioning
    and the time order, so Spark sorts once and evaluates them in one pass per entity."""
    cols: list[Column] = []
    for name in fs.definitions:
        cols.extend(import_dotted(name, fs.file, "features.definitions")(events, fs))
    return events.select("*", *cols)


def build(tables: Mapping[str, DataFrame], changes: Mapping[str, DataFrame] | None, spec: TableSpec) -> DataFrame:
    """The gold transform of a feature table: every row on a full build; on an incremental run
    only the rows of the entities the changes touch, from the earliest touched instant on
    (read with ``lookback`` of history before it, which the upstream's partitions prune to)."""
    fs = spec.features
    if fs is None:
        raise PipelineError(f"{spec.name}: {spec.file} has no features: block (the feature engine needs one)")
    events_fn = import_dotted(fs.events, fs.file, "features.events")
    if changes is None:
        return compute(events_fn(tables, None), fs)
    touched = import_dotted(fs.touched, fs.file, "features.touched")(tables, changes).where(F.col(fs.entity).isNotNull())
    first = utc_or_none(touched.agg(F.min(fs.time)).first()[0])
    if first is None:
        log.info("%s: the changes touch no %s", spec.name, fs.entity)
        return compute(events_fn(tables, None), fs).limit(0)
    since = first - timedelta(seconds=fs.lookback)
    log.info("%s: recomputing from %s (history read from %s)", spec.name, first, since)
    entities = touched.select(fs.entity).distinct()
    events = events_fn(tables, since).join(entities, fs.entity, "left_semi")
    return compute(events, fs).where(F.col(fs.time) >= F.lit(first))
