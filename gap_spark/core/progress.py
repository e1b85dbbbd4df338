"""Progress of long MLlib fits, and what the driver JVM's MLlib runs on.

MLlib runs L-BFGS in the driver JVM through Breeze, which logs ``Val and Grad Norm: <loss> ...`` after
every iteration at INFO level. :class:`FitProgress` attaches a log4j2 file appender to the
``breeze.optimize`` logger for the duration of the fit and a Python thread tails that file, so each
iteration's loss is logged as it happens (the same numbers ``objectiveHistory`` holds at the end).
Between iterations (several minutes each at full scale) the same thread logs a heartbeat with the
task progress of the running Spark stages. Where the JVM is not reachable (Spark Connect), only the
heartbeat is possible and the history is logged after the fit.

:func:`stage_heartbeat` is the general one, around every stage (:meth:`gap_spark.stages.Stage.function`):
where Spark's console progress bar is off (stderr is not a terminal: a log file, a scheduler, a
notebook's captured output), it logs one line per stage every ``spark.progress_seconds``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from gap_spark.core.session import is_connect, warn_once

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["FitProgress", "StageHeartbeat", "blas_implementation", "elapsed_text", "stage_heartbeat"]

log = logging.getLogger(__name__)

_BREEZE_LINE = re.compile(r"^(\d+) Val and Grad Norm:\s*(\S+)\s*\(rel:\s*(\S+)\)\s*(\S+)")
_BREEZE_LOGGER = "breeze.optimize"


def _jvm(spark: "SparkSession") -> Any:
    """The driver's Py4J JVM view (RuntimeError where there is none, e.g. Spark Connect)."""
    if is_connect(spark):
        raise RuntimeError("Spark Connect: no JVM in this process")
    jvm = spark.sparkContext._jvm  # noqa: SLF001 - the JVM log config and BLAS are only reachable here
    if jvm is None:
        raise RuntimeError("no JVM gateway")
    return jvm


def blas_implementation(spark: "SparkSession") -> str:
    """The BLAS MLlib uses on the driver: a native library through JNI, or the JDK Vector API path.

    Parameters
    ----------
    spark : SparkSession

    Returns
    -------
    str
        The JVM class name (``dev.ludovic.netlib.blas.VectorBLAS``, ...), or ``unknown``.
    """
    try:
        return str(_jvm(spark).dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())
    except Exception:  # noqa: BLE001
        return "unknown"


