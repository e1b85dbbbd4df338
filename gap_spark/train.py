"""The train stage: multinomial logistic regression and a random forest on the whole train split.

Flow of :func:`run_train`
-------------------------
1. Refusals before any heavy work: no (or an incomplete) manifest, a model already in the run
   directory (unless ``train.overwrite``), and D or K disagreeing between the manifest and a few rows.
2. The train split (``label``, ``features`` array<float>) is cached once with ``train.storage_level``
   and ``train.partitions``. Caching the float arrays rather than the assembled double vectors halves
   the cache (4 instead of 8 bytes a value, 5.2 GB instead of 10.5 GB at full scale); array_to_vector
   is a cheap copy that each later pass repeats. One aggregation over the cache fills it and checks
   every row: array lengths against D, labels against [0, K), and the classes that have no rows.
3. The feature transform (:mod:`gap_spark.features`) is fitted on train only; each model is saved
   as one ``PipelineModel`` (feature stages + classifier) under ``RUN_DIR/models/<name>/``.
4. With ``train.tune.enabled``, a TrainValidationSplit over a grid runs on ``train.tune.fraction`` of
   train; the table goes to ``RUN_DIR/tuning/<name>.csv`` and the best parameters into the final fit.
5. ``RUN_DIR/train_summary.json`` records params, rows, iterations, LR's objective history, seconds
   per phase, D, K and the manifest summary.

Progress of a long LR fit
-------------------------
MLlib runs L-BFGS in the driver JVM through Breeze, which logs ``Val and Grad Norm: <loss> ...`` after
every iteration at INFO level. :class:`FitProgress` attaches a log4j2 file appender to the
``breeze.optimize`` logger for the duration of the fit and a Python thread tails that file, so each
iteration's loss is logged as it happens (the same numbers ``objectiveHistory`` holds at the end).
Between iterations (several minutes each at full scale) the same thread logs a heartbeat with the
task progress of the running Spark stages. Where the JVM is not reachable (Spark Connect), only the
heartbeat is possible and the history is logged after the fit.

Where the time goes (measured with benchmarks/bench_train.py, 2 cores, shared machine)
-------------------------------------------------------------------------------------
- LR: each L-BFGS evaluation is two dense products of the rows with the K x D coefficients
  (4 n D K flops). With no ``libblas.so.3`` here, MLlib uses netlib's JDK Vector API path
  (``VectorBLAS``, about 7 GFLOP/s a core on these shapes; the plain Java path ``F2jBLAS`` gave 0.8).
  At 20k x 1024 x 1000 with low load: 4.0 s per iteration against scikit-learn's 1.3 (ratio 3.1);
  about 1.2 evaluations per iteration, but the first iteration's line search takes about five, and
  two passes (statistics, blocks) precede it: the first iteration arrives after about 21 s.
  ``maxBlockSizeInMB``: 0.25 MB doubles the cost, 1-16 MB are within noise; 1 partition per core is
  cheapest on small data. Cost is linear in rows, so full scale is about 4.5 min per iteration.
- RF: the per-node class histograms (K x bins x features-per-node doubles per node, per partition)
  dominate, not the rows; hence PCA inputs, sqrt features per node, 16 bins and one partition per
  core. The measured table is in defaults.yaml next to the ``train.rf`` keys.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import manifest_summary, read_manifest, read_split
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError, DatasetError, GapSparkError
from gap_spark.features import fit_feature_model, output_column, validate_pca_k, with_label_metadata

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

MODEL_NAMES = ("lr", "rf")
STORAGE_LEVELS = ("NONE", "DISK_ONLY", "DISK_ONLY_2", "DISK_ONLY_3", "MEMORY_ONLY", "MEMORY_ONLY_2",
                  "MEMORY_AND_DISK", "MEMORY_AND_DISK_2", "MEMORY_AND_DISK_DESER", "OFF_HEAP")
FEATURE_SUBSET_STRATEGIES = ("auto", "all", "onethird", "sqrt", "log2")
# Size of one cached training partition the automatic partition count aims at (float arrays).
TARGET_PARTITION_BYTES = 128 * 1024 * 1024
MISSING_CLASSES_NAMED = 20


# --------------------------------------------------------------------------------------------------
# Config -> MLlib parameters (pure)
# --------------------------------------------------------------------------------------------------

def selected_models(models: Iterable[str] | str) -> list[str]:
    """The model names to train, validated and de-duplicated in the given order.

    Parameters
    ----------
    models : iterable of str or str
        ``train.models`` (a list) or a comma-separated string.

    Returns
    -------
    list of str
        Names from ``MODEL_NAMES``.
    """
    if isinstance(models, str):
        models = list(models.split(","))
    out: list[str] = []
    for name in models:
        name = str(name).strip().lower()
        if not name:
            continue
        if name not in MODEL_NAMES:
            raise ConfigError(f"train.models: unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("train.models is empty: name at least one of lr, rf")
    return out


def _number(section: dict, key: str, prefix: str, kind: type = float, low: float | None = None,
            high: float | None = None, low_open: bool = False) -> Any:
    value = section[key]
    if kind is float and isinstance(value, str):
        # YAML 1.1 reads 1e-6 (no dot) as a string; accept it as the number it is meant to be.
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{prefix}.{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{prefix}.{key} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{prefix}.{key} must be <= {high}, got {value!r}")
    return kind(value)


def lr_params(lr_cfg: dict) -> dict:
    """MLlib ``LogisticRegression`` parameters from the ``train.lr`` config section.

    Parameters
    ----------
    lr_cfg : dict
        ``config.section("train.lr")``.

    Returns
    -------
    dict
        ``regParam``, ``elasticNetParam``, ``maxIter``, ``tol``, ``maxBlockSizeInMB``.
    """
    p = "train.lr"
    return {
        "regParam": _number(lr_cfg, "reg_param", p, low=0.0),
        "elasticNetParam": _number(lr_cfg, "elastic_net_param", p, low=0.0, high=1.0),
        "maxIter": _number(lr_cfg, "max_iter", p, kind=int, low=0),
        "tol": _number(lr_cfg, "tol", p, low=0.0),
        "maxBlockSizeInMB": _number(lr_cfg, "max_block_size_mb", p, low=0.0),
    }


def rf_params(rf_cfg: dict) -> dict:
    """MLlib ``RandomForestClassifier`` parameters from the ``train.rf`` config section.

    Parameters
    ----------
    rf_cfg : dict
        ``config.section("train.rf")``.

    Returns
    -------
    dict
        ``numTrees``, ``maxDepth``, ``maxBins``, ``featureSubsetStrategy``, ``subsamplingRate``,
        ``maxMemoryInMB``, ``checkpointInterval``, ``cacheNodeIds``, ``minInstancesPerNode``, ``seed``.
    """
    p = "train.rf"
    strategy = str(rf_cfg["feature_subset_strategy"]).strip().lower()
    if strategy not in FEATURE_SUBSET_STRATEGIES:
        try:  # MLlib also takes a fraction in (0, 1] or a count >= 1
            if float(strategy) <= 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"train.rf.feature_subset_strategy must be one of {FEATURE_SUBSET_STRATEGIES}, "
                              f"a fraction in (0, 1] or a count, got {rf_cfg['feature_subset_strategy']!r}") from None
    checkpoint = rf_cfg["checkpoint_interval"]
    if checkpoint is not None and (isinstance(checkpoint, bool) or not isinstance(checkpoint, int)
                                   or (checkpoint < 1 and checkpoint != -1)):
        raise ConfigError(f"train.rf.checkpoint_interval must be -1 (off) or >= 1, got {checkpoint!r}")
    return {
        "numTrees": _number(rf_cfg, "num_trees", p, kind=int, low=1),
        "maxDepth": _number(rf_cfg, "max_depth", p, kind=int, low=0, high=30),
        "maxBins": _number(rf_cfg, "max_bins", p, kind=int, low=2),
        "featureSubsetStrategy": strategy,
        "subsamplingRate": _number(rf_cfg, "subsampling_rate", p, low=0.0, high=1.0, low_open=True),
        "maxMemoryInMB": _number(rf_cfg, "max_memory_mb", p, kind=int, low=1),
        "checkpointInterval": int(checkpoint) if checkpoint is not None else -1,
        "cacheNodeIds": bool(rf_cfg["cache_node_ids"]),
        "minInstancesPerNode": _number(rf_cfg, "min_instances_per_node", p, kind=int, low=1),
        "seed": _number(rf_cfg, "seed", p, kind=int),
    }


def storage_level(name: str | None):
    """The ``pyspark.StorageLevel`` named in the config, or None for ``NONE`` (no caching).

    Parameters
    ----------
    name : str or None
        One of ``STORAGE_LEVELS``.

    Returns
    -------
    pyspark.StorageLevel or None
    """
    from pyspark import StorageLevel

    key = "NONE" if name is None else str(name).strip().upper()
    if key not in STORAGE_LEVELS:
        raise ConfigError(f"train.storage_level must be one of {', '.join(STORAGE_LEVELS)}, got {name!r}")
    return None if key == "NONE" else getattr(StorageLevel, key)


def auto_partitions(rows: int, dim: int, cores: int) -> int:
    """Partitions for the cached training data: about 128 MB of float arrays each, a multiple of cores.

    Parameters
    ----------
    rows : int
        Training rows.
    dim : int
        Feature dimension D.
    cores : int
        Task slots (``defaultParallelism``).

    Returns
    -------
    int
        At least ``cores``; e.g. 42 for 1.28M x 1024 on 2 cores, 2 for 20k x 1024.
    """
    cores = max(1, int(cores))
    by_size = math.ceil(max(1, rows) * max(1, dim) * 4 / TARGET_PARTITION_BYTES)
    return max(cores, math.ceil(by_size / cores) * cores)


# --------------------------------------------------------------------------------------------------
# Checks of the data against the manifest
# --------------------------------------------------------------------------------------------------

def check_sample_rows(frame: "DataFrame", dim: int, classes: int, rows: int = 20) -> None:
    """Fail fast when a few rows already contradict the manifest's D or K.

    Parameters
    ----------
    frame : DataFrame
        The train split (``label``, ``features``).
    dim, classes : int
        D and K from the manifest.
    rows : int
        How many rows to look at.
    """
    from pyspark.sql import functions as F

    sample = frame.select(F.size("features").alias("n"), "label").limit(rows).collect()
    if not sample:
        raise DatasetError("the train split has no rows; nothing to train on")
    for row in sample:
        if row["n"] != dim:
            raise DatasetError(f"feature arrays hold {row['n']} values but the manifest says D={dim}; "
                               "the dataset is inconsistent (run `gap-spark ingest` again)")
        if row["label"] is None or not 0 <= row["label"] < classes:
            raise DatasetError(f"label {row['label']} lies outside [0, {classes}) for the manifest's K={classes}; "
                               "the dataset is inconsistent (run `gap-spark ingest` again)")


def label_stats(frame: "DataFrame") -> dict:
    """One pass over the frame: rows per label and the range of feature-array lengths.

    Parameters
    ----------
    frame : DataFrame
        Rows with ``label`` and ``features``.

    Returns
    -------
    dict
        ``rows``, ``counts`` (label -> rows), ``min_dim``, ``max_dim``.
    """
    from pyspark.sql import functions as F

    per_label = (frame.groupBy("label")
                 .agg(F.count(F.lit(1)).alias("n"), F.min(F.size("features")).alias("lo"),
                      F.max(F.size("features")).alias("hi"))
                 .collect())
    counts = {int(r["label"]) if r["label"] is not None else None: int(r["n"]) for r in per_label}
    return {
        "rows": sum(counts.values()),
        "counts": counts,
        "min_dim": min((r["lo"] for r in per_label), default=None),
        "max_dim": max((r["hi"] for r in per_label), default=None),
    }


def check_label_stats(stats: dict, dim: int, classes: int) -> list[int]:
    """Refuse data that disagrees with the manifest; return the classes with no training rows.

    Parameters
    ----------
    stats : dict
        From :func:`label_stats`.
    dim, classes : int
        D and K from the manifest.

    Returns
    -------
    list of int
        Labels in ``[0, K)`` that have no rows, sorted.
    """
    if stats["rows"] == 0:
        raise DatasetError("the train split has no rows; nothing to train on")
    if stats["min_dim"] != dim or stats["max_dim"] != dim:
        raise DatasetError(f"feature arrays hold between {stats['min_dim']} and {stats['max_dim']} values but the "
                           f"manifest says D={dim}; the dataset is inconsistent (run `gap-spark ingest` again)")
    labels = [k for k in stats["counts"] if k is not None]
    if None in stats["counts"] or min(labels) < 0 or max(labels) >= classes:
        bad = "null" if None in stats["counts"] else (min(labels) if min(labels) < 0 else max(labels))
        raise DatasetError(f"the train split holds label {bad}, outside [0, {classes}) for the manifest's K={classes}; "
                           "the dataset is inconsistent (run `gap-spark ingest` again)")
    present = set(labels)
    return [k for k in range(classes) if k not in present]


def describe_missing(missing: list[int], classes: int) -> str:
    """One line naming the classes without training rows (the first few, then a count)."""
    named = ", ".join(str(k) for k in missing[:MISSING_CLASSES_NAMED])
    more = f" and {len(missing) - MISSING_CLASSES_NAMED} more" if len(missing) > MISSING_CLASSES_NAMED else ""
    return (f"the train split has no rows for {len(missing)} of {classes} classes: {named}{more}; "
            "the models can never predict them")


# --------------------------------------------------------------------------------------------------
# Progress of long fits
# --------------------------------------------------------------------------------------------------

_BREEZE_LINE = re.compile(r"^(\d+) Val and Grad Norm:\s*(\S+)\s*\(rel:\s*(\S+)\)\s*(\S+)")
_BREEZE_LOGGER = "breeze.optimize"


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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_file: str | None = None
        self._detach = None
        self._started = 0.0

    # -- log4j2 hook -------------------------------------------------------------------------------
    def _attach(self) -> None:
        jvm = self.spark.sparkContext._jvm  # noqa: SLF001 - the JVM log config is only reachable here
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
            refs = self.spark.sparkContext._gateway.new_array(core.config.AppenderRef, 0)  # noqa: SLF001
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

    def _read_new_lines(self, handle) -> None:
        for line in handle.readlines():
            match = _BREEZE_LINE.search(line)
            if match:
                stamp, loss = int(match.group(1)) / 1000.0, float(match.group(2))
                previous = self.iteration_times[-1] if self.iteration_times else self._started
                self.losses.append(loss)
                self.iteration_times.append(stamp)
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
                log.info("%s: per-iteration losses not available while fitting (%s); they are logged after it",
                         self.name, type(exc).__name__)
                self._log_file = None
        self._thread = threading.Thread(target=self._run, name=f"gap-spark-{self.name}-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
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
# Estimators, tuning, fits
# --------------------------------------------------------------------------------------------------

def lr_estimator(params: dict, features_col: str):
    """A multinomial ``LogisticRegression`` over the standardised features.

    Parameters
    ----------
    params : dict
        From :func:`lr_params` (possibly updated by tuning).
    features_col : str
        The vector column to read.

    Returns
    -------
    pyspark.ml.classification.LogisticRegression
    """
    from pyspark.ml.classification import LogisticRegression

    return LogisticRegression(featuresCol=features_col, labelCol="label", family="multinomial",
                              standardization=True, fitIntercept=True, **params)


def rf_estimator(params: dict, features_col: str):
    """A ``RandomForestClassifier`` (Gini impurity) over the (PCA-reduced) features.

    Parameters
    ----------
    params : dict
        From :func:`rf_params` (possibly updated by tuning).
    features_col : str
        The vector column to read.

    Returns
    -------
    pyspark.ml.classification.RandomForestClassifier
    """
    from pyspark.ml.classification import RandomForestClassifier

    return RandomForestClassifier(featuresCol=features_col, labelCol="label", impurity="gini", **params)


def tuning_grid(name: str, estimator, tune_cfg: dict) -> list:
    """The ParamGridBuilder grid for a model from ``train.tune``.

    Parameters
    ----------
    name : str
        ``lr`` (regParam x elasticNetParam) or ``rf`` (maxDepth x numTrees).
    estimator : Estimator
        The estimator whose params the grid sets.
    tune_cfg : dict
        ``config.section("train.tune")``.

    Returns
    -------
    list of ParamMap
    """
    from pyspark.ml.tuning import ParamGridBuilder

    def values(key: str, kind: type) -> list:
        raw = tune_cfg[key]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"train.tune.{key} must be a non-empty list, got {raw!r}")
        try:
            return [kind(v) for v in raw]
        except (TypeError, ValueError):
            raise ConfigError(f"train.tune.{key} must hold numbers, got {raw!r}") from None

    builder = ParamGridBuilder()
    if name == "lr":
        builder.addGrid(estimator.regParam, values("lr_reg_param", float))
        builder.addGrid(estimator.elasticNetParam, values("lr_elastic_net_param", float))
    else:
        builder.addGrid(estimator.maxDepth, values("rf_max_depth", int))
        builder.addGrid(estimator.numTrees, values("rf_num_trees", int))
    return builder.build()


def tune_model(name: str, estimator, frame: "DataFrame", tune_cfg: dict, seed: int) -> tuple[dict, list[dict]]:
    """Grid search with TrainValidationSplit on a fraction of the (transformed) training frame.

    Parameters
    ----------
    name : str
        ``lr`` or ``rf``.
    estimator : Estimator
        Configured with the untuned parameters.
    frame : DataFrame
        Training rows with the classifier's features column and the label (with metadata).
    tune_cfg : dict
        ``config.section("train.tune")``.
    seed : int
        Seed of the sample and of the split.

    Returns
    -------
    (dict, list of dict)
        The best parameters (MLlib names) and the results table, one row per grid point, best first.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import TrainValidationSplit

    fraction = _number(tune_cfg, "fraction", "train.tune", low=0.0, high=1.0, low_open=True)
    ratio = _number(tune_cfg, "train_ratio", "train.tune", low=0.0, high=1.0, low_open=True)
    parallelism = _number(tune_cfg, "parallelism", "train.tune", kind=int, low=1)
    grid = tuning_grid(name, estimator, tune_cfg)
    sample = frame.sample(withReplacement=False, fraction=fraction, seed=seed) if fraction < 1.0 else frame
    evaluator = MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction", metricName="accuracy")
    tvs = TrainValidationSplit(estimator=estimator, estimatorParamMaps=grid, evaluator=evaluator,
                               trainRatio=ratio, parallelism=parallelism, seed=seed)
    model = tvs.fit(sample)
    table = []
    for param_map, metric in zip(grid, model.validationMetrics):
        row = {param.name: value for param, value in param_map.items()}
        row["validation_accuracy"] = float(metric)
        table.append(row)
    table.sort(key=lambda r: -r["validation_accuracy"])
    best = {k: v for k, v in table[0].items() if k != "validation_accuracy"}
    return best, table


