"""Getting a SparkSession: reuse the active one, or build one that respects spark-submit.

Precedence for the master: spark-submit's ``--master`` (any session launched by spark-submit),
then ``spark.master`` in the pipeline config, then ``spark.master`` in ``spark-defaults.conf``,
and only then ``local[*]``.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

REPO_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
MIN_JAVA = 17


def java_version() -> int | None:
    """The major version of the ``java`` Spark would launch, or None when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> None:
    version = java_version()
    if version is None:
        raise GapSparkError(
            "Java was not found: PySpark 4 needs Java 17 or newer. Install it "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    if version < MIN_JAVA:
        raise GapSparkError(
            f"Java {version} found, but PySpark 4 needs Java {MIN_JAVA} or newer; "
            "install a newer JDK or point JAVA_HOME at one."
        )


def conf_dir() -> str | None:
    """The Spark config directory: $SPARK_CONF_DIR, else the repository's conf/ when it has one."""
    env = os.environ.get("SPARK_CONF_DIR")
    if env:
        return env
    if (REPO_CONF_DIR / "spark-defaults.conf").exists():
        return str(REPO_CONF_DIR)
    return None


def read_spark_defaults(directory: str | None) -> dict[str, str]:
    """Key/value pairs of a spark-defaults.conf (whitespace-separated, # comments)."""
    if not directory:
        return {}
    path = Path(directory) / "spark-defaults.conf"
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[\s=]+", line, maxsplit=1)
        if len(parts) == 2:
            out[parts[0]] = parts[1].strip()
    return out


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def choose_master(config_master: str | None, defaults: dict[str, str]) -> str | None:
    """The master to set on the builder, or None when spark-submit already decided."""
    if launched_by_spark_submit():
        return None
    if config_master:
        return config_master
    if os.environ.get("MASTER"):
        return os.environ["MASTER"]
    return defaults.get("spark.master", "local[*]")


def console_progress() -> bool:
    """Whether to show Spark's console progress bar: only when stderr (where it draws) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def get_spark(config: "Config | None" = None, app_name: str | None = None) -> "SparkSession":
    """The active SparkSession, or a new one built from spark-defaults.conf and the pipeline config."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    spark_cfg = config.settings.spark if config is not None else None
    if not launched_by_spark_submit():
        check_java()
        directory = conf_dir()
        if directory and "SPARK_CONF_DIR" not in os.environ:
            # spark-submit (behind the gateway) reads spark-defaults.conf and log4j2.properties from here.
            os.environ["SPARK_CONF_DIR"] = directory
        defaults = read_spark_defaults(directory)
        # Python workers must run this interpreter (with pyarrow, numpy ...), not the first python3 on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    else:
        defaults = {}

    builder = SparkSession.builder.appName(app_name or (spark_cfg.app_name if spark_cfg else "gap-spark"))
    master = choose_master(spark_cfg.master if spark_cfg else None, defaults)
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):
            bind = spark_cfg.local_bind_address if spark_cfg else "127.0.0.1"
            builder = (builder.config("spark.driver.host", bind)
                       .config("spark.driver.bindAddress", bind))
            os.environ.setdefault("SPARK_LOCAL_IP", bind)
    # Spark's progress bar redraws one line with carriage returns: readable on a terminal, noise in a log
    # file or a CI log, where the stages' own progress lines say the same. spark.conf may still set it.
    builder = builder.config("spark.ui.showConsoleProgress", str(console_progress()).lower())
    for key, value in (spark_cfg.conf if spark_cfg else {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up failures are environment problems, not bugs
        if "Java gateway process exited" in str(exc) or "JAVA_HOME" in str(exc):
            raise GapSparkError(f"Spark could not start its JVM: {exc}. Check that Java 17+ is installed.") from None
        raise
    if spark_cfg and spark_cfg.log_level:
        set_log_level(spark, spark_cfg.log_level)
    return spark


def is_connect(spark: "SparkSession") -> bool:
    """True for a Spark Connect session, which has no SparkContext and no JVM in this process."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


@contextmanager
def job_description(spark: "SparkSession", text: str) -> Iterator[None]:
    """Label the Spark jobs started inside the block (the UI and the progress log show it).

    Spark Connect has no job descriptions; there the block runs unlabelled.
    """
    if is_connect(spark):
        yield
        return
    sc = spark.sparkContext
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it; the stub says str


def default_parallelism(spark: "SparkSession") -> int:
    """The cluster's task slots: ``sc.defaultParallelism``, or under Spark Connect the partitions of a
    ``range`` (which Spark sizes to the same default)."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    from pyspark.sql import functions as F

    return int(spark.range(0, 1 << 16).select(F.spark_partition_id()).distinct().count())


def set_log_level(spark: "SparkSession", level: str) -> None:
    """Spark's log level in this driver; Spark Connect's server keeps its own."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


def cancel_all_jobs(spark: "SparkSession") -> None:
    """Cancel everything this session is running (``interruptAll`` works for classic and Connect)."""
    spark.interruptAll()
