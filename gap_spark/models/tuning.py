"""The grid search: every grid point fitted on (a sample of) train and scored on the selection slice.

Each point goes through the model's own :meth:`~gap_spark.models.base.ModelSpec.fit` (its warm start and
stopping rules included) on ``train.tune.fraction`` of the training rows, and is scored on
``split=select``: accuracy first, log loss to break ties. val and v2 are never read. (MLlib's
TrainValidationSplit would carve its own random validation part out of train instead, and fit each point
with a bare ``estimator.fit``.)
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from gap_spark.core.settings import TuneSettings
    from gap_spark.models.base import FitContext, ModelSpec

__all__ = ["SELECTION_METRIC", "rank_key", "tune_model"]

log = logging.getLogger(__name__)

# The column of the results table that ranks the grid points (ties: the lower select_log_loss).
SELECTION_METRIC = "select_accuracy"


def rank_key(row: dict[str, Any]) -> tuple[float, float]:
    """Sort key of a results row: higher accuracy on select first, then lower log loss (None last)."""
    accuracy, loss = row.get(SELECTION_METRIC), row.get("select_log_loss")
    return (-(accuracy if accuracy is not None else -math.inf), loss if loss is not None else math.inf)


def tune_model(spec: "ModelSpec", params: dict[str, Any], frame: "DataFrame", features_col: str,
               ctx: "FitContext", tune: "TuneSettings") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Grid search over ``spec.grid``: fit each point on a sample of ``frame``, score it on the selection slice.

    Parameters
    ----------
    spec : ModelSpec
        The model, whose grid spans the search.
    params : dict
        The untuned MLlib params (each point overrides some of them).
    frame : DataFrame
        Training rows with the classifier's features column and the label (with metadata).
    features_col : str
    ctx : FitContext
        Its ``select`` frame (the selection slice through the same feature transform) scores the points.
    tune : TuneSettings
        ``config.settings.train.tune``; its seed seeds the sample.

    Returns
    -------
    (dict, list of dict)
        The best point's params (MLlib names) and the results table, one row per point, best first.
    """
    from pyspark import StorageLevel

    score = ctx.scorer()
    if score is None:
        raise ValueError("tune_model needs the selection slice (ctx.select)")
    grid = spec.grid(spec.estimator(params, features_col), tune)
    sample = frame.sample(withReplacement=False, fraction=tune.fraction, seed=tune.seed) if tune.fraction < 1.0 \
        else frame
    sample = sample.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = sample.count()
        point_ctx = dataclasses.replace(ctx, rows=rows)
        table = []
        for i, param_map in enumerate(grid, start=1):
            point = {param.name: value for param, value in param_map.items()}
            t0 = time.time()
            result = spec.fit(sample, {**params, **point}, features_col, point_ctx)
            metrics = score(result.classifier)
            table.append({**point, SELECTION_METRIC: metrics["accuracy"], "select_log_loss": metrics["log_loss"],
                          "iterations": result.iterations, "seconds": round(time.time() - t0, 3)})
            log.info("%s grid point %d/%d %s on %d rows: accuracy %.4f on the selection slice", spec.name, i,
                     len(grid), point, rows, metrics["accuracy"] or float("nan"))
    finally:
        sample.unpersist()
    table.sort(key=rank_key)
    names = {param.name for param_map in grid for param in param_map}
    best = {k: v for k, v in table[0].items() if k in names}
    return best, table
