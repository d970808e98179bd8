"""What every job shares: arguments, config loading, the run id, and one-line errors.

Also a small command line used by ``spark-submit.sh`` and ``make setup``::

    python -m lakehouse.cli submit-args --env local     # spark-submit options from conf/
    python -m lakehouse.cli warm --env local            # resolve the Maven packages once
    python -m lakehouse.cli check-conf --env cluster    # validate every config file
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from lakehouse.config import EnvConfig, load_env, load_tables
from lakehouse.deps import resolved_jars, warm
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.logs import configure
from lakehouse.runlog import new_run_id
from lakehouse.session import default_conf_dir, log4j_options
from lakehouse.tables import Lake

log = logging.getLogger("lakehouse.job")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--env", default="local", help="environment: conf/env/<env>.yaml (default local)")
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="override a setting (spark.* or a dotted config key); repeatable"
    )
    p.add_argument("--master", help="Spark master URL (overrides the environment's)")
    p.add_argument("--conf-dir", default=default_conf_dir(), help="the conf/ folder")
    p.add_argument(
        "--run-date", type=_date, default=datetime.now(timezone.utc).date(), help="the logical date of this run (default: today, UTC)"
    )
    return p


def add_wait(p: argparse.ArgumentParser, default: float) -> None:
    """``--wait SECONDS``: how long a job that writes tables waits for another run writing the
    same tables (see :mod:`lakehouse.leases`); 0 stops at once, naming that run."""
    p.add_argument(
        "--wait",
        type=float,
        default=default,
        metavar="SECONDS",
        help=f"wait this long for another run writing the same tables (default {default:.0f}; 0: stop at once, naming it)",
    )


@dataclass(frozen=True)
class JobContext:
    """Everything a job needs besides the SparkSession; built before Spark starts."""

    args: argparse.Namespace
    env: EnvConfig
    lake: Lake
    run_id: str
    job: str


def context(job: str, args: argparse.Namespace) -> JobContext:
    """Load and validate all config (raises ConfigError before any JVM starts)."""
    env = load_env(args.conf_dir, args.env, args.conf)
    lake = Lake(env, load_tables(args.conf_dir))
    run_id = new_run_id()
    configure(run_id)
    log.info("job %s, env %s, lake %s, config %s", job, env.name, env.lake_root, env.config_hash)
    return JobContext(args=args, env=env, lake=lake, run_id=run_id, job=job)


def one_line(exc: BaseException) -> str:
    """A one-line cause: the project's message, or the first line of a Spark/JVM error."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if isinstance(exc, LakehouseError):
        return first
    return f"{type(exc).__name__}: {first[:500]}"


def run_job(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a job's ``main``; exit 0, or print one line to stderr and exit non-zero."""
    try:
        code = main(argv) or 0
    except LakehouseError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - the job boundary: one line, non-zero exit
        logging.getLogger("lakehouse.job").debug("failure", exc_info=True)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        code = 1
    sys.exit(code)


def submit_args(env: EnvConfig, master: str | None) -> list[str]:
    """spark-submit options rendered from an environment (master, jars, driver JVM settings, the
    executors' packed Python environment).

    Raises:
        ConfigError: ``spark.python_archive`` names a local file that does not exist.
    """
    args = ["--master", master or env.spark.master, "--name", f"lakehouse-{env.name}"]
    jars = resolved_jars(env.spark.packages)
    if jars:
        args += ["--jars", ",".join(jars)]
    if env.spark.python_archive:
        archive = env.spark.python_archive
        if "://" not in archive:
            local = Path(archive) if Path(archive).is_absolute() else Path(env.conf_dir).parent / archive
            if not local.is_file():
                raise ConfigError(env.files[-1], "spark.python_archive", f"{local} does not exist: build it with `make pyenv`")
            archive = str(local)
        # executors unpack it as ./environment and run its Python; the driver keeps its own
        args += ["--archives", f"{archive}#environment", "--conf", "spark.pyspark.python=./environment/bin/python"]
        args += ["--conf", f"spark.pyspark.driver.python={sys.executable}"]
    conf = dict(env.spark.conf)
    if "spark.driver.memory" in conf:
        args += ["--driver-memory", conf["spark.driver.memory"]]
    opts = log4j_options(env)
    driver, executor = (" ".join(filter(None, (conf.get(f"spark.{r}.extraJavaOptions"), opts))) for r in ("driver", "executor"))
    args += ["--driver-java-options", driver, "--conf", f"spark.executor.extraJavaOptions={executor}"]
    return args


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lakehouse.cli")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("submit-args", "warm", "check-conf"):
        s = sub.add_parser(name)
        s.add_argument("--env", default="local")
        s.add_argument("--conf-dir", default=default_conf_dir())
        s.add_argument("--conf", action="append", default=[])
        s.add_argument("--master")
    a = p.parse_args(argv)
    env = load_env(a.conf_dir, a.env, a.conf)
    if a.cmd == "submit-args":
        print("\n".join(submit_args(env, a.master)))
    elif a.cmd == "warm":
        jars = warm(env.spark.packages)
        print(f"resolved {len(env.spark.packages)} package(s) into {len(jars)} jar(s)")
    else:
        tables = load_tables(a.conf_dir)
        print(f"{a.env}: ok ({len(tables)} tables, config {env.config_hash})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    run_job(_main)
