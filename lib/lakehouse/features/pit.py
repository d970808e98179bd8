"""The point-in-time join: each event gets the latest feature values known strictly before it.

Training on values computed after the event (a feature row stamped one second later, a
chargeback that arrived after the payment) teaches a model what it will never know when it
scores. :func:`point_in_time_join` takes, per event, the entity's latest feature row whose time
is strictly earlier than the event's, and only if it is at most ``max_age`` old.

It is an as-of join written as one sort: events and feature rows are unioned, ordered by entity
and time (an event before a feature row of the same instant) and each event takes the last
feature row before it. No range join, no row explosion; the feature table is first pruned to the
events' time range (``[earliest event - max_age, latest event]``, on the time column and, when
given, on a date partition column).

Example::

    train = point_in_time_join(labelled, customer_features, "customer_id", "event_time",
                               max_age=timedelta(days=30), prefix="c_", partition_column="event_date")
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.errors import PipelineError
from lakehouse.instants import utc_or_none


def time_range(events: DataFrame, event_time: str) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest event time (one small aggregate)."""
    row = events.agg(F.min(event_time).alias("lo"), F.max(event_time).alias("hi")).first()
    return (utc_or_none(row["lo"]), utc_or_none(row["hi"])) if row else (None, None)


def prune(
    features: DataFrame,
    feature_time: str,
    lo: datetime | None,
    hi: datetime | None,
    max_age: timedelta | None,
    partition_column: str | None = None,
) -> DataFrame:
    """The feature rows an event in [lo, hi] can use: time in [lo - max_age, hi)."""
    if lo is None or hi is None:
        return features
    start = lo - max_age if max_age is not None else None
    out = features.where(F.col(feature_time) < F.lit(hi))
    if partition_column:
        out = out.where(F.col(partition_column) <= F.lit(hi.date()))
    if start is not None:
        out = out.where(F.col(feature_time) >= F.lit(start))
        if partition_column:
            out = out.where(F.col(partition_column) >= F.lit(start.date()))
    return out


def point_in_time_join(
    events: DataFrame,
    features: DataFrame,
    entity: str,
    event_time: str,
    feature_time: str | None = None,
    columns: Sequence[str] | None = None,
    max_age: timedelta | None = None,
    prefix: str = "",
    partition_column: str | None = None,
    time_bounds: tuple[datetime | None, datetime | None] | None = None,
) -> DataFrame:
    """``events`` with, per row, the entity's latest feature values from strictly before its time.

    Args:
        events: rows with ``entity`` and ``event_time`` (and anything else, kept as is).
        features: rows with ``entity``, ``feature_time`` and the value ``columns``.
        feature_time: the features' time column (default: ``event_time``'s name).
        columns: the value columns to attach (default: every other column of ``features``).
        max_age: older feature rows are not used (the values come back null).
        prefix: put before each attached column's name; ``{prefix}as_of`` is the time of the row
            used (null when none qualified).
        partition_column: a date column of ``features`` derived from its time, to prune on.
        time_bounds: the events' (earliest, latest) time if known; otherwise one aggregate finds it.

    Returns:
        One row per event, in no particular order.
    """
    ftime = feature_time or event_time
    needed = ((events, entity, "events"), (events, event_time, "events"), (features, entity, "features"), (features, ftime, "features"))
    for df, col, what in needed:
        if col not in df.columns:
            raise PipelineError(f"point-in-time join: {what} have no column {col!r} (columns: {', '.join(df.columns)})")
    values = list(columns) if columns is not None else [c for c in features.columns if c not in (entity, ftime, partition_column)]
    missing = [c for c in values if c not in features.columns]
    if missing:
        raise PipelineError(f"point-in-time join: features have no column(s) {', '.join(missing)}")
    lo, hi = time_bounds if time_bounds is not None else time_range(events, event_time)
    feats = prune(features, ftime, lo, hi, max_age, partition_column).where(F.col(entity).isNotNull() & F.col(ftime).isNotNull())
    value = F.struct(F.col(ftime).alias("__as_of"), *[F.col(c) for c in values])
    row = F.struct(*[F.col(c) for c in events.columns])
    f = feats.select(F.col(entity).alias("__e"), F.col(ftime).alias("__t"), F.lit(1).alias("__side"), value.alias("__v"))
    e = events.select(F.col(entity).alias("__e"), F.col(event_time).alias("__t"), F.lit(0).alias("__side"), row.alias("__row"))
    both = e.unionByName(f, allowMissingColumns=True)
    # an event sorts before a feature row of the same instant: only rows strictly earlier precede it
    before = Window.partitionBy("__e").orderBy("__t", "__side").rowsBetween(Window.unboundedPreceding, -1)
    joined = both.select("__side", "__row", F.last("__v", ignorenulls=True).over(before).alias("__v")).where("__side = 0")
    fresh = F.col("__v").isNotNull()
    if max_age is not None:
        age = F.unix_micros(F.col("__row").getField(event_time)) - F.unix_micros(F.col("__v.__as_of"))
        fresh = fresh & (age <= F.lit(int(max_age.total_seconds() * 1_000_000)))
    attached = [F.when(fresh, F.col("__v").getField(c)).alias(prefix + c) for c in values]
    return joined.select("__row.*", *attached, F.when(fresh, F.col("__v.__as_of")).alias(f"{prefix}as_of"))


def latest_state(features: DataFrame, entity: str, feature_time: str, columns: Sequence[str]) -> DataFrame:
    """Each entity's newest feature row (``entity``, ``__as_of`` and the value ``columns``): the
    state a live event, later than every row of ``features``, joins with (:func:`live_join`)."""
    newest = F.max_by(F.struct(F.col(feature_time).alias("__as_of"), *[F.col(c) for c in columns]), F.col(feature_time))
    rows = features.where(F.col(entity).isNotNull() & F.col(feature_time).isNotNull())
    return rows.groupBy(entity).agg(newest.alias("__v")).select(entity, "__v.*")


def live_join(
    events: DataFrame, state: DataFrame, entity: str, event_time: str, columns: Sequence[str], max_age: timedelta | None, prefix: str
) -> DataFrame:
    """``events`` with the entity's state from :func:`latest_state` (broadcast: a stream-static
    join), under :func:`point_in_time_join`'s rules: only a state strictly before the event and at
    most ``max_age`` old is used (else nulls). For events later than every feature row, which
    live events are, it equals the point-in-time join."""
    s = state.select(F.col(entity).alias("__e"), *[F.col(c).alias(f"__s_{c}") for c in ("__as_of", *columns)])
    joined = events.join(F.broadcast(s), events[entity] == F.col("__e"), "left")
    fresh = F.col("__s___as_of").isNotNull() & (F.col("__s___as_of") < F.col(event_time))
    if max_age is not None:
        age = F.unix_micros(F.col(event_time)) - F.unix_micros(F.col("__s___as_of"))
        fresh = fresh & (age <= F.lit(int(max_age.total_seconds() * 1_000_000)))
    attached = [F.when(fresh, F.col(f"__s_{c}")).alias(prefix + c) for c in columns]
    return joined.select(*[events[c] for c in events.columns], *attached, F.when(fresh, F.col("__s___as_of")).alias(f"{prefix}as_of"))
