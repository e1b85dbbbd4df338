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
from typing import TYPE_CHECKING, Any

from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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
    """The active SparkSession, or a new one built from spark-defaults.conf and the pipeline config.

    With ``spark.remote`` (``--remote sc://HOST:PORT``) the session is a Spark Connect client of that
    server; an active classic session is then not reused.
    """
    from pyspark.sql import SparkSession

    spark_cfg = config.settings.spark if config is not None else None
    remote = spark_cfg.remote if spark_cfg else None
    active = SparkSession.getActiveSession()
    if active is not None and (not remote or is_connect(active)):
        return active
    if remote:
        return connect_session(remote, app_name or (spark_cfg.app_name if spark_cfg else "gap-spark"),
                               spark_cfg.conf if spark_cfg else {})
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


# --------------------------------------------------------------------------------------------------
# Spark Connect
# --------------------------------------------------------------------------------------------------

# sc://HOST[:PORT][/;key=value...]: the Spark Connect URL (host name, IPv4 or [IPv6]; 15002 by default).
CONNECT_URL = re.compile(r"^sc://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d{1,5}))?"
                         r"(?:/(?:;[A-Za-z0-9_.-]+=[^;\s]*)*)?$")
CONNECT_PORT = 15002
CONNECT_MODULES = ("grpc", "grpc_status", "google.rpc", "zstandard")
CONNECT_INSTALL = "pip install 'gap-spark[connect]' (grpcio, grpcio-status, googleapis-common-protos, zstandard)"


def check_remote(url: str) -> tuple[str, int]:
    """``(host, port)`` of a Spark Connect URL; a :class:`GapSparkError` of one line when its shape is
    wrong or the client packages are missing."""
    import importlib.util

    match = CONNECT_URL.match(url or "")
    port = int(match.group("port") or CONNECT_PORT) if match else 0
    if match is None or not 0 < port < 65536:
        raise GapSparkError(f"spark.remote / --remote must look like sc://HOST:PORT (e.g. sc://localhost:15002), "
                            f"got {url!r}")
    missing = [m for m in CONNECT_MODULES if not _importable(m, importlib.util.find_spec)]
    if missing:
        raise GapSparkError(f"Spark Connect needs {', '.join(missing)}: {CONNECT_INSTALL}")
    return match.group("host").strip("[]"), port


def _importable(module: str, find_spec: Any) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def connect_session(url: str, app_name: str, conf: "dict[str, str]") -> "SparkSession":
    """A Spark Connect session on ``url``. Only ``spark.sql.*`` settings can be set from a client; the
    server's own config decides master, memory and logging (the rest of ``spark.conf`` is skipped)."""
    import socket

    from pyspark.sql import SparkSession

    host, port = check_remote(url)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise GapSparkError(f"no Spark Connect server answers at {url} ({exc.strerror or exc}); start one "
                            "(sbin/start-connect-server.sh) or fix --remote / spark.remote") from None
    skipped = sorted(k for k in conf if not k.startswith("spark.sql."))
    if skipped:
        log.warning("Spark Connect: spark.conf %s left to the server (a client can set spark.sql.* only)",
                    ", ".join(skipped))
    builder = SparkSession.builder.remote(url).appName(app_name)
    for key, value in conf.items():
        if key.startswith("spark.sql."):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    log.info("Spark Connect: session on %s (server Spark %s)", url, spark.version)
    return spark


def is_connect(spark: "SparkSession") -> bool:
    """True for a Spark Connect session, which has no SparkContext and no JVM in this process."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process (one line for each
    thing Spark Connect cannot do, however many fits or stages run into it)."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


@contextmanager
def job_description(spark: "SparkSession", text: str) -> Iterator[None]:
    """Label the Spark jobs started inside the block (the UI and the progress log show it).

    Spark Connect has no job descriptions (the server writes its own); there the block's jobs carry
    ``text`` as a job tag instead.
    """
    if is_connect(spark):
        tag = text.replace(",", ";")  # a tag may not hold commas
        spark.addTag(tag)
        try:
            yield
        finally:
            spark.removeTag(tag)
        return
    sc = spark.sparkContext
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it; the stub says str


_parallelism: dict[str, int] = {}


def default_parallelism(spark: "SparkSession") -> int:
    """The cluster's task slots: ``sc.defaultParallelism``, or under Spark Connect the partitions of a
    ``range`` (which Spark sizes to the same default; measured once per session)."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    from pyspark.sql import functions as F

    key = str(getattr(spark, "session_id", id(spark)))
    if key not in _parallelism:
        _parallelism[key] = int(spark.range(0, 1 << 16).select(F.spark_partition_id()).distinct().count())
    return _parallelism[key]


def num_partitions(frame: "DataFrame") -> int:
    """A frame's partitions: ``rdd.getNumPartitions()``, or under Spark Connect (no RDDs) one more than
    the highest partition id holding a row (a scan of no columns)."""
    if not is_connect(frame.sparkSession):
        return int(frame.rdd.getNumPartitions())
    from pyspark.sql import functions as F

    top = frame.select(F.spark_partition_id().alias("p")).agg(F.max("p")).first()
    return int(top[0]) + 1 if top is not None and top[0] is not None else 0


def ensure_checkpoint_dir(spark: "SparkSession", directory: str) -> bool:
    """Set Spark's checkpoint directory when none is set; True when one is set afterwards.

    A Spark Connect client cannot set it (the server's ``spark.checkpoint.dir`` decides); MLlib then
    skips the checkpoints it would write, with one warning here.
    """
    if not is_connect(spark):
        sc = spark.sparkContext
        if not sc.getCheckpointDir():
            sc.setCheckpointDir(directory)
        return True
    if spark.conf.get("spark.checkpoint.dir", None):
        return True
    warn_once("checkpoint", "Spark Connect: the server has no spark.checkpoint.dir, so MLlib writes no checkpoints "
              "(start the server with --conf spark.checkpoint.dir=... for long random-forest fits)")
    return False


def set_log_level(spark: "SparkSession", level: str) -> None:
    """Spark's log level in this driver; Spark Connect's server keeps its own."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


def cancel_all_jobs(spark: "SparkSession") -> None:
    """Cancel everything this session is running (``interruptAll`` works for classic and Connect)."""
    spark.interruptAll()
