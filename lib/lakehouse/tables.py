"""The one table resolver: a table's name -> its spec, its location, its checkpoints.

Example::

    lake = Lake(env, load_tables(env.conf_dir))
    lake.path("silver.transactions")        # '<lake_root>/tables/silver/transactions'
    lake.quarantine_path("silver.transactions")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lakehouse.config import LAYERS, EnvConfig, TableSpec
from lakehouse.errors import UnknownTableError

OPS_TABLES = ("run_log", "batch_log", "quality_metrics", "quality_profiles", "quality_outliers", "quality_alerts")


@dataclass(frozen=True)
class Lake:
    """An environment plus the declared tables: every path a job needs comes from here."""

    env: EnvConfig
    specs: Mapping[str, TableSpec]

    def spec(self, name: str) -> TableSpec:
        """Return the spec of ``<layer>.<name>``; UnknownTableError lists the known names."""
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownTableError(f"unknown table {name!r} (known: {', '.join(sorted(self.specs))})") from None

    def path(self, name: str) -> str:
        spec = self.spec(name)
        return f"{self.env.paths.tables}/{spec.layer}/{spec.short_name}"

    def quarantine_path(self, name: str) -> str:
        """Where the records that could not be made valid for ``name`` go."""
        return f"{self.env.paths.tables}/quarantine/{self.spec(name).short_name}"

    def ops_path(self, name: str) -> str:
        if name not in OPS_TABLES:
            raise UnknownTableError(f"unknown ops table {name!r} (known: {', '.join(OPS_TABLES)})")
        return f"{self.env.paths.tables}/ops/{name}"

    def raw_path(self, name: str) -> str:
        spec = self.spec(name)
        if spec.source is None:
            raise UnknownTableError(f"{name} is not a bronze table and reads no raw source")
        return f"{self.env.paths.raw}/{spec.source.path}"

    def checkpoint(self, job: str, name: str) -> str:
        return f"{self.env.paths.checkpoints}/{job}/{name}"

    def select(self, layer: str, names: Sequence[str] | None = None) -> list[TableSpec]:
        """The tables of ``layer`` in build order, restricted to ``names`` when given."""
        return [s for s in self.layer(layer) if not names or s.name in names]

    def streams(self, layer: str | None = None) -> list[TableSpec]:
        """The stream tables (of ``layer``): bronze tables with a ``kafka`` source and windowed
        gold tables (``stream:``), built by the ``stream`` job, not by ``pipeline``."""
        return sorted(
            (
                s
                for s in self.specs.values()
                if ((s.source is not None and s.source.is_stream) or s.window is not None) and layer in (None, s.layer)
            ),
            key=lambda s: s.name,
        )

    def fed_by(self, stream: str) -> list[TableSpec]:
        """The silver tables the stream table ``stream`` feeds (their ``streamed_from``)."""
        return sorted((s for s in self.specs.values() if s.streamed_from == stream), key=lambda s: s.name)

    def layer(self, layer: str) -> list[TableSpec]:
        """The tables of one layer that the ``pipeline`` job builds (stream tables aside: see
        :meth:`streams`), each after the same-layer tables it reads (topological)."""
        if layer not in LAYERS:
            raise UnknownTableError(f"unknown layer {layer!r} (known: {', '.join(LAYERS)})")
        streams = {s.name for s in self.streams()}
        todo = sorted((s for s in self.specs.values() if s.layer == layer and s.name not in streams), key=lambda s: s.name)
        done: list[TableSpec] = []
        names: set[str] = set()
        while todo:
            ready = [s for s in todo if all(u in names or self.specs[u].layer != layer for u in s.upstream)]
            if not ready:
                cycle = ", ".join(s.name for s in todo)
                raise UnknownTableError(f"upstream cycle among {cycle}")
            for s in ready:
                done.append(s)
                names.add(s.name)
                todo.remove(s)
        return done