def table_csv(rows: list[dict]) -> str:
    """A list of flat dicts as CSV text (columns in first-row order)."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def blas_implementation(spark: "SparkSession") -> str:
    """The BLAS MLlib uses on the driver: a native library through JNI, or the JDK Vector API path."""
    try:
        return str(spark.sparkContext._jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return "unknown"


def model_dir(paths: "Paths", name: str) -> str:
    """``RUN_DIR/models/<name>``."""
    return paths.run_file("models", name)


def _seconds(started: float) -> float:
    return round(time.time() - started, 3)


def _optional_count(value: Any, key: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{key} must be null or a positive integer, got {value!r}")
    return value


def _prepare_training_frame(spark: "SparkSession", train: "DataFrame", cfg: dict, rows: int, dim: int):
    partitions = _optional_count(cfg["partitions"], "train.partitions")
    level = storage_level(cfg["storage_level"])
    frame = train.select("label", "features")
    current = frame.rdd.getNumPartitions()
    target = partitions or auto_partitions(rows, dim, spark.sparkContext.defaultParallelism)
    if target < current:
        frame = frame.coalesce(target)  # narrow: no shuffle of the whole split
    elif target > current:
        frame = frame.repartition(target)
    if level is not None:
        frame = frame.persist(level)
    return frame, target, level


def _save_model(model: "PipelineModel", uri: str, overwrite: bool) -> None:
    writer = model.write()
    if overwrite:
        writer = writer.overwrite()
    writer.save(uri)


def warm_start_params(lr_cfg: dict) -> dict | None:
    """The ``train.lr.warm_start`` section checked: ``{"sample_rows", "max_iter", "seed"}``, or None when off.

    Parameters
    ----------
    lr_cfg : dict
        ``config.section("train.lr")``.
    """
    section = lr_cfg.get("warm_start") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"train.lr.warm_start must be a mapping, got {section!r}")
    p = "train.lr.warm_start"
    rows = section.get("sample_rows")
    if rows is None or rows == 0:
        return None
    return {"sample_rows": _number(section, "sample_rows", p, kind=int, low=1),
            "max_iter": _number(section, "max_iter", p, kind=int, low=1),
            "seed": _number(section, "seed", p, kind=int)}


def _fit_lr_once(spark: "SparkSession", estimator, frame: "DataFrame", label: str, heartbeat_s: float):
    with FitProgress(spark, label, heartbeat_s, track_lbfgs=True) as progress:
        model = estimator.fit(frame)
    history = [float(v) for v in model.summary.objectiveHistory]
    if not progress.losses:  # the hook was not available: at least show the curve now
        for i, loss in enumerate(history[1:], start=1):
            log.info("%s: iteration %d, loss %.6f", label, i, loss)
    return model, history


def fit_lr(spark: "SparkSession", frame: "DataFrame", params: dict, features_col: str,
           heartbeat_s: float = 60.0, warm_start: dict | None = None, rows: int | None = None):
    """Fit LR on every row of ``frame``, optionally warm-started from a fit on a random sample.

    L-BFGS from a cold start spends most of its loss evaluations (each a full pass over the data) on
    the first iterations: the first line search alone took several at 128k rows. A fit on a sample of
    ``warm_start["sample_rows"]`` rows reaches that region cheaply; the fit on all rows then starts
    from its coefficients and runs ``params["maxIter"]`` iterations. The final model is fitted on
    every row; the sample only chooses where the optimiser starts.

    Parameters
    ----------
    spark : SparkSession
    frame : DataFrame
        Label and standardised feature vectors (with the label metadata).
    params : dict
        From :func:`lr_params`.
    features_col : str
    heartbeat_s : float
        Seconds without news after which task progress is logged.
    warm_start : dict or None
        From :func:`warm_start_params`; None fits from MLlib's own start (class-prior intercepts).
    rows : int or None
        Rows in ``frame`` when known (saves a count).

    Returns
    -------
    tuple
        ``(model, objective_history, warm_info)``; ``warm_info`` is None for a cold start, else the
        sample's rows, iterations, objective history and seconds.
    """
    estimator = lr_estimator(params, features_col)
    warm_info = None
    if warm_start is not None:
        total = rows if rows is not None else frame.count()
        if warm_start["sample_rows"] >= total:
            log.info("lr: warm start skipped: the sample (%d rows) would be the whole split (%d rows)",
                     warm_start["sample_rows"], total)
        elif not hasattr(estimator, "_java_obj"):
            log.warning("lr: warm start needs a classic (JVM) session; fitting from a cold start")
        else:
            from pyspark import StorageLevel

            t0 = time.time()
            spark.sparkContext.setJobDescription(f"gap-spark train: warm-start lr on ~{warm_start['sample_rows']} rows")
            # 5% over the target so a Bernoulli sample rarely falls short; the exact count is logged.
            fraction = min(1.0, 1.05 * warm_start["sample_rows"] / total)
            sample = frame.sample(withReplacement=False, fraction=fraction, seed=warm_start["seed"])
            sample = sample.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                sample_rows = sample.count()
                log.info("lr: warm start: fitting %d iterations on a sample of %d rows", warm_start["max_iter"],
                         sample_rows)
                sample_estimator = lr_estimator({**params, "maxIter": warm_start["max_iter"]}, features_col)
                initial, sample_history = _fit_lr_once(spark, sample_estimator, sample, "lr-sample", heartbeat_s)
            finally:
                sample.unpersist()
            # MLlib's setInitialModel is private[spark] in Scala, so public in the JVM and not wrapped in
            # Python; it is how MLlib itself warm-starts. MLlib checks the coefficients' shape.
            estimator._java_obj.setInitialModel(initial._java_obj)  # noqa: SLF001
            warm_info = {"sample_rows": int(sample_rows), "iterations": int(initial.summary.totalIterations),
                         "objective_history": sample_history, "seconds": _seconds(t0), "seed": warm_start["seed"]}
            log.info("lr: warm start fitted in %.1f s (loss on the sample %.4f); now all %d rows",
                     warm_info["seconds"], sample_history[-1], total)
            spark.sparkContext.setJobDescription(f"gap-spark train: fit lr on all {total} rows")
    model, history = _fit_lr_once(spark, estimator, frame, "lr", heartbeat_s)
    return model, history, warm_info


def fit_rf(spark: "SparkSession", frame: "DataFrame", params: dict, features_col: str,
           heartbeat_s: float = 60.0):
    """Fit the random forest with a heartbeat of Spark's task progress."""
    estimator = rf_estimator(params, features_col)
    with FitProgress(spark, "rf", heartbeat_s, track_lbfgs=False):
        return estimator.fit(frame)


