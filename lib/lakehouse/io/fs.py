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


def _local(uri: str) -> str | None:
    """The local path of a ``file:`` URI or a bare path; None for any other scheme."""
    if uri.startswith("file:"):
        return uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:")
    return None if "://" in uri else uri


def create_exclusive(spark: SparkSession, uri: str, text: str) -> bool:
    """Create a small file holding ``text`` unless a file is already there; True if this call
    created it. Atomic: of two callers, one wins, and a reader never sees it half-written on a
    local disk (written aside, then hard-linked into place: ``link`` fails if the name exists).
    Elsewhere it is Hadoop's ``create(overwrite=false)``, atomic on HDFS; on S3A only with
    conditional writes (``fs.s3a.create.conditional.enabled``, Hadoop 3.4.2 and later)."""
    import os
    import uuid

    local = _local(uri)
    if local is not None:
        os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
        tmp = f"{local}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, local)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    from py4j.protocol import Py4JJavaError

    fs, path = _fs_path(spark, uri)
    try:
        out = fs.create(path, False)
    except Py4JJavaError as exc:
        if exc.java_exception.getClass().getName() == "org.apache.hadoop.fs.FileAlreadyExistsException":
            return False
        raise
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    return True


def touch(spark: SparkSession, uri: str) -> bool:
    """Set the file's modification time to now; False if it does not exist."""
    import os
    import time

    local = _local(uri)
    if local is not None:
        try:
            os.utime(local)
            return True
        except FileNotFoundError:
            return False
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return False
    fs.setTimes(path, int(time.time() * 1000), -1)
    return True


def delete(spark: SparkSession, uri: str) -> bool:
    """Delete a file; False if it was not there."""
    import os

    local = _local(uri)
    if local is not None:
        try:
            os.unlink(local)
            return True
        except FileNotFoundError:
            return False
    fs, path = _fs_path(spark, uri)
    return bool(fs.delete(path, False))


def read_small(spark: SparkSession, uri: str) -> tuple[str, float] | None:
    """A small file's text and modification time (seconds since the epoch); None if absent."""
    import os

    local = _local(uri)
    if local is not None:
        try:
            with open(local, encoding="utf-8") as f:
                text = f.read()
            return text, os.stat(local).st_mtime
        except FileNotFoundError:
            return None
    when = modified_at(spark, uri)
    if when is None:
        return None
    try:
        return read_text(spark, uri), when
    except Exception:  # noqa: BLE001 - deleted between the two calls
        return None if not exists(spark, uri) else ("", when)


def list_names(spark: SparkSession, uri: str) -> list[str]:
    """The names of the files in a folder (none if it does not exist)."""
    import os

    local = _local(uri)
    if local is not None:
        return sorted(os.listdir(local)) if os.path.isdir(local) else []
    return sorted(name for name, is_dir, _ in list_dir(spark, uri) if not is_dir)


def count_files(spark: SparkSession, uri: str, suffix: str, exclude: tuple[str, ...] = ()) -> int:
    """Files under a folder, recursively, whose name ends with ``suffix`` and whose path holds
    none of ``exclude``."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return 0
    it = fs.listFiles(path, True)
    n = 0
    while it.hasNext():
        p = it.next().getPath().toString()
        if p.endswith(suffix) and not any(x in p for x in exclude):
            n += 1
    return n
