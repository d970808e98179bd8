"""The layer's concurrent builder: order, sessions, failures (no Spark needed: a stand-in session)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from lakehouse.pipeline.parallel import POOL_PROPERTY, build_all


@dataclass
class FakeContext:
    props: dict[tuple[int, str], str | None] = field(default_factory=dict)

    def setLocalProperty(self, key: str, value: str | None) -> None:  # noqa: N802 - Spark's name
        self.props[(threading.get_ident(), key)] = value


@dataclass
class FakeSession:
    sparkContext: FakeContext  # noqa: N815 - Spark's name
    made: list[FakeSession] = field(default_factory=list)

    def newSession(self) -> FakeSession:  # noqa: N802 - Spark's name
        s = FakeSession(self.sparkContext)
        self.made.append(s)
        return s


@dataclass(frozen=True)
class Spec:
    name: str
    upstream: tuple[str, ...] = ()


# silver's shape: three independent tables, one reading two of them, one reading that one
SPECS = [
    Spec("silver.customers"),
    Spec("silver.fx_rates"),
    Spec("silver.merchants"),
    Spec("silver.transactions", ("bronze.transactions", "silver.fx_rates", "silver.customers")),
    Spec("silver.chargebacks", ("silver.transactions",)),
]


def test_each_table_starts_after_what_it_reads_and_tables_overlap() -> None:
    root = FakeSession(FakeContext())
    spans: dict[str, tuple[float, float]] = {}
    sessions: dict[str, FakeSession] = {}
    pools: dict[str, str | None] = {}

    def build(session: FakeSession, spec: Spec) -> str:
        t0 = time.monotonic()
        pools[spec.name] = session.sparkContext.props[(threading.get_ident(), POOL_PROPERTY)]
        time.sleep(0.2)
        sessions[spec.name] = session
        spans[spec.name] = (t0, time.monotonic())
        return spec.name.upper()

    out = build_all(root, SPECS, build, workers=3)  # type: ignore[arg-type]
    assert out == {s.name: s.name.upper() for s in SPECS}
    for spec in SPECS:
        for u in spec.upstream:
            if u in spans:
                assert spans[u][1] <= spans[spec.name][0], (u, spec.name)
    # the three independent tables ran at once
    first = [spans[n] for n in ("silver.customers", "silver.fx_rates", "silver.merchants")]
    assert max(s for s, _ in first) < min(e for _, e in first)
    # never the caller's session; one per thread (at most three), each table's jobs in its own pool
    assert all(sessions[n] is not root for n in sessions) and 1 <= len(root.made) <= 3
    assert pools == {s.name: s.name for s in SPECS}


def test_one_worker_builds_in_order_in_the_callers_session() -> None:
    root = FakeSession(FakeContext())
    seen: list[tuple[str, FakeSession]] = []
    build_all(root, SPECS, lambda s, spec: seen.append((spec.name, s)), workers=1)  # type: ignore[arg-type]
    assert seen == [(s.name, root) for s in SPECS] and root.made == []


def test_a_failure_stops_what_reads_it_lets_the_rest_finish_and_is_raised() -> None:
    root = FakeSession(FakeContext())
    built: list[str] = []
    lock = threading.Lock()

    def build(session: FakeSession, spec: Spec) -> None:
        if spec.name == "silver.fx_rates":
            raise ValueError("silver.fx_rates: broken")
        time.sleep(0.1)
        with lock:
            built.append(spec.name)

    with pytest.raises(ValueError, match="silver.fx_rates: broken"):
        build_all(root, SPECS, build, workers=2)  # type: ignore[arg-type]
    assert sorted(built) == ["silver.customers", "silver.merchants"]  # not transactions, nor chargebacks after it