class FitProgress:
    """Log a fit's progress while it runs: L-BFGS losses (LR) and a heartbeat of Spark task progress.

    Use as a context manager around ``estimator.fit``. ``losses`` holds the losses seen so far and
    ``iteration_times`` when Breeze logged each (epoch seconds, from the log line's own timestamp).

    Parameters
    ----------
    spark : SparkSession
        The session doing the fit.
    name : str
        Label for the log lines (``lr``, ``rf``).
    heartbeat_s : float
        Seconds without news after which the running stages' task counts are logged.
    track_lbfgs : bool
        Tail Breeze's per-iteration log lines (only for L-BFGS/OWL-QN based fits).
    """

    def __init__(self, spark: "SparkSession", name: str, heartbeat_s: float = 60.0, track_lbfgs: bool = False):
        self.spark = spark
        self.name = name
        self.heartbeat_s = max(1.0, float(heartbeat_s))
        self.track_lbfgs = track_lbfgs
        self.losses: list[float] = []
        self.iteration_times: list[float] = []  # time.time() when each iteration's loss was logged
        self.gradient_norms: list[float] = []  # Breeze's norm of the (adjusted) gradient after each iteration
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_file: str | None = None
        self._detach: Callable[[], None] | None = None
        self._started = 0.0
        self._last_news = 0.0

    # -- log4j2 hook -------------------------------------------------------------------------------
    def _attach(self) -> None:
        jvm = _jvm(self.spark)
        core = jvm.org.apache.logging.log4j.core
        level_info = jvm.org.apache.logging.log4j.Level.INFO
        ctx = jvm.org.apache.logging.log4j.LogManager.getContext(False)
        config = ctx.getConfiguration()
        fd, path = tempfile.mkstemp(prefix=f"gap-spark-{self.name}-", suffix=".log")
        os.close(fd)
        layout = (core.layout.PatternLayout.newBuilder().withPattern("%d{UNIX_MILLIS} %m%n")
                  .withConfiguration(config).build())
        appender_name = f"gap-spark-progress-{uuid.uuid4().hex[:8]}"
        appender = (core.appender.FileAppender.newBuilder().withFileName(path).setName(appender_name)
                    .setLayout(layout).setImmediateFlush(True).build())
        appender.start()
        config.addAppender(appender)
        existing = config.getLoggers().containsKey(_BREEZE_LOGGER)
        if existing:
            logger_config = config.getLoggers().get(_BREEZE_LOGGER)
            old_level = logger_config.getLevel()
            logger_config.addAppender(appender, level_info, None)
            logger_config.setLevel(level_info)
        else:
            refs = self.spark.sparkContext._gateway.new_array(core.config.AppenderRef, 0)  # type: ignore[union-attr]  # noqa: SLF001
            logger_config = (core.config.LoggerConfig.newBuilder().withLoggerName(_BREEZE_LOGGER)
                             .withLevel(level_info).withAdditivity(False).withConfig(config)
                             .withRefs(refs).build())
            logger_config.addAppender(appender, level_info, None)
            config.addLogger(_BREEZE_LOGGER, logger_config)
        ctx.updateLoggers()

        def detach() -> None:
            if existing:
                logger_config.removeAppender(appender_name)
                logger_config.setLevel(old_level)
            else:
                config.removeLogger(_BREEZE_LOGGER)
            ctx.updateLoggers()
            appender.stop()
            config.getAppenders().remove(appender_name)

        self._log_file, self._detach = path, detach

    # -- polling thread ----------------------------------------------------------------------------
    def _stage_progress(self) -> str:
        if is_connect(self.spark):
            return "stage progress is on the Spark Connect server"
        try:
            tracker = self.spark.sparkContext.statusTracker()
            parts = []
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    parts.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
            return "; ".join(parts) or "no stage running (driver-side work)"
        except Exception:  # noqa: BLE001 - progress is best effort and must never break a fit
            return "stage progress unavailable"

    def _read_new_lines(self, handle: IO[str]) -> None:
        for line in handle.readlines():
            match = _BREEZE_LINE.search(line)
            if match:
                stamp, loss = int(match.group(1)) / 1000.0, float(match.group(2))
                previous = self.iteration_times[-1] if self.iteration_times else self._started
                self.losses.append(loss)
                self.iteration_times.append(stamp)
                self.gradient_norms.append(float(match.group(4)))
                log.info("%s: iteration %d, loss %.6f (relative change %s, gradient norm %s), %.1f s for this "
                         "iteration, %.0f s elapsed", self.name, len(self.losses), loss, match.group(3),
                         match.group(4), stamp - previous, stamp - self._started)
                self._last_news = time.time()
            elif "Converged because" in line:
                log.info("%s: L-BFGS stopped: %s", self.name, line.strip().split("Converged because", 1)[1].strip())

    def _run(self) -> None:
        handle = open(self._log_file, encoding="utf-8", errors="replace") if self._log_file else None  # noqa: SIM115 - local temp file the JVM writes
        try:
            while not self._stop.wait(0.5):
                if handle is not None:
                    self._read_new_lines(handle)
                if time.time() - self._last_news >= self.heartbeat_s:
                    done = f", {len(self.losses)} iterations done" if self.track_lbfgs else ""
                    log.info("%s: still fitting, %.0f s elapsed%s; %s", self.name, time.time() - self._started,
                             done, self._stage_progress())
                    self._last_news = time.time()
            if handle is not None:
                self._read_new_lines(handle)
        finally:
            if handle is not None:
                handle.close()

    def __enter__(self) -> "FitProgress":
        self._started = self._last_news = time.time()
        if self.track_lbfgs:
            try:
                self._attach()
            except Exception as exc:  # noqa: BLE001 - e.g. Spark Connect: no JVM; fall back to the heartbeat
                if is_connect(self.spark):
                    warn_once("lbfgs-tail", "Spark Connect: L-BFGS losses are logged after each fit, not during it "
                              "(the per-iteration log tail reads the driver JVM's log)")
                else:
                        log.info("%s: per-iteration losses not available while fitting (%s); they are logged after it",
                             self.name, type(exc).__name__)
                self._log_file = None
        self._thread = threading.Thread(target=self._run, name=f"gap-spark-{self.name}-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._detach is not None:
            try:
                self._detach()
            except Exception:
                log.debug("could not detach the progress appender", exc_info=True)
        if self._log_file:
            with contextlib.suppress(OSError):
                os.remove(self._log_file)


# --------------------------------------------------------------------------------------------------
# A heartbeat around every stage
# --------------------------------------------------------------------------------------------------

def elapsed_text(seconds: float) -> str:
    """``45s``, ``1m30s``, ``2h05m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class StageHeartbeat:
    """A daemon thread that logs ``<stage>: running 1m30s; Spark jobs 12 done, 1 running (stage 34:
    57/200 tasks)`` every ``interval_s`` until :meth:`stop`.

    The jobs counted are those started since the heartbeat began (read from the SparkContext's status
    tracker, whatever their job group). Without a SparkContext in this process (Spark Connect, or a
    stage that does not use Spark) the line has the elapsed time only.

    Parameters
    ----------
    spark : SparkSession or None
    name : str
        The stage, at the start of each line.
    interval_s : float
        Seconds between lines.
    """

    def __init__(self, spark: "SparkSession | None", name: str, interval_s: float):
        self.name = name
        self.interval_s = float(interval_s)
        self._tracker = self._status_tracker(spark)
        self._next_job = 0  # the first job id not seen yet
        self._running: set[int] = set()  # jobs started since the start, not finished at the last look
        self._done = 0
        self._failed = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gap-spark-{name}-heartbeat", daemon=True)

    @staticmethod
    def _status_tracker(spark: "SparkSession | None") -> Any:
        from gap_spark.core.session import is_connect

        if spark is None or is_connect(spark):
            return None
        try:
            return spark.sparkContext.statusTracker()
        except Exception:  # noqa: BLE001 - progress is best effort
            return None

    def _new_jobs(self) -> list[tuple[int, str]]:
        """Jobs started since the last look (id, status), in id order (ids are consecutive)."""
        found = []
        while (info := self._tracker.getJobInfo(self._next_job)) is not None:
            found.append((self._next_job, str(info.status)))
            self._next_job += 1
        return found

    def _count(self, job_id: int, status: str) -> None:
        if status == "RUNNING" or status == "UNKNOWN":
            self._running.add(job_id)
            return
        self._running.discard(job_id)
        if status == "SUCCEEDED":
            self._done += 1
        else:
            self._failed += 1

    def _spark_text(self) -> str:
        tracker = self._tracker
        for job_id in list(self._running):
            info = tracker.getJobInfo(job_id)
            self._count(job_id, str(info.status) if info is not None else "SUCCEEDED")
        for job_id, status in self._new_jobs():
            self._count(job_id, status)
        stages = []
        for stage_id in sorted(tracker.getActiveStageIds()):
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                stages.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
        failed = f", {self._failed} failed" if self._failed else ""
        where = "; ".join(stages) or "driver-side work"
        return f"Spark jobs {self._done} done, {len(self._running)} running{failed} ({where})"

    def line(self) -> str:
        """The progress line as it would be logged now."""
        text = f"{self.name}: running {elapsed_text(time.monotonic() - self._started)}"
        if self._tracker is None:
            return text
        try:
            return f"{text}; {self._spark_text()}"
        except Exception:  # noqa: BLE001 - progress is best effort and must never break a stage
            return f"{text}; Spark progress unavailable"

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            log.info("%s", self.line())

    def start(self) -> "StageHeartbeat":
        if self._tracker is not None:
            try:  # skip the jobs that ran before this stage
                known = self._tracker.getJobIdsForGroup(None) + self._tracker.getActiveJobsIds()
                self._next_job = max(known, default=-1) + 1
                self._new_jobs()
            except Exception:  # noqa: BLE001
                self._tracker = None
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


@contextlib.contextmanager
def stage_heartbeat(spark: "SparkSession | None", name: str, interval_s: float,
                    tty: bool | None = None) -> Iterator[StageHeartbeat | None]:
    """Log ``name``'s progress every ``interval_s`` while the block runs, unless stderr is a terminal.

    On a terminal Spark draws its own console progress bar (``spark.ui.showConsoleProgress``), so
    nothing is logged. The thread is a daemon and stops when the block ends, however it ends (an
    exception, Ctrl-C).

    Parameters
    ----------
    spark : SparkSession or None
    name : str
        The stage.
    interval_s : float
        Seconds between lines (``spark.progress_seconds``).
    tty : bool, optional
        Whether the output is a terminal; default: ``sys.stderr.isatty()``.

    Yields
    ------
    StageHeartbeat or None
        The running heartbeat; None on a terminal.
    """
    if (_stderr_is_tty() if tty is None else tty) or interval_s <= 0:
        yield None
        return
    heartbeat = StageHeartbeat(spark, name, interval_s).start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
