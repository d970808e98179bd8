"""The one place a SparkSession is built (local mode, a cluster, or a notebook's own session).

Example (a notebook)::

    from lakehouse.session import get_spark
    spark = get_spark()                 # local env, Delta configured, or the active session
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import EnvConfig, load_env
from lakehouse.deps import resolved_jars

log = logging.getLogger(__name__)


def project_root() -> Path:
    """The project's folder (``jobs/``, ``conf/``, ``scripts/``): ``$LAKEHOUSE_HOME``, else the
    nearest folder above this package that holds ``jobs/`` and ``conf/``: ``lib/``'s parent, also
    when the package was loaded from spark-submit.sh's ``build/lakehouse-<hash>.zip``; else the
    working directory."""
    if os.environ.get("LAKEHOUSE_HOME"):
        return Path(os.environ["LAKEHOUSE_HOME"])
    for folder in Path(__file__).resolve().parents:
        if (folder / "jobs").is_dir() and (folder / "conf").is_dir():
            return folder
    return Path.cwd()


REPO_ROOT = project_root()


def default_conf_dir() -> str:
    """``$LAKEHOUSE_CONF_DIR``, else the repository's ``conf/`` next to ``lib/``."""
    return os.environ.get("LAKEHOUSE_CONF_DIR", str(REPO_ROOT / "conf"))


def log4j_options(env: EnvConfig) -> str:
    """JVM options that point Log4j at the project's configuration."""
    return f"-Dlog4j2.configurationFile=file:{env.conf_dir}/log4j2.properties"


def get_spark(
    env: EnvConfig | None = None,
    app_name: str = "lakehouse",
    master: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Return the active SparkSession, or build one from an environment's settings.

    A session that already exists (a notebook's, or one built earlier in this process) is
    returned as it is. Otherwise the builder gets the environment's master (unless ``master``
    overrides it), its Spark conf, the Delta jars resolved by ``make setup``, and the project's
    Log4j configuration. Under spark-submit the master and jars come from spark-submit.sh,
    which renders them from the same configuration.

    Args:
        env: environment config; default ``load_env(default_conf_dir(), "local")``.
        app_name: Spark application name.
        master: master URL overriding the environment's.
        extra_conf: more Spark settings (tests use this for tiny shuffles).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    env = env or load_env(default_conf_dir(), "local")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (pandas UDFs, mapInPandas) run the interpreter this process runs, with the
    # same packages, not whatever `python3` is first on the PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(master or env.spark.master)
    conf = dict(env.spark.conf)
    conf.update(extra_conf or {})
    jars = resolved_jars(env.spark.packages)
    if jars and "spark.jars" not in conf:
        conf["spark.jars"] = ",".join(jars)
    opts = log4j_options(env)
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        conf[key] = f"{conf[key]} {opts}" if key in conf else opts
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.debug("spark session %s on %s", spark.sparkContext.applicationId, spark.sparkContext.master)
    return spark
