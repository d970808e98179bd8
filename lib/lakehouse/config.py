"""Configuration: YAML files -> validated, frozen dataclasses.

Two kinds of file live under ``conf/``:

* ``conf/env/base.yaml`` overlaid by ``conf/env/<env>.yaml`` (and ``conf/local/<env>.yaml`` if
  present, which is git-ignored and meant for a developer's own settings), then by
  ``--conf key=value`` overrides: where the lake is, Spark settings, endpoints, secret names.
* ``conf/tables/<layer>/<name>.yaml``: one declaration per table (see :class:`TableSpec`).

Everything is checked before Spark starts: an unknown key, a missing key, a value of the wrong
type, an unknown upstream table, a transform that cannot be imported or a schema DDL that does not
parse raises :class:`~lakehouse.errors.ConfigError` naming the file and the key.

Example::

    env = load_env("conf", "local", overrides=["spark.sql.shuffle.partitions=4"])
    tables = load_tables("conf")
    tables["silver.transactions"].keys   # ('transaction_id',)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from lakehouse.ddl import DDLError, parse_ddl
from lakehouse.errors import ConfigError
from lakehouse.quality.expectations import Expectation, parse_expectations

LAYERS = ("bronze", "silver", "gold")
# Columns every bronze table adds to the raw fields its schema declares.
BRONZE_METADATA: tuple[tuple[str, str], ...] = (
    ("_rescued_data", "string"),
    ("_corrupt_record", "string"),
    ("_source_file", "string"),
    ("_arrival_date", "date"),
    ("_ingested_at", "timestamp"),
    ("_ingest_date", "date"),
    ("_run_id", "string"),
)
# Columns every silver table carries, added to its declared schema when it leaves them out: the
# record's hash (duplicates and tie-breaks; the runner computes it when the transform does not)
# and its lineage (taken from the bronze record).
SILVER_METADATA: tuple[tuple[str, str], ...] = (
    ("_record_hash", "bigint"),
    ("_source_file", "string"),
    ("_ingested_at", "timestamp"),
)
SQL_TABLE_REF = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
"""A ``{name}`` reference to an upstream table in a gold table's ``sql:`` (``{{`` is a literal brace)."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkSettings:
    """How to build the SparkSession."""

    master: str
    packages: tuple[str, ...]
    conf: Mapping[str, str]
    python_archive: str | None = None
    """A packed Python environment (scripts/pack-pyenv.sh) the executors run, shipped with
    ``--archives``; a path relative to the project, or a URI. None: executors use the driver's."""


@dataclass(frozen=True)
class Paths:
    """Where the lake's zones live (URIs)."""

    raw: str
    tables: str
    checkpoints: str
    truth: str


@dataclass(frozen=True)
class QualitySettings:
    """``quality:`` in the environment: ``expectations: false`` skips every table's rules and
    does not add constraints to new tables (only to measure what they cost: rows then go
    unchecked into silver)."""

    expectations: bool = True


@dataclass(frozen=True)
class MaintenanceSettings:
    """``maintenance:`` in the environment: ``retention_hours`` is how long VACUUM keeps the
    files a table no longer references, for tables that declare none (Delta's own default, 7
    days: readers of older versions and time travel within it keep working)."""

    retention_hours: int = 168


@dataclass(frozen=True)
class PipelineSettings:
    """``pipeline:`` in the environment: ``parallel_tables`` is how many tables of a layer are
    built at once (each after the same-layer tables it reads; :mod:`lakehouse.pipeline.parallel`).
    1 builds them one after another. ``gold_rebuild_below_mib``: a gold table whose upstream
    tables hold less than this many MiB together is rebuilt in full instead of incrementally
    (at that size an incremental build's many small queries cost more than the data work it
    saves); 0 builds incrementally at any size."""

    parallel_tables: int = 1
    gold_rebuild_below_mib: float = 64.0


@dataclass(frozen=True)
class MlSettings:
    """``ml:`` in the environment: where MLflow tracks runs and keeps the registry and artifacts.

    ``tracking_uri`` None: a SQLite database under the lake root (local lakes only; a lake on
    an object store or HDFS needs a tracking server, e.g. ``http://mlflow.internal:5000``).
    ``artifact_location`` None: ``<lake_root>/_mlflow/artifacts``.
    """

    tracking_uri: str | None = None
    artifact_location: str | None = None


@dataclass(frozen=True)
class EnvConfig:
    """One environment (local, cluster, ...) after overlay, interpolation and overrides."""

    name: str
    lake_root: str
    paths: Paths
    reporting_currency: str
    spark: SparkSettings
    endpoints: Mapping[str, Any]
    secrets: Mapping[str, str]
    quality: QualitySettings
    conf_dir: str
    files: tuple[str, ...]
    config_hash: str
    maintenance: MaintenanceSettings = MaintenanceSettings()
    ml: MlSettings = MlSettings()
    pipeline: PipelineSettings = PipelineSettings()

    def secret(self, name: str) -> str:
        """Return a secret's value from the environment variable that ``secrets`` names.

        Raises:
            ConfigError: the secret is not declared or its variable is not set.
        """
        if name not in self.secrets:
            raise ConfigError(self.files[-1], f"secrets.{name}", "no such secret is declared")
        var = self.secrets[name]
        value = os.environ.get(var)
        if value is None:
            file_var = os.environ.get(f"{var}_FILE")
            if file_var and Path(file_var).is_file():
                return Path(file_var).read_text().strip()
            raise ConfigError(self.files[-1], f"secrets.{name}", f"environment variable {var} is not set")
        return value


