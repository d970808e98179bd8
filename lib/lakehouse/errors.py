"""The project's exception types. Each carries the context a user needs to act on it."""

from __future__ import annotations


class LakehouseError(Exception):
    """Base class: jobs turn any of these into a one-line message and a non-zero exit."""


class ConfigError(LakehouseError):
    """A configuration file is missing, unparseable, or holds an unknown/missing/bad key."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class UnknownTableError(LakehouseError):
    """A table name that no file under conf/tables declares."""


class SourceError(LakehouseError):
    """A raw source is missing or unreadable (names the folder)."""


class SchemaDriftError(LakehouseError):
    """A source's records have fields its declared schema lacks, and its policy is fail."""


class DependencyError(LakehouseError):
    """A JVM package cannot be resolved (Maven Central unreachable and not in the Ivy cache)."""


class PipelineError(LakehouseError):
    """A pipeline stage failed; names the table and the stage."""


class ReconciliationError(PipelineError):
    """A run's accounting does not add up (bronze != silver + quarantined + duplicates): names
    the table and by how many rows; the run is marked failed."""


class QualityError(LakehouseError):
    """A ``fail`` expectation was broken: nothing of the batch was committed. Names the table,
    the rule, how many rows broke it and sample keys."""

    def __init__(self, table: str, failures: list[tuple[str, int, list[str]]], results: list | None = None) -> None:
        self.table = table
        self.failures = failures
        self.results = results or []  # every rule's result for the batch (for the metrics table)
        parts = [f"rule {rule!r} broken by {n} row(s), e.g. {', '.join(samples) or '(no key)'}" for rule, n, samples in failures]
        super().__init__(f"{table}: {'; '.join(parts)}; nothing was committed")