# --------------------------------------------------------------------------------------------------
# Stage entry point
# --------------------------------------------------------------------------------------------------

def run_train(spark: "SparkSession", config: "Config", paths: "Paths") -> dict:
    """Stage entry point: train the models named in ``train.models`` and write ``train_summary.json``.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        Reads the ``train`` section.
    paths : Paths
        Reads ``paths.data``; writes under ``paths.run``.

    Returns
    -------
    dict
        The content of ``RUN_DIR/train_summary.json``.
    """
    started = time.time()
    cfg = config.section("train")
    names = selected_models(cfg["models"])
    overwrite = bool(cfg["overwrite"])
    missing_policy = str(cfg["missing_classes"]).strip().lower()
    if missing_policy not in ("warn", "error"):
        raise ConfigError(f"train.missing_classes must be 'warn' or 'error', got {cfg['missing_classes']!r}")
    heartbeat_s = _number(cfg, "progress_seconds", "train", low=0.0, low_open=True)
    # Validate every parameter before anything runs, so a typo never costs a fit.
    params = {"lr": lr_params(cfg["lr"]), "rf": rf_params(cfg["rf"])}
    warm = warm_start_params(cfg["lr"])
    tune_enabled = bool(cfg["tune"]["enabled"])
    _optional_count(cfg["partitions"], "train.partitions")
    storage_level(cfg["storage_level"])
    rf_partitions_cfg = _optional_count(cfg["rf"]["partitions"], "train.rf.partitions")

    manifest = read_manifest(paths.data)
    dim, classes = manifest.get("dim"), manifest.get("classes")
    if not isinstance(dim, int) or not isinstance(classes, int) or dim < 1 or classes < 2:
        raise DatasetError(f"the manifest of {paths.data} records D={dim!r} and K={classes!r}; "
                           "run `gap-spark ingest` again")
    pca = {"lr": validate_pca_k(cfg["pca_k"], dim, "train.pca_k") if "lr" in names else None,
           "rf": validate_pca_k(cfg["rf"]["pca_k"], dim, "train.rf.pca_k") if "rf" in names else None}
    pca_max_rows = cfg["pca_max_rows"]
    if pca_max_rows is not None:
        pca_max_rows = _number(cfg, "pca_max_rows", "train", kind=int, low=1)

    for name in names:
        target = model_dir(paths, name)
        if fs.exists(target) and not overwrite:
            raise GapSparkError(f"a model already exists at {target}; pass --overwrite "
                                "(train.overwrite=true) to replace it")

    train = read_split(spark, paths.data, "train", manifest)
    check_sample_rows(train, dim, classes)

    sc = spark.sparkContext
    sc.setJobDescription("gap-spark train: cache and check the train split")
    t0 = time.time()
    manifest_rows = (manifest.get("splits", {}).get("train") or {}).get("rows_written") or 0
    frame, partitions, level = _prepare_training_frame(spark, train, cfg, int(manifest_rows), dim)
    stats = label_stats(frame)  # fills the cache and checks every row
    missing = check_label_stats(stats, dim, classes)
    if missing:
        message = describe_missing(missing, classes)
        if missing_policy == "error":
            raise DatasetError(message + " (train.missing_classes=error)")
        log.warning("train: %s", message)
    rows = stats["rows"]
    prepare_seconds = _seconds(t0)
    log.info("train: %d rows x D=%d, K=%d, %d partitions, storage %s, cached and checked in %.1f s",
             rows, dim, classes, partitions, cfg["storage_level"], prepare_seconds)

    blas = blas_implementation(spark)
    log.info("train: MLlib BLAS on the driver: %s", blas)
    labelled = with_label_metadata(frame, classes)
    feature_models: dict[Any, Any] = {}
    feature_seconds: dict[Any, float] = {}
    results: dict[str, dict] = {}
    try:
        for name in names:
            phase: dict[str, float] = {}
            k = pca[name]
            if k not in feature_models:
                sc.setJobDescription(f"gap-spark train: fit the feature transform (pca_k={k})")
                t0 = time.time()
                feature_models[k] = fit_feature_model(frame, pca_k=k, pca_max_rows=pca_max_rows,
                                                      seed=params["rf"]["seed"], train_rows=rows)
                feature_seconds[k] = _seconds(t0)
                log.info("train: feature transform (standardise%s) fitted in %.1f s",
                         f" + PCA to {k}" if k else "", feature_seconds[k])
                phase["features"] = feature_seconds[k]
            else:
                phase["features"] = 0.0  # shared with an earlier model
            feature_model = feature_models[k]
            features_col = output_column(k)
            transformed = feature_model.transform(labelled).select("label", features_col)
            if name == "rf":
                rf_partitions = rf_partitions_cfg or sc.defaultParallelism
                if transformed.rdd.getNumPartitions() > rf_partitions:
                    # Every partition emits the per-node statistics (K x bins x features): fewer is cheaper.
                    transformed = transformed.coalesce(int(rf_partitions))

            model_params = dict(params[name])
            tuning = None
            if tune_enabled:
                sc.setJobDescription(f"gap-spark train: grid search for {name}")
                t0 = time.time()
                estimator = lr_estimator if name == "lr" else rf_estimator
                base = estimator(model_params, features_col)
                best, table = tune_model(name, base, transformed, cfg["tune"], seed=int(cfg["tune"]["seed"]))
                phase["tune"] = _seconds(t0)
                table_path = paths.run_file("tuning", f"{name}.csv")
                fs.write_text(table_path, table_csv(table))
                model_params.update(best)
                tuning = {"best": best, "table": table_path, "grid_points": len(table),
                          "fraction": cfg["tune"]["fraction"],
                          "best_validation_accuracy": table[0]["validation_accuracy"]}
                log.info("train: %s grid search: best %s (validation accuracy %.4f) in %.1f s; table %s",
                         name, best, table[0]["validation_accuracy"], phase["tune"], table_path)

            sc.setJobDescription(f"gap-spark train: fit {name} on all {rows} rows")
            t0 = time.time()
            if name == "lr":
                classifier, history, warm_info = fit_lr(spark, transformed, model_params, features_col,
                                                        heartbeat_s, warm_start=warm, rows=rows)
                iterations = int(classifier.summary.totalIterations)
                extra = {"warm_start": warm_info}
                if warm_info:
                    phase["warm_start"] = warm_info["seconds"]
            else:
                checkpoints = model_params["cacheNodeIds"] and model_params["checkpointInterval"] > 0
                if checkpoints and not sc.getCheckpointDir():
                    sc.setCheckpointDir(fs.to_spark_uri(paths.run_file("_checkpoints")))
                classifier = fit_rf(spark, transformed, model_params, features_col, heartbeat_s)
                history = []
                iterations = int(classifier.getNumTrees)
                extra = {"total_nodes": int(classifier.totalNumNodes)}
            phase["fit"] = _seconds(t0)
            log.info("train: %s fitted in %.1f s (%d %s)", name, phase["fit"], iterations,
                     "iterations" if name == "lr" else "trees")

            from pyspark.ml import PipelineModel

            t0 = time.time()
            sc.setJobDescription(f"gap-spark train: save {name}")
            pipeline_model = PipelineModel(stages=[*feature_model.stages, classifier])
            target = model_dir(paths, name)
            _save_model(pipeline_model, fs.to_spark_uri(target), overwrite)
            phase["save"] = _seconds(t0)
            log.info("train: %s saved to %s", name, target)

            results[name] = {
                "params": {**model_params, "pca_k": k, "features_col": features_col},
                "rows": rows,
                "iterations": iterations,
                "objective_history": history,
                "seconds": phase,
                "path": target,
                **extra,
            }
            if tuning:
                results[name]["tuning"] = tuning
    finally:
        if level is not None:
            frame.unpersist()
        sc.setJobDescription(None)

    summary_path = paths.run_file("train_summary.json")
    previous = fs.read_json(summary_path) if fs.exists(summary_path) else {}
    models = {name: entry for name, entry in (previous.get("models") or {}).items()
              if name not in results and fs.exists(model_dir(paths, name))
              and previous.get("dataset", {}).get("fingerprint") == manifest.get("fingerprint")}
    models.update(results)
    summary = {
        "models": models,
        "dim": dim,
        "classes": classes,
        "dataset": manifest_summary(manifest),
        "missing_classes": missing,
        "training_data": {"rows": rows, "partitions": partitions, "storage_level": str(cfg["storage_level"]),
                          "prepare_seconds": prepare_seconds},
        "environment": {"blas": blas, "default_parallelism": sc.defaultParallelism,
                        "spark_version": spark.version},
        "seconds": _seconds(started),
    }
    fs.write_json(summary_path, summary)
    log.info("train: done in %.1f s; summary %s", summary["seconds"], summary_path)
    return summary
