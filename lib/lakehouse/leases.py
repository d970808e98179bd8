"""Leases: one writer per table at a time, and runs that know about each other.

A job run takes a lease on every table it will write (its checkpoints, quarantine and stamps go
with the table) before it writes anything: a small file ``<checkpoints>/_leases/<table>.lease``
naming the run, its job, host and process and when it started, created atomically (of two runs
starting at the same moment, one gets it). While the run works, a heartbeat thread touches its
lease files every ``ttl / 6`` seconds; a lease whose file was not touched for ``ttl`` seconds
belongs to a run that is gone (killed, its machine lost) and is taken over, and that run is then
recorded as abandoned in the run log; so is a lease whose run was on this machine and whose
process no longer exists. A live run's lease is never taken, and a live run is never
marked abandoned.

A run that finds a table leased by a live run either waits for it (``wait`` seconds, logging
every ``ttl / 4`` seconds whom it waits for), or stops at once with a one-line error naming the
other run and when it started (``wait=0``). The pipeline waits (a scheduler that fired twice,
a person re-running by hand: the second run finds nothing left to do); ``replay`` and ``score``
stop at once (a person runs them and can run them again). A run never holds some of its leases
while waiting for the others: it takes all of them, in name order, or none.

On a local disk and on HDFS the lease file is created atomically; on S3A only with conditional
writes (``fs.s3a.create.conditional.enabled``). Lease times are the writers' clocks: keep the
machines' clocks within a fraction of ``ttl``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from lakehouse.errors import LakehouseError
from lakehouse.io import fs
from lakehouse.tables import Lake

log = logging.getLogger(__name__)

TTL_SECONDS = 120.0


class LeaseError(LakehouseError):
    """A table this run must write is leased by another live run, or its lease file is corrupt."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, from its file; ``heartbeat`` is the file's modification time."""

    table: str
    run_id: str
    job: str
    host: str
    pid: int
    started_at: str
    ttl: float
    heartbeat: float

    def alive(self, now: float) -> bool:
        """Its heartbeat is recent, and, when it ran on this machine, its process still runs (a
        run killed here is taken over at once, not after ``ttl``; a reused pid errs on the safe
        side: the lease is then kept until it expires)."""
        if now - self.heartbeat > self.ttl:
            return False
        if self.host == socket.gethostname() and self.pid > 0:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    def describe(self) -> str:
        return f"run {self.run_id} ({self.job}, pid {self.pid} on {self.host}, started {self.started_at})"


def lease_dir(lake: Lake) -> str:
    return f"{lake.env.paths.checkpoints}/_leases"


def _uri(lake: Lake, table: str) -> str:
    return f"{lease_dir(lake)}/{table}.lease"


def read_holder(spark: SparkSession, lake: Lake, table: str) -> Holder | None:
    """The holder of ``table``'s lease (None: no lease file).

    Raises:
        LeaseError: the file is there but is not a lease (corrupt), and was touched within the
            last ``TTL_SECONDS``; an older corrupt file is treated as a stale lease.
    """
    uri = _uri(lake, table)
    for attempt in range(3):  # a lease created on HDFS is briefly empty before its text lands
        got = fs.read_small(spark, uri)
        if got is None:
            return None
        text, mtime = got
        try:
            body = json.loads(text)
            return Holder(
                table,
                str(body["run_id"]),
                str(body["job"]),
                str(body["host"]),
                int(body["pid"]),
                str(body["started_at"]),
                float(body["ttl"]),
                mtime,
            )
        except (ValueError, KeyError, TypeError):
            if time.time() - mtime > TTL_SECONDS:
                return Holder(table, "(corrupt lease)", "?", "?", -1, "?", TTL_SECONDS, mtime)
            if attempt < 2:
                time.sleep(0.3)
    raise LeaseError(
        f"lease file {uri} for {table} is corrupt (not a lease written by this project) and was modified "
        f"{time.time() - mtime:.0f}s ago; if no run is using the lake, delete it; nothing was written"
    )


def live_runs(spark: SparkSession, lake: Lake) -> set[str]:
    """The run ids holding a live lease on some table of the lake."""
    now = time.time()
    runs = set()
    for name in fs.list_names(spark, lease_dir(lake)):
        if not name.endswith(".lease"):
            continue
        try:
            h = read_holder(spark, lake, name.removesuffix(".lease"))
        except LeaseError:
            continue
        if h is not None and h.alive(now):
            runs.add(h.run_id)
    return runs


