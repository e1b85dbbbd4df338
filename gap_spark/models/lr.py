"""Multinomial logistic regression (MLlib LogisticRegression), optionally warm-started from a sample fit.

When the fit stops
------------------
``train.lr.max_iter`` is a budget. The fit runs in rounds (:mod:`gap_spark.models.stopping`) and stops
when L-BFGS converges inside a round, when the objective's relative change per iteration over a round
falls under ``train.lr.tol``, when the log loss on the selection slice has not improved for
``train.lr.patience`` rounds, or at the budget.

Inside one MLlib fit, ``tol`` goes to Breeze's L-BFGS (``new BreezeLBFGS(maxIter, 10, tol)``), whose
``FirstOrderMinimizer.defaultConvergenceCheck(maxIter, tol, relative = true, fvalMemory = 20)`` stops at
the first of (read from breeze 2.1.0, the version in pyspark's jars):

- ``maxIterationsReached``: ``iter >= maxIter``;
- ``functionValuesConverged``: ``|f_k - max(window)| <= tol * |f_0|``, where ``window`` holds the last 20
  objective values *and starts as* ``[+inf]``. The +inf only leaves the window after 20 iterations, so
  this check can never fire before iteration 20 of a fit; after that it compares the current value
  with the one 19 iterations back (the objective falls monotonically), relative to the objective at the
  fit's *start* ``f_0`` (log K from a cold start, far less from a warm one);
- ``gradientConverged``: ``||grad f_k||_2 <= max(tol * |f_k|, 1e-8)``: the gradient over the
  ``K x (D + 1)`` coefficients of the standardised problem, so its scale grows with ``sqrt(K D)`` and
  one ``tol`` does not mean the same at D = 32 and D = 1024;
- ``searchFailed``: the line search failed twice.

Breeze's per-iteration log line ``Val and Grad Norm: f (rel: r) |g|`` gives ``r = (f_{k-1} - f_k) /
max(|f_{k-1}|, |f_k|)``: the one-off improvement that this module's own rule averages over a round.
Because of the 20-iteration window, rounds shorter than 20 iterations stop only by this module's rule.

Where the time goes (measured with benchmarks/bench_train.py, 2 cores, shared machine): each L-BFGS
evaluation is two dense products of the rows with the K x D coefficients (4 n D K flops). With no
``libblas.so.3`` here, MLlib uses netlib's JDK Vector API path (``VectorBLAS``, about 7 GFLOP/s a core on
these shapes; the plain Java path ``F2jBLAS`` gave 0.8). With OpenBLAS as ``libblas.so.3`` (one thread
per task, two task slots) the same fits ran 2.1-2.5x faster per iteration
(``benchmarks/bench_lr_rate.py``). At 20k x 1024 x 1000 with low load: 4.0 s per iteration against
scikit-learn's 1.3 (ratio 3.1); about 1.2 evaluations per iteration, but the first iteration's line
search takes about five, and two passes (statistics, blocks) precede it: the first iteration arrives
after about 21 s. Each round pays those passes again. ``maxBlockSizeInMB``: 0.25 MB doubles the cost,
1-16 MB are within noise; 1 partition per core is cheapest on small data. Cost is linear in rows.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gap_spark.core.progress import FitProgress
from gap_spark.core.session import is_connect, job_description, warn_once
from gap_spark.models.base import FitContext, FitResult, ModelSpec
from gap_spark.models.stopping import RoundsResult, Scorer, StopRule, fit_in_rounds

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
    from pyspark.ml.param import ParamMap
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import LRSettings, TrainSettings, TuneSettings

__all__ = ["SPEC", "LRFit", "LogisticRegressionSpec", "fit_lr", "lr_estimator", "lr_params", "lr_stop_rule",
           "warm_start_params"]

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


def lr_stop_rule(params: dict[str, Any], check_every: int, patience: int) -> StopRule:
    """The stopping rule of a fit with these MLlib params (the budget is ``maxIter``, the rule's ``tol``)."""
    return StopRule(budget=int(params["maxIter"]), check_every=int(check_every), tol=float(params["tol"]),
                    patience=int(patience))


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


@dataclass(frozen=True)
class LRFit:
    """A fitted LR and how it stopped (``warm`` is None for a cold start)."""

    model: "LogisticRegressionModel"
    result: RoundsResult
    warm: dict[str, Any] | None


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


def _round_fit(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str, label: str,
               heartbeat_s: float) -> Callable[[Any, int], tuple[Any, list[float], int]]:
    """One round: an MLlib fit of ``iterations`` from ``start`` (MLlib's ``setInitialModel``) or cold."""
    def fit_round(start: Any, iterations: int) -> tuple[Any, list[float], int]:
        estimator = lr_estimator({**params, "maxIter": iterations}, features_col)
        if start is not None:
            # setInitialModel is private[spark] in Scala, so public in the JVM and not wrapped in Python;
            # it is how MLlib itself warm-starts. MLlib checks the coefficients' shape.
            estimator._java_obj.setInitialModel(start._java_obj)  # type: ignore[union-attr]  # noqa: SLF001
        model, history = _fit_once(spark, estimator, frame, label, heartbeat_s)
        return model, history, int(model.summary.totalIterations)

    return fit_round


def _warm_start(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
                heartbeat_s: float, warm_start: dict[str, int], total: int, check_every: int, patience: int,
                score: Scorer) -> tuple["LogisticRegressionModel", dict[str, Any]]:
    """Fit a random sample by the same rules (budget ``warm_start["max_iter"]``); the model and its record."""
    from pyspark import StorageLevel

    t0 = time.time()
    # 5% over the target so a Bernoulli sample rarely falls short; the exact count is logged.
    fraction = min(1.0, 1.05 * warm_start["sample_rows"] / total)
    sample = frame.sample(withReplacement=False, fraction=fraction, seed=warm_start["seed"])
    sample = sample.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sample_rows = sample.count()
        log.info("lr: warm start: a sample of %d rows, up to %d iterations", sample_rows, warm_start["max_iter"])
        rule = lr_stop_rule({**params, "maxIter": warm_start["max_iter"]}, check_every, patience)
        result = fit_in_rounds(_round_fit(spark, sample, params, features_col, "lr-sample", heartbeat_s), rule,
                               score=score, label="lr-sample")
    finally:
        sample.unpersist()
    info = {"sample_rows": int(sample_rows), "iterations": result.iterations, "stopped": result.stopped,
            "objective_history": result.objective_history, "rounds": result.rounds, "selection": result.selection,
            "seconds": _seconds(t0), "seed": warm_start["seed"]}
    log.info("lr: warm start fitted in %.1f s (%d iterations, stopped: %s); now all %d rows",
             info["seconds"], result.iterations, result.stopped, total)
    return result.model, info


def fit_lr(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
           heartbeat_s: float = 60.0, warm_start: dict[str, int] | None = None, rows: int | None = None,
           check_every: int | None = None, patience: int = 0, score: Scorer = None) -> LRFit:
    """Fit LR on every row of ``frame`` until the stopping rule says stop, optionally from a warm start.

    L-BFGS from a cold start spends many loss evaluations (each a full pass over the data) on its first
    iterations. A fit on a sample of ``warm_start["sample_rows"]`` rows, itself stopped by the same
    rules, gets there cheaply; the fit on all rows then starts from its coefficients. The final model
    is fitted on every row; the sample only chooses where the optimiser starts, and the first round on
    all rows always runs.

    Parameters
    ----------
    spark : SparkSession
    frame : DataFrame
        Label and standardised feature vectors (with the label metadata).
    params : dict
        From :func:`lr_params`; ``maxIter`` is the budget of iterations on all rows, ``tol`` the rule's.
    features_col : str
    heartbeat_s : float
        Seconds without news after which task progress is logged.
    warm_start : dict or None
        From :func:`warm_start_params`; None fits from MLlib's own start (class-prior intercepts).
    rows : int or None
        Rows in ``frame`` when known (saves a count).
    check_every : int or None
        Iterations per round; None: one round of the whole budget (Breeze's check only).
    patience : int
        Rounds without a lower log loss on the selection slice before stopping; 0 = off.
    score : callable or None
        The selection slice's metrics of a model (``{"rows", "accuracy", "log_loss"}``).

    Returns
    -------
    LRFit
    """
    check_every = int(check_every or max(1, params["maxIter"]))
    budget = max(1, int(params["maxIter"]))
    if is_connect(spark) and (check_every < budget or warm_start is not None):  # no JVM object to warm-start
        warn_once("lr-rounds", "Spark Connect: LR fits its whole budget (%d iterations) in one go, without the warm "
                  "start or the patience rule's rounds (they continue a fit through the JVM's setInitialModel)",
                  budget)
        check_every, warm_start = budget, None
    initial, warm_info = None, None
    described: AbstractContextManager[Any] = contextlib.nullcontext()
    if warm_start is not None:
        total = rows if rows is not None else frame.count()
        if warm_start["sample_rows"] >= total:
            log.info("lr: warm start skipped: the sample (%d rows) would be the whole split (%d rows)",
                     warm_start["sample_rows"], total)
        else:
            with job_description(spark, f"gap-spark train: warm-start lr on ~{warm_start['sample_rows']} rows"):
                initial, warm_info = _warm_start(spark, frame, params, features_col, heartbeat_s, warm_start, total,
                                                 check_every, patience, score)
            described = job_description(spark, f"gap-spark train: fit lr on all {total} rows")
    with described:
        result = fit_in_rounds(_round_fit(spark, frame, params, features_col, "lr", heartbeat_s),
                               lr_stop_rule(params, check_every, patience), score=score, initial=initial, label="lr")
    return LRFit(model=result.model, result=result, warm=warm_info)


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
        lr = ctx.settings.lr
        fitted = fit_lr(ctx.spark, frame, params, features_col, ctx.heartbeat_s,
                        warm_start=warm_start_params(lr), rows=ctx.rows, check_every=lr.check_every,
                        patience=lr.patience, score=ctx.scorer())
        result = fitted.result
        extras = {"warm_start": fitted.warm, "stopped": result.stopped, "rounds": result.rounds,
                  "stop_rule": lr_stop_rule(params, lr.check_every, lr.patience).as_dict()}
        return FitResult(classifier=fitted.model, iterations=result.iterations,
                         objective_history=result.objective_history, extras=extras,
                         phases={"warm_start": fitted.warm["seconds"]} if fitted.warm else {})


SPEC = LogisticRegressionSpec(name="lr", title="logistic regression")
