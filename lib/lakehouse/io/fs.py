"""File-system helpers that work for any Hadoop URI (local paths, hdfs://, s3a://).

They go through the session's Hadoop FileSystem, so they see the same storage Spark does.
"""

from __future__ import annotations

from pyspark.sql import SparkSession


def _fs_path(spark: SparkSession, uri: str):  # noqa: ANN202 - py4j objects
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(conf), path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_path(spark, uri)
    return bool(fs.exists(path))


def modified_at(spark: SparkSession, uri: str) -> float | None:
    """The file's modification time (seconds since the epoch), None if it does not exist."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return None
    return fs.getFileStatus(path).getModificationTime() / 1000.0


def list_dir(spark: SparkSession, uri: str) -> list[tuple[str, bool, int]]:
    """``(name, is_dir, size)`` of the entries of a folder; empty if it does not exist."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return []
    return [(s.getPath().getName(), bool(s.isDirectory()), int(s.getLen())) for s in fs.listStatus(path)]


def du(spark: SparkSession, uri: str) -> tuple[int, int]:
    """``(files, bytes)`` under a folder, recursively."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return 0, 0
    summary = fs.getContentSummary(path)
    return int(summary.getFileCount()), int(summary.getLength())


def read_text(spark: SparkSession, uri: str) -> str:
    fs, path = _fs_path(spark, uri)
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def first_line(spark: SparkSession, uri: str) -> str:
    """The first line of a text file (a CSV header), without reading the rest."""
    fs, path = _fs_path(spark, uri)
    jvm = spark.sparkContext._jvm
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(path), "UTF-8"))
    try:
        return str(reader.readLine() or "")
    finally:
        reader.close()


def write_text_atomic(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small file under a temporary name, then rename it into place."""
    fs, path = _fs_path(spark, uri)
    jvm = spark.sparkContext._jvm
    tmp = jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.tmp")
    out = fs.create(tmp, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    if fs.exists(path):
        fs.delete(path, False)
    if not fs.rename(tmp, path):
        raise OSError(f"could not rename {tmp} to {uri}")


def write_report(spark: SparkSession, uri: str, text: str) -> None:
    """Write a report file: a local path (or ``file:``) directly, creating its folder; any other
    Hadoop URI (``hdfs://``, ``s3a://``) through :func:`write_text_atomic`."""
    if "://" in uri and not uri.startswith("file:"):
        write_text_atomic(spark, uri, text)
    else:
        from pathlib import Path

        path = Path(uri.removeprefix("file:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def stream_id(spark: SparkSession, checkpoint: str) -> str:
    """The id Spark gave a streaming query's checkpoint (new when the checkpoint is reset).

    Keys derived from it (micro-batch keys, Delta txnAppId, commit tags) never collide with
    those of an earlier checkpoint at the same place, whose batch ids restarted at 0.
    """
    import json

    return str(json.loads(read_text(spark, f"{checkpoint}/metadata").splitlines()[0])["id"])