_ENV_KEYS = {
    "lake_root": str,
    "paths": dict,
    "reporting_currency": str,
    "spark": dict,
    "endpoints": dict,
    "secrets": dict,
    "quality": dict,
    "maintenance": dict,
    "ml": dict,
    "pipeline": dict,
}
_ENV_REQUIRED = ("lake_root", "reporting_currency", "spark")
_SPARK_KEYS = {"master": str, "packages": list, "conf": dict, "python_archive": str}
_PATH_KEYS = ("raw", "tables", "checkpoints", "truth")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise ConfigError(str(path), where, f"not valid YAML ({exc.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, "top level must be a mapping")
    return data


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def interpolate(value: Any, file: str, key: str, environ: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string inside ``value``.

    Raises:
        ConfigError: ``${VAR}`` without a default and ``VAR`` is not set.

    Example::

        interpolate("${HOME}/lake", "f.yaml", "lake_root", {"HOME": "/h"})  # '/h/lake'
    """
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in environ:
                return environ[var]
            if default is not None:
                return default
            raise ConfigError(file, key, f"environment variable {var} is not set and has no default")

        return _VAR.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: interpolate(v, file, f"{key}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, file, f"{key}[{i}]", environ) for i, v in enumerate(value)]
    return value


def _check_keys(
    data: Mapping[str, Any],
    allowed: Mapping[str, type | tuple[type, ...]],
    required: Sequence[str],
    file: str,
    prefix: str = "",
) -> None:
    for k in data:
        if k not in allowed:
            raise ConfigError(file, f"{prefix}{k}", f"unknown key (allowed: {', '.join(allowed)})")
    for k in required:
        if k not in data or data[k] is None:
            raise ConfigError(file, f"{prefix}{k}", "required key is missing")
    for k, typ in allowed.items():
        if k in data and data[k] is not None and not isinstance(data[k], typ):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            got = type(data[k]).__name__
            raise ConfigError(file, f"{prefix}{k}", f"expected {names}, got {got}")


def _absolute_uri(path: str) -> str:
    """Keep URIs with a scheme as they are; make plain local paths absolute."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def _apply_override(data: dict[str, Any], item: str, file: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(file, item, "an override must look like key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if key.startswith("spark.") and key not in ("spark.master", "spark.packages", "spark.python_archive"):
        spark = dict(data.get("spark") or {})
        spark["conf"] = {**(spark.get("conf") or {}), key: value}
        return {**data, "spark": spark}
    parts = key.split(".")
    if parts[0] not in _ENV_KEYS:
        raise ConfigError(file, key, f"unknown key (allowed: {', '.join(_ENV_KEYS)}, spark.*)")
    nested: Any = value
    for p in reversed(parts[1:]):
        nested = {p: nested}
    return _deep_merge(data, {parts[0]: nested})


def load_env(
    conf_dir: str | os.PathLike[str],
    env: str = "local",
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> EnvConfig:
    """Load ``base.yaml`` + ``<env>.yaml`` (+ git-ignored ``conf/local/<env>.yaml``) + overrides.

    Args:
        conf_dir: the ``conf`` folder.
        env: environment name; ``conf/env/<env>.yaml`` must exist.
        overrides: ``key=value`` strings; ``spark.*`` keys go to the Spark conf, others are dotted
            paths into the environment (``lake_root=/tmp/lake``, ``paths.raw=s3a://b/raw``).
        environ: variables for ``${VAR}`` interpolation (default: ``os.environ``).

    Returns:
        The frozen :class:`EnvConfig`.

    Raises:
        ConfigError: naming the file and key of the first problem.
    """
    environ = os.environ if environ is None else environ
    conf = Path(conf_dir)
    env_file = conf / "env" / f"{env}.yaml"
    if not env_file.is_file():
        known = sorted(p.stem for p in (conf / "env").glob("*.yaml") if p.stem != "base")
        raise ConfigError(str(env_file), None, f"unknown environment {env!r} (known: {', '.join(known)})")
    files = [conf / "env" / "base.yaml", env_file]
    local_overlay = conf / "local" / f"{env}.yaml"
    if local_overlay.is_file():
        files.append(local_overlay)
    data: dict[str, Any] = {}
    for f in files:
        raw = _read_yaml(f)
        _check_keys(raw, _ENV_KEYS, (), str(f))
        data = _deep_merge(data, interpolate(raw, str(f), "", environ) if raw else {})
    last = str(files[-1])
    for item in overrides:
        data = _apply_override(data, item, "--conf")
    _check_keys(data, _ENV_KEYS, _ENV_REQUIRED, last)
    spark = data["spark"]
    _check_keys(spark, _SPARK_KEYS, ("master",), last, "spark.")
    packages = spark.get("packages") or []
    for i, p in enumerate(packages):
        if not isinstance(p, str) or len(p.split(":")) != 3:
            raise ConfigError(last, f"spark.packages[{i}]", "expected group:artifact:version")
    spark_conf = {str(k): _scalar(v, last, f"spark.conf.{k}") for k, v in (spark.get("conf") or {}).items()}
    paths_in = data.get("paths") or {}
    for k in paths_in:
        if k not in _PATH_KEYS:
            raise ConfigError(last, f"paths.{k}", f"unknown key (allowed: {', '.join(_PATH_KEYS)})")
    root = _absolute_uri(str(data["lake_root"]))
    paths = Paths(
        raw=_absolute_uri(paths_in.get("raw", f"{root}/raw")),
        tables=_absolute_uri(paths_in.get("tables", f"{root}/tables")),
        checkpoints=_absolute_uri(paths_in.get("checkpoints", f"{root}/_checkpoints")),
        truth=_absolute_uri(paths_in.get("truth", f"{root}/_generator_truth")),
    )
    currency = str(data["reporting_currency"]).upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(last, "reporting_currency", f"{currency!r} is not an ISO 4217 code")
    secrets = data.get("secrets") or {}
    for k, v in secrets.items():
        if not isinstance(v, str):
            raise ConfigError(last, f"secrets.{k}", "expected the name of an environment variable")
    quality_in = data.get("quality") or {}
    for k in quality_in:
        if k != "expectations":
            raise ConfigError(last, f"quality.{k}", "unknown key (allowed: expectations)")
    flag = str(quality_in.get("expectations", True)).strip().lower()
    if flag not in ("true", "false"):
        raise ConfigError(last, "quality.expectations", f"{flag!r} is not true or false")
    maint_in = data.get("maintenance") or {}
    for k in maint_in:
        if k != "retention_hours":
            raise ConfigError(last, f"maintenance.{k}", "unknown key (allowed: retention_hours)")
    hours = str(maint_in.get("retention_hours", 168)).strip()
    if not hours.isdigit():
        raise ConfigError(last, "maintenance.retention_hours", f"{hours!r} is not a whole number of hours >= 0")
    pipe_in = data.get("pipeline") or {}
    for k in pipe_in:
        if k not in ("parallel_tables", "gold_rebuild_below_mib"):
            raise ConfigError(last, f"pipeline.{k}", "unknown key (allowed: parallel_tables, gold_rebuild_below_mib)")
    parallel = str(pipe_in.get("parallel_tables", 1)).strip()
    if not parallel.isdigit() or int(parallel) < 1:
        raise ConfigError(last, "pipeline.parallel_tables", f"{parallel!r} is not a whole number >= 1")
    rebuild_below = str(pipe_in.get("gold_rebuild_below_mib", 64)).strip()
    try:
        rebuild_mib = float(rebuild_below)
    except ValueError:
        rebuild_mib = -1.0
    if not rebuild_mib >= 0:
        raise ConfigError(last, "pipeline.gold_rebuild_below_mib", f"{rebuild_below!r} is not a number of MiB >= 0")
    ml_in = data.get("ml") or {}
    for k, v in ml_in.items():
        if k not in ("tracking_uri", "artifact_location"):
            raise ConfigError(last, f"ml.{k}", "unknown key (allowed: tracking_uri, artifact_location)")
        if v is not None and not isinstance(v, str):
            raise ConfigError(last, f"ml.{k}", f"expected a URI, got {type(v).__name__}")
    canonical = json.dumps({**data, "lake_root": root}, sort_keys=True, default=str)
    return EnvConfig(
        name=env,
        lake_root=root,
        paths=paths,
        reporting_currency=currency,
        spark=SparkSettings(
            master=str(spark["master"]),
            packages=tuple(packages),
            conf=MappingProxyType(spark_conf),
            python_archive=str(spark["python_archive"]) if spark.get("python_archive") else None,
        ),
        endpoints=MappingProxyType(dict(data.get("endpoints") or {})),
        secrets=MappingProxyType(dict(secrets)),
        quality=QualitySettings(expectations=flag == "true"),
        conf_dir=str(conf.resolve()),
        files=tuple(str(f) for f in files),
        config_hash=hashlib.sha256(canonical.encode()).hexdigest()[:12],
        maintenance=MaintenanceSettings(retention_hours=int(hours)),
        ml=MlSettings(tracking_uri=ml_in.get("tracking_uri") or None, artifact_location=ml_in.get("artifact_location") or None),
        pipeline=PipelineSettings(parallel_tables=int(parallel), gold_rebuild_below_mib=rebuild_mib),
    )


def _scalar(v: Any, file: str, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise ConfigError(file, key, f"expected a scalar, got {type(v).__name__}")


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """Where a bronze table's raw records land and how to read them."""

    format: str
    path: str
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    schema_drift: str = "rescue"
    required: bool = False
    """A run stops before writing anything while nothing has been delivered; otherwise (the
    default) a source declared before its first delivery is reported and skipped."""
    topic: str | None = None
    """``kafka``: the topic read (a stream table: the ``stream`` job builds it, not ``pipeline``)."""
    endpoint: str = "kafka"
    """``kafka``: the key of ``endpoints`` in the environment holding the bootstrap servers."""
    max_record_bytes: int = 262_144
    """``kafka``: a record's value longer than this is not parsed: bronze keeps it (``_kafka``) as a
    corrupt record naming its size, which silver quarantines (``well_formed``)."""

    @property
    def is_stream(self) -> bool:
        return self.format in STREAM_FORMATS


_DURATION = re.compile(r"([1-9][0-9]*)(s|m|h|d)")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _positive(value: Any, file: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(file, key, f"expected a whole number > 0, got {value!r}")
    return value


def parse_duration(text: str, file: str, key: str) -> int:
    """``'90s'``, ``'15m'``, ``'1h'``, ``'30d'`` -> seconds; a ConfigError naming file/key otherwise."""
    m = _DURATION.fullmatch(str(text).strip())
    if not m:
        raise ConfigError(file, key, f"{text!r} is not a duration such as 90s, 15m, 1h or 30d")
    return int(m.group(1)) * _DURATION_SECONDS[m.group(2)]


@dataclass(frozen=True)
class WindowSpec:
    """A gold table kept up to date by the ``stream`` job (the ``stream:`` block of its YAML):
    its transform aggregates its upstream silver table's new rows (inserts of the change data
    feed, one per key whichever path brought it) into event-time windows, and each micro-batch
    MERGEs the windows it changed on the table's keys.

    Attributes:
        time: the event-time column of the upstream table the windows are cut on.
        watermark_seconds: how late (behind the latest event time seen) a row may come and
            still count; a later one is left out of the windows, counted (``late_events`` in
            ``ops.quality_metrics``), and stays in bronze and silver.
    """

    time: str
    watermark_seconds: int

    @property
    def watermark(self) -> str:
        return f"{self.watermark_seconds} seconds"


@dataclass(frozen=True)
class FeatureSpec:
    """How a gold feature table is computed (the ``features:`` block of its YAML).

    Attributes:
        entity: the key the features describe (``customer_id``).
        time: the column holding the instant a row's values hold from (its event time).
        events: dotted name of ``fn(tables, since) -> DataFrame``: the entity's events (one row
            per feature row) from the upstream tables, from ``since`` on (None: all).
        touched: dotted name of ``fn(tables, changes) -> DataFrame``: (entity, time) of every
            event the upstream changes add or alter; the feature rows from there on are redone.
        windows: lookback windows as (label, seconds), e.g. ``(("1h", 3600), ("30d", 2592000))``.
        definitions: dotted names of ``fn(events, spec) -> list[Column]``, evaluated together
            over the entity's events in time order (one sort, one pass per entity).
    """

    entity: str
    time: str
    events: str
    touched: str
    windows: tuple[tuple[str, int], ...]
    definitions: tuple[str, ...]
    file: str = ""

    @property
    def lookback(self) -> int:
        """The longest window, in seconds: how much history a feature row depends on."""
        return max((s for _, s in self.windows), default=0)

    def seconds(self, label: str) -> int:
        for name, secs in self.windows:
            if name == label:
                return secs
        raise ConfigError(self.file, "features.windows", f"a definition uses window {label!r}; declare it")


_FEATURE_KEYS: dict[str, type | tuple[type, ...]] = {
    "entity": str,
    "time": str,
    "events": str,
    "touched": str,
    "windows": list,
    "definitions": list,
}


def parse_window(data: Mapping[str, Any], file: str, layer: str) -> WindowSpec:
    """The ``stream:`` block of a windowed gold table (see :class:`WindowSpec`)."""
    block = data["stream"]
    _check_keys(block, {"time": str, "watermark": str}, ("time", "watermark"), file, "stream.")
    if layer != "gold":
        raise ConfigError(file, "stream", f"only gold tables are windowed by the stream job (this one is {layer})")
    if data.get("mode") != "merge" or not data.get("keys"):
        raise ConfigError(file, "stream", "a windowed table is MERGEd on its keys per micro-batch: give mode merge and keys")
    if len(data.get("upstream") or []) != 1 or not str(data["upstream"][0]).startswith("silver."):
        raise ConfigError(file, "upstream", "a windowed table reads one silver table (its change data feed)")
    if not data.get("transform"):
        raise ConfigError(file, "transform", "a windowed table needs a transform: fn(events) -> windows")
    return WindowSpec(time=block["time"], watermark_seconds=parse_duration(block["watermark"], file, "stream.watermark"))


def parse_features(data: Mapping[str, Any], file: str, names: Sequence[str]) -> FeatureSpec:
    """Validate a ``features:`` block against the table's columns."""
    _check_keys(data, _FEATURE_KEYS, tuple(_FEATURE_KEYS), file, "features.")
    for k in ("entity", "time"):
        if data[k] not in names:
            raise ConfigError(file, f"features.{k}", f"column {data[k]!r} is not in the schema")
    windows = []
    for i, w in enumerate(data["windows"]):
        windows.append((str(w), parse_duration(str(w), file, f"features.windows[{i}]")))
    if not windows:
        raise ConfigError(file, "features.windows", "declare at least one lookback window")
    for k in ("events", "touched"):
        import_dotted(data[k], file, f"features.{k}")
    definitions = _str_list(data, "definitions", file)
    if not definitions:
        raise ConfigError(file, "features.definitions", "declare at least one feature definition")
    for i, d in enumerate(definitions):
        import_dotted(d, file, f"features.definitions[{i}]")
    return FeatureSpec(
        entity=data["entity"],
        time=data["time"],
        events=data["events"],
        touched=data["touched"],
        windows=tuple(windows),
        definitions=definitions,
        file=file,
    )


@dataclass(frozen=True)
class TableSpec:
    """One table, declared once in ``conf/tables/<layer>/<name>.yaml``.

    Attributes:
        name: ``<layer>.<name>``, the name every job and test uses.
        layer: bronze, silver or gold.
        schema: the table's columns as a Spark DDL string (for bronze: the raw fields).
        columns: ``schema`` parsed into ``(name, type)`` pairs.
        keys: business keys (MERGE keys); empty for append-only tables.
        partition_by: partition columns.
        zorder_by: columns the maintenance job clusters files by (OPTIMIZE ZORDER BY).
        retention_hours: how long VACUUM keeps files no longer in the table (time travel and
            readers of older versions); None: the environment's default.
        mode: how it is written: ``append`` (bronze), ``merge``, ``scd2``, ``replace_where``.
        replace_by: for ``replace_where``: the column whose values a run recomputes; the rows of
            those values are replaced in one commit (partition column or not).
        expected_rows_per_day, expected_row_bytes: the scale the layout is designed for (rows a
            day adds, compressed bytes per row); with them the loader checks the partitioning rule
            (:func:`partition_bytes`).
        version_column: for ``merge``/``scd2``: the column whose highest value wins.
        transform: dotted name of the pure function that builds the table.
        sql: for gold: a Spark SQL query over the upstream tables, named ``{short_name}``,
            instead of ``transform`` (the table is rebuilt in full when they change).
        select: for silver without ``transform``: SQL expressions over the bronze record, by
            column; a declared column not named here is ``try_cast(<same field> AS <type>)``.
        upstream: names of the tables it is built from.
        source: for bronze tables, the raw landing folder and format.
        expectations, pii, properties: quality rules, PII tags, Delta table properties.
        file: the YAML file it came from.
        features: for a feature table, how its features are computed (:class:`FeatureSpec`).
    """

    name: str
    layer: str
    description: str
    owner: str
    schema: str
    columns: tuple[tuple[str, str], ...]
    keys: tuple[str, ...]
    partition_by: tuple[str, ...]
    mode: str
    version_column: str | None
    transform: str | None
    upstream: tuple[str, ...]
    source: SourceSpec | None
    expectations: tuple[Expectation, ...]
    pii: Mapping[str, str]
    properties: Mapping[str, str]
    file: str
    zorder_by: tuple[str, ...] = ()
    retention_hours: int | None = None
    replace_by: str | None = None
    expected_rows_per_day: int | None = None
    expected_row_bytes: int | None = None
    features: FeatureSpec | None = None
    sql: str | None = None
    select: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    streamed_from: str | None = None
    window: WindowSpec | None = None
    """For gold: a windowed table that the ``stream`` job keeps up to date (``stream:``)."""
    """For silver: a stream table (bronze, ``kafka`` source) with the same fields as the first
    upstream table; the ``stream`` job upserts its records into this table per micro-batch, with
    the same transform, rules and quarantine as the batch path."""

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def transform_fn(self) -> Callable[..., Any]:
        """The function that builds the table: the one named by ``transform``, else the table's
        ``sql`` (gold) or typed columns (silver) as a function of the same shape."""
        if self.transform:
            return import_dotted(self.transform, self.file, "transform")
        from lakehouse.transforms import declared  # pyspark: not imported before Spark is needed

        if self.sql:
            return declared.sql_transform(self)
        if self.layer == "silver":
            return declared.typed_transform(self)
        raise ConfigError(self.file, "transform", "this table names no transform")


_TABLE_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "layer": str,
    "description": str,
    "owner": str,
    "schema": str,
    "keys": list,
    "partition_by": list,
    "mode": str,
    "version_column": str,
    "transform": str,
    "upstream": list,
    "source": dict,
    "expectations": list,
    "pii": dict,
    "properties": dict,
    "zorder_by": list,
    "retention_hours": int,
    "replace_by": str,
    "expected_scale": dict,
    "features": dict,
    "sql": str,
    "select": dict,
    "streamed_from": str,
    "stream": dict,
}
PARTITION_MIN_BYTES = 1_000_000_000
"""The layout rule: partition a table by a column only if one value's partition holds at least
this much at the table's expected scale; below it, partitions become small files and a planning
cost, and clustering (``zorder_by``) with data skipping serves the same filters."""

_TABLE_REQUIRED = ("name", "layer", "description", "owner", "schema", "mode")
_MODES = {
    "bronze": ("append",),
    "silver": ("merge", "scd2"),
    "gold": ("replace_where", "merge"),
}
_SOURCE_KEYS = {
    "format": str,
    "path": str,
    "options": dict,
    "schema_drift": str,
    "required": bool,
    "topic": str,
    "endpoint": str,
    "max_record_bytes": int,
}
DRIFT_POLICIES = ("evolve", "rescue", "fail")
_FORMATS = ("json", "csv", "kafka")
STREAM_FORMATS = ("kafka",)


def import_dotted(dotted: str, file: str, key: str) -> Callable[..., Any]:
    """Import ``package.module.function``; a ConfigError naming ``file``/``key`` if impossible."""
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ConfigError(file, key, f"{dotted!r} is not a dotted name module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(file, key, f"cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(file, key, f"module {module_name!r} has no function {attr!r}")
    return fn


def _str_list(data: Mapping[str, Any], key: str, file: str) -> tuple[str, ...]:
    values = data.get(key) or []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ConfigError(file, f"{key}[{i}]", f"expected a string, got {type(v).__name__}")
    return tuple(values)


def parse_table(data: Mapping[str, Any], file: str) -> TableSpec:
    """Validate one table declaration (without cross-table checks)."""
    _check_keys(data, _TABLE_KEYS, _TABLE_REQUIRED, file)
    layer = data["layer"]
    if layer not in LAYERS:
        raise ConfigError(file, "layer", f"{layer!r} is not one of {', '.join(LAYERS)}")
    short = data["name"]
    if not re.fullmatch(r"[a-z][a-z0-9_]*", short):
        raise ConfigError(file, "name", f"{short!r}: use lower_snake_case")
    mode = data["mode"]
    if mode not in _MODES[layer]:
        raise ConfigError(file, "mode", f"{mode!r} is not valid for {layer} (use {', '.join(_MODES[layer])})")
    try:
        columns = tuple(parse_ddl(data["schema"]))
    except DDLError as exc:
        raise ConfigError(file, "schema", f"unparseable DDL: {exc}") from None
    names = [c for c, _ in columns]
    if layer == "bronze":
        names += [c for c, _ in BRONZE_METADATA]
    schema_ddl = str(data["schema"]).strip()
    if layer == "silver":  # the metadata every silver table carries, unless declared already
        missing = [(c, t) for c, t in SILVER_METADATA if c not in names]
        columns += tuple(missing)
        names += [c for c, _ in missing]
        schema_ddl = ", ".join([schema_ddl.rstrip(", "), *[f"{c} {t}" for c, t in missing]])
    keys = _str_list(data, "keys", file)
    partition_by = _str_list(data, "partition_by", file)
    zorder_by = _str_list(data, "zorder_by", file)
    for key_name, cols in (("keys", keys), ("partition_by", partition_by), ("zorder_by", zorder_by)):
        for c in cols:
            if c not in names:
                raise ConfigError(file, key_name, f"column {c!r} is not in the schema")
    for c in zorder_by:
        if c in partition_by:
            raise ConfigError(file, "zorder_by", f"column {c!r} is a partition column (each file holds one value of it already)")
    retention_hours = data.get("retention_hours")
    if retention_hours is not None and (isinstance(retention_hours, bool) or not isinstance(retention_hours, int) or retention_hours < 0):
        raise ConfigError(file, "retention_hours", f"expected hours as a whole number >= 0, got {retention_hours!r}")
    version_column = data.get("version_column")
    if version_column and version_column not in names:
        raise ConfigError(file, "version_column", f"column {version_column!r} is not in the schema")
    if mode in ("merge", "scd2") and not keys:
        raise ConfigError(file, "keys", f"mode {mode} needs business keys")
    if mode == "scd2" and not version_column:
        raise ConfigError(file, "version_column", "mode scd2 needs a version column (the instant each version starts)")
    replace_by = data.get("replace_by")
    if mode == "replace_where" and not replace_by:
        raise ConfigError(file, "replace_by", "mode replace_where needs the column whose values a run replaces")
    if replace_by and mode != "replace_where":
        raise ConfigError(file, "replace_by", f"only for mode replace_where (this table's mode is {mode})")
    if replace_by and replace_by not in names:
        raise ConfigError(file, "replace_by", f"column {replace_by!r} is not in the schema")
    scale = data.get("expected_scale")
    rows_per_day = row_bytes = None
    if scale is not None:
        for k in scale:
            if k not in ("rows_per_day", "row_bytes"):
                raise ConfigError(file, f"expected_scale.{k}", "unknown key (allowed: rows_per_day, row_bytes)")
        for k in ("rows_per_day", "row_bytes"):
            v = scale.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(file, f"expected_scale.{k}", f"expected a whole number > 0, got {v!r}")
        rows_per_day, row_bytes = scale["rows_per_day"], scale["row_bytes"]
        types = dict(columns) | dict(BRONZE_METADATA if layer == "bronze" else ())
        for c in partition_by:
            if types.get(c) == "date":
                size = rows_per_day * row_bytes
                if size < PARTITION_MIN_BYTES:
                    raise ConfigError(
                        file,
                        "partition_by",
                        f"a day's partition of {c} would hold ~{size / 1e6:,.0f} MB at the expected scale "
                        f"({rows_per_day:,} rows x {row_bytes} B), below the ~{PARTITION_MIN_BYTES / 1e9:g} GB a partition "
                        "should hold: drop partition_by and cluster the files with zorder_by instead",
                    )
    source = None
    if layer == "bronze":
        if "source" not in data:
            raise ConfigError(file, "source", "required key is missing for a bronze table")
        src = data["source"]
        stream = src.get("format") in STREAM_FORMATS
        _check_keys(src, _SOURCE_KEYS, ("format", "topic") if stream else ("format", "path"), file, "source.")
        if src["format"] not in _FORMATS:
            raise ConfigError(file, "source.format", f"{src['format']!r} is not one of {', '.join(_FORMATS)}")
        for k in ("topic", "endpoint", "max_record_bytes") if not stream else ("path", "required"):
            if k in src:
                raise ConfigError(file, f"source.{k}", f"not a key of a {src['format']} source")
        drift = src.get("schema_drift", "rescue")
        if drift not in DRIFT_POLICIES:
            raise ConfigError(file, "source.schema_drift", f"{drift!r} is not one of {', '.join(DRIFT_POLICIES)}")
        if drift == "evolve" and stream:
            raise ConfigError(file, "source.schema_drift", "evolve is for file sources (json); a kafka source rescues or fails")
        if drift == "evolve" and src["format"] != "json":
            raise ConfigError(file, "source.schema_drift", "evolve needs a self-describing format (json); use rescue or fail")
        source = SourceSpec(
            required=bool(src.get("required", False)),
            schema_drift=drift,
            format=src["format"],
            path=src.get("path", ""),
            topic=src.get("topic"),
            endpoint=src.get("endpoint", "kafka"),
            max_record_bytes=_positive(src.get("max_record_bytes", 262_144), file, "source.max_record_bytes"),
            options=MappingProxyType({k: _scalar(v, file, f"source.options.{k}") for k, v in (src.get("options") or {}).items()}),
        )
    elif "source" in data:
        raise ConfigError(file, "source", "only bronze tables read a raw source; use upstream")
    else:
        if not data.get("upstream"):
            raise ConfigError(file, "upstream", f"required key is missing for a {layer} table")
        _check_declared_transform(data, layer, file, names)
    if data.get("transform"):
        import_dotted(data["transform"], file, "transform")
    expectations = data.get("expectations") or []
    if not isinstance(expectations, list):
        raise ConfigError(file, "expectations", "expected a list of rules")
    rules = parse_expectations(expectations, file, layer)
    pii = data.get("pii") or {}
    for col in pii:
        if col not in names:
            raise ConfigError(file, f"pii.{col}", "column is not in the schema")
    window = None
    if "stream" in data:
        window = parse_window(data, file, layer)
    features = None
    if "features" in data:
        if layer != "gold":
            raise ConfigError(file, "features", f"only gold tables are feature tables (this one is {layer})")
        features = parse_features(data["features"], file, names)
    return TableSpec(
        name=f"{layer}.{short}",
        layer=layer,
        description=str(data["description"]).strip(),
        owner=data["owner"],
        schema=schema_ddl,
        columns=columns,
        keys=keys,
        partition_by=partition_by,
        mode=mode,
        version_column=version_column,
        transform=data.get("transform"),
        upstream=_str_list(data, "upstream", file),
        source=source,
        expectations=rules,
        pii=MappingProxyType({str(k): str(v) for k, v in pii.items()}),
        properties=MappingProxyType({str(k): _scalar(v, file, f"properties.{k}") for k, v in (data.get("properties") or {}).items()}),
        file=file,
        zorder_by=zorder_by,
        retention_hours=retention_hours,
        replace_by=replace_by,
        expected_rows_per_day=rows_per_day,
        expected_row_bytes=row_bytes,
        features=features,
        sql=data.get("sql"),
        select=MappingProxyType({str(k): str(v) for k, v in (data.get("select") or {}).items()}),
        streamed_from=data.get("streamed_from"),
        window=window,
    )


def _check_declared_transform(data: Mapping[str, Any], layer: str, file: str, names: Sequence[str]) -> None:
    """A silver or gold table says how it is built: ``transform`` (a Python function), ``sql``
    (gold) or typed columns with optional ``select`` expressions (silver), one way only."""
    given = [k for k in ("transform", "sql", "select") if data.get(k)]
    if len(given) > 1:
        raise ConfigError(file, given[1], f"give one of {' or '.join(given)}, not both")
    if data.get("sql") and layer != "gold":
        raise ConfigError(file, "sql", "only gold tables are declared by a query (a silver table: select expressions, or a transform)")
    if data.get("select") and layer != "silver":
        raise ConfigError(file, "select", "only silver tables type bronze records by select expressions (a gold table: sql)")
    if layer == "gold" and not given:
        raise ConfigError(file, "transform", "a gold table needs a transform (a Python function) or sql (a query over its upstream tables)")
    for col, expr in (data.get("select") or {}).items():
        if col not in names:
            raise ConfigError(file, f"select.{col}", "column is not in the schema")
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigError(file, f"select.{col}", "expected a SQL expression")
    if data.get("sql"):
        upstream = {u.split(".", 1)[-1] for u in data.get("upstream") or []}
        refs = SQL_TABLE_REF.findall(data["sql"])
        if not refs:
            raise ConfigError(file, "sql", f"the query names no upstream table (write {{name}} for one of: {', '.join(sorted(upstream))})")
        for ref in refs:
            if ref not in upstream:
                raise ConfigError(file, "sql", f"{{{ref}}} is not an upstream table (upstream: {', '.join(sorted(upstream))})")


def load_tables(conf_dir: str | os.PathLike[str]) -> Mapping[str, TableSpec]:
    """Load and cross-check every ``conf/tables/<layer>/<name>.yaml``.

    Returns:
        A read-only mapping ``"<layer>.<name>" -> TableSpec``.

    Raises:
        ConfigError: a bad declaration, a file in the wrong folder, a duplicate name, or an
            upstream table that no file declares.
    """
    root = Path(conf_dir) / "tables"
    if not root.is_dir():
        raise ConfigError(str(root), None, "folder not found")
    specs: dict[str, TableSpec] = {}
    for f in sorted(root.glob("*/*.yaml")):
        spec = parse_table(_read_yaml(f), str(f))
        if f.parent.name != spec.layer or f.stem != spec.short_name:
            raise ConfigError(str(f), "name", f"declares {spec.name}; the file must be tables/{spec.layer}/{spec.short_name}.yaml")
        specs[spec.name] = spec
    for spec in specs.values():
        for i, up in enumerate(spec.upstream):
            if up not in specs:
                raise ConfigError(spec.file, f"upstream[{i}]", f"unknown table {up!r} (known: {', '.join(sorted(specs))})")
        if spec.layer == "silver" and not spec.transform:
            _check_typed_columns(spec, specs[spec.upstream[0]])
        if spec.streamed_from is not None:
            _check_streamed_from(spec, specs)
        if spec.window is not None and spec.window.time not in specs[spec.upstream[0]].column_names:
            raise ConfigError(spec.file, "stream.time", f"{spec.window.time!r} is not a column of {spec.upstream[0]}")
        for e in spec.expectations:
            ref = e.args.get("table") if e.check == "foreign_key" else None
            if ref and ref not in spec.upstream:
                raise ConfigError(
                    spec.file, f"expectations.{e.name}.args.table", f"{ref!r} must be one of the upstream tables (it is built first)"
                )
    return MappingProxyType(specs)


def _check_streamed_from(spec: TableSpec, specs: Mapping[str, TableSpec]) -> None:
    """``streamed_from`` names a stream table that carries the same fields as the silver table's
    first upstream table, so one transform types both."""
    feed = specs.get(spec.streamed_from or "")
    if spec.layer != "silver":
        raise ConfigError(spec.file, "streamed_from", f"only silver tables are fed by a stream (this one is {spec.layer})")
    if feed is None or feed.source is None or not feed.source.is_stream:
        known = sorted(s.name for s in specs.values() if s.source is not None and s.source.is_stream)
        raise ConfigError(
            spec.file, "streamed_from", f"{spec.streamed_from!r} is not a stream table (stream tables: {', '.join(known) or 'none'})"
        )
    batch = specs[spec.upstream[0]]
    if feed.columns != batch.columns:
        raise ConfigError(
            spec.file,
            "streamed_from",
            f"{feed.name} does not declare the same fields as {batch.name} (one transform types both): "
            f"{', '.join(f'{c} {t}' for c, t in sorted(set(feed.columns) ^ set(batch.columns)))}",
        )


def _check_typed_columns(spec: TableSpec, bronze: TableSpec) -> None:
    """Each column of a silver table typed from its bronze record (no transform) has a ``select``
    expression or a field of the same name in the bronze table."""
    fields = set(bronze.column_names) | {c for c, _ in BRONZE_METADATA}
    for c in spec.column_names:
        if c in spec.select or c in (m for m, _ in SILVER_METADATA) or c in fields:
            continue
        raise ConfigError(
            spec.file,
            "schema",
            f"column {c!r} is neither a field of {bronze.name} ({', '.join(bronze.column_names)}) nor given in select: "
            f"add select: {{{c}: <SQL expression>}}",
        )
