"""Multinomial logistic regression (MLlib LogisticRegression), optionally warm-started from a sample fit.

Where the time goes (measured with benchmarks/bench_train.py, 2 cores, shared machine): each L-BFGS
evaluation is two dense products of the rows with the K x D coefficients (4 n D K flops). With no
``libblas.so.3`` here, MLlib uses netlib's JDK Vector API path (``VectorBLAS``, about 7 GFLOP/s a core
on these shapes; the plain Java path ``F2jBLAS`` gave 0.8). At 20k x 1024 x 1000 with low load: 4.0 s
per iteration against scikit-learn's 1.3 (ratio 3.1); about 1.2 evaluations per iteration, but the first
iteration's line search takes about five, and two passes (statistics, blocks) precede it: the first
iteration arrives after about 21 s. ``maxBlockSizeInMB``: 0.25 MB doubles the cost, 1-16 MB are within
noise; 1 partition per core is cheapest on small data. Cost is linear in rows, so full scale is about
4.5 min per iteration.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark.core.progress import FitProgress
from gap_spark.core.session import job_description
from gap_spark.models.base import FitContext, FitResult, ModelSpec

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
    from pyspark.ml.param import ParamMap
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import LRSettings, TrainSettings, TuneSettings

__all__ = ["SPEC", "LogisticRegressionSpec", "fit_lr", "lr_estimator", "lr_params", "warm_start_params"]

log = logging.getLogger(__name__)


def lr_params(lr: "LRSettings") -> dict[str, Any]:
    """MLlib ``LogisticRegression`` parameters from the ``train.lr`` settings.

    Parameters
    ----------
    lr : LRSettings
        ``config.settings.train.lr``.

    Returns
    -------
    dict
        ``regParam``, ``elasticNetParam``, ``maxIter``, ``tol``, ``maxBlockSizeInMB``.
    """
    return {"regParam": lr.reg_param, "elasticNetParam": lr.elastic_net_param, "maxIter": lr.max_iter,
            "tol": lr.tol, "maxBlockSizeInMB": lr.max_block_size_mb}


def warm_start_params(lr: "LRSettings") -> dict[str, int] | None:
    """The ``train.lr.warm_start`` settings as ``{"sample_rows", "max_iter", "seed"}``, or None when off.

    Parameters
    ----------
    lr : LRSettings
        ``config.settings.train.lr``.

    Returns
    -------
    dict or None
    """
    warm = lr.warm_start
    if not warm.enabled:
        return None
    return {"sample_rows": int(warm.sample_rows or 0), "max_iter": warm.max_iter, "seed": warm.seed}


def lr_estimator(params: dict[str, Any], features_col: str) -> "LogisticRegression":
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


def _seconds(started: float) -> float:
    return round(time.time() - started, 3)


def _fit_once(spark: "SparkSession", estimator: "LogisticRegression", frame: "DataFrame", label: str,
              heartbeat_s: float) -> tuple["LogisticRegressionModel", list[float]]:
    with FitProgress(spark, label, heartbeat_s, track_lbfgs=True) as progress:
        model = estimator.fit(frame)
    history = [float(v) for v in model.summary.objectiveHistory]
    if not progress.losses:  # the hook was not available: at least show the curve now
        for i, loss in enumerate(history[1:], start=1):
            log.info("%s: iteration %d, loss %.6f", label, i, loss)
    return model, history


def _warm_start(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
                heartbeat_s: float, warm_start: dict[str, int],
                total: int) -> tuple["LogisticRegressionModel", dict[str, Any]]:
    """Fit ``warm_start["max_iter"]`` iterations on a random sample; the model and the summary's record."""
    from pyspark import StorageLevel

    t0 = time.time()
    # 5% over the target so a Bernoulli sample rarely falls short; the exact count is logged.
    fraction = min(1.0, 1.05 * warm_start["sample_rows"] / total)
    sample = frame.sample(withReplacement=False, fraction=fraction, seed=warm_start["seed"])
    sample = sample.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sample_rows = sample.count()
        log.info("lr: warm start: fitting %d iterations on a sample of %d rows", warm_start["max_iter"], sample_rows)
        sample_estimator = lr_estimator({**params, "maxIter": warm_start["max_iter"]}, features_col)
        initial, sample_history = _fit_once(spark, sample_estimator, sample, "lr-sample", heartbeat_s)
    finally:
        sample.unpersist()
    info = {"sample_rows": int(sample_rows), "iterations": int(initial.summary.totalIterations),
            "objective_history": sample_history, "seconds": _seconds(t0), "seed": warm_start["seed"]}
    log.info("lr: warm start fitted in %.1f s (loss on the sample %.4f); now all %d rows",
             info["seconds"], sample_history[-1], total)
    return initial, info


def fit_lr(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
           heartbeat_s: float = 60.0, warm_start: dict[str, int] | None = None,
           rows: int | None = None) -> tuple["LogisticRegressionModel", list[float], dict[str, Any] | None]:
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
            with job_description(spark, f"gap-spark train: warm-start lr on ~{warm_start['sample_rows']} rows"):
                initial, warm_info = _warm_start(spark, frame, params, features_col, heartbeat_s, warm_start, total)
            # MLlib's setInitialModel is private[spark] in Scala, so public in the JVM and not wrapped in
            # Python; it is how MLlib itself warm-starts. MLlib checks the coefficients' shape.
            estimator._java_obj.setInitialModel(initial._java_obj)  # type: ignore[union-attr]  # noqa: SLF001
            spark.sparkContext.setJobDescription(f"gap-spark train: fit lr on all {total} rows")
    model, history = _fit_once(spark, estimator, frame, "lr", heartbeat_s)
    return model, history, warm_info


class LogisticRegressionSpec(ModelSpec):
    """LR on the standardised features (``train.pca_k``, off by default), warm-started from a sample."""

    def params(self, settings: "TrainSettings") -> dict[str, Any]:
        return lr_params(settings.lr)

    def pca_k(self, settings: "TrainSettings") -> int | None:
        return settings.pca_k

    def estimator(self, params: dict[str, Any], features_col: str) -> "Estimator[Any]":
        return lr_estimator(params, features_col)

    def grid(self, estimator: "Estimator[Any]", tune: "TuneSettings") -> list["ParamMap"]:
        from pyspark.ml.tuning import ParamGridBuilder

        return (ParamGridBuilder()
                .addGrid(estimator.getParam("regParam"), list(tune.lr_reg_param))
                .addGrid(estimator.getParam("elasticNetParam"), list(tune.lr_elastic_net_param))
                .build())

    def fit(self, frame: "DataFrame", params: dict[str, Any], features_col: str, ctx: FitContext) -> FitResult:
        model, history, warm_info = fit_lr(ctx.spark, frame, params, features_col, ctx.heartbeat_s,
                                           warm_start=warm_start_params(ctx.settings.lr), rows=ctx.rows)
        return FitResult(classifier=model, iterations=int(model.summary.totalIterations),
                         objective_history=history, extras={"warm_start": warm_info},
                         phases={"warm_start": warm_info["seconds"]} if warm_info else {})


SPEC = LogisticRegressionSpec(name="lr", title="logistic regression")
