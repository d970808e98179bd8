"""Instants handed between Python and Spark, independent of the driver machine's time zone.

PySpark collects a ``timestamp`` as a *naive* ``datetime`` in the Python process's local zone and
reads a naive ``datetime`` handed to it (``F.lit``) in that zone too. The round trip is right, but
anything computed in between is not: ``.date()`` of a collected instant is the driver's local day,
so a driver in Pacific/Kiritimati (UTC+14) would cut other days, or prune other partitions, than
one in UTC. Every instant the lakehouse computes with goes through :func:`utc` first.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime (a naive one is taken as the driver's local time, which is
    what PySpark's ``collect`` returns)."""
    return ts.astimezone(timezone.utc)


def utc_or_none(ts: datetime | None) -> datetime | None:
    return None if ts is None else utc(ts)