class Leases:
    """The leases of one run on the tables it writes (see the module doc)."""

    def __init__(self, spark: SparkSession, lake: Lake, run_id: str, job: str, tables: Sequence[str], ttl: float = TTL_SECONDS) -> None:
        self.spark = spark
        self.lake = lake
        self.run_id = run_id
        self.job = job
        self.tables = sorted(set(tables))
        self.ttl = ttl
        self.held: list[str] = []
        self.taken_over: list[Holder] = []
        self.waited = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost: str | None = None

    def _body(self) -> str:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return json.dumps(
            {
                "run_id": self.run_id,
                "job": self.job,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": started,
                "ttl": self.ttl,
            }
        )

    def _try_all(self) -> Holder | None:
        """Take every lease, in name order; on the first held by a live run, give back those
        taken and return its holder."""
        body = self._body()
        for table in self.tables:
            while True:
                uri = _uri(self.lake, table)
                if fs.create_exclusive(self.spark, uri, body):
                    self.held.append(table)
                    break
                holder = read_holder(self.spark, self.lake, table)
                if holder is None:
                    continue  # released just now: try again
                if holder.run_id == self.run_id:
                    self.held.append(table)
                    break
                if holder.alive(time.time()):
                    self._give_back()
                    return holder
                self._take_over(holder)
        return None

    def _take_over(self, stale: Holder) -> None:
        """Remove a stale lease. Of several runs that found it stale, the one that creates the
        take-over marker for that holder removes it (after checking it is still that holder's)."""
        marker = f"{_uri(self.lake, stale.table)}.takeover-{stale.run_id}-{int(stale.heartbeat)}"
        if not fs.create_exclusive(self.spark, marker, self.run_id):
            time.sleep(0.2)
            return
        again = read_holder(self.spark, self.lake, stale.table)
        if again is not None and again.run_id == stale.run_id and not again.alive(time.time()):
            late = time.time() - stale.heartbeat - stale.ttl
            why = f"expired {late:.0f}s ago" if late > 0 else "its process on this machine is gone"
            log.warning("%s: lease of %s %s (killed?): taken over", stale.table, stale.describe(), why)
            fs.delete(self.spark, _uri(self.lake, stale.table))
            self.taken_over.append(stale)
        fs.delete(self.spark, marker)

    def _give_back(self) -> None:
        for table in self.held:
            fs.delete(self.spark, _uri(self.lake, table))
        self.held = []

    def acquire(self, wait: float = 0.0) -> None:
        """Take every lease, waiting up to ``wait`` seconds for live holders.

        Raises:
            LeaseError: a live run holds one of them (after ``wait``), naming it.
        """
        t0 = time.monotonic()
        said = -1e9
        while True:
            try:
                holder = self._try_all()
            except BaseException:
                self._give_back()  # a corrupt lease file: none of this run's leases stays
                raise
            if holder is None:
                break
            waited = time.monotonic() - t0
            if waited >= wait:
                raise LeaseError(
                    f"{holder.table} is being written by {holder.describe()}; "
                    + (f"waited {waited:.0f}s; " if wait else "")
                    + f"this {self.job} run {self.run_id} wrote nothing"
                    + ("" if wait else " (run it again when that run has finished)")
                )
            if waited - said >= self.ttl / 4:
                log.info("waiting for %s, which holds %s (%.0fs so far, up to %.0fs)", holder.describe(), holder.table, waited, wait)
                said = waited
            time.sleep(min(2.0, max(0.1, wait - waited)))
        self.waited = time.monotonic() - t0
        if self.waited >= 1:
            log.info("leases taken after waiting %.0fs: %s", self.waited, ", ".join(self.tables))
        self._beat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 6):
            for table in list(self.held):
                if not fs.touch(self.spark, _uri(self.lake, table)):
                    self.lost = f"the lease on {table} was taken from run {self.run_id} (its heartbeat stalled past {self.ttl:.0f}s)"
                    log.error("%s", self.lost)

    def check(self) -> None:
        """Raise if a lease was lost (taken over after this run stalled): stop before writing more."""
        if self.lost:
            raise LeaseError(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        for table in self.held:
            holder = None
            try:
                holder = read_holder(self.spark, self.lake, table)
            except LeaseError:
                pass
            if holder is not None and holder.run_id == self.run_id:
                fs.delete(self.spark, _uri(self.lake, table))
        self.held = []


@contextmanager
def leased(
    spark: SparkSession, lake: Lake, run_id: str, job: str, tables: Sequence[str], wait: float = 0.0, ttl: float = TTL_SECONDS
) -> Iterator[Leases]:
    """Hold the leases on ``tables`` for the block (see :class:`Leases`)."""
    leases = Leases(spark, lake, run_id, job, tables, ttl)
    leases.acquire(wait)
    try:
        yield leases
    finally:
        leases.release()
