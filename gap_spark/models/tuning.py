"""The grid search: TrainValidationSplit over a model's grid, on a fraction of the training rows."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.sql import DataFrame

    from gap_spark.core.settings import TuneSettings
    from gap_spark.models.base import ModelSpec

__all__ = ["VALIDATION_METRIC", "tune_model"]

# The column of the results table that ranks the grid points.
VALIDATION_METRIC = "validation_accuracy"


def tune_model(spec: "ModelSpec", estimator: "Estimator[Any]", frame: "DataFrame",
               tune: "TuneSettings") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Grid search with TrainValidationSplit on a fraction of the (transformed) training frame.

    Parameters
    ----------
    spec : ModelSpec
        The model, whose :meth:`~gap_spark.models.base.ModelSpec.grid` spans the search.
    estimator : Estimator
        Configured with the untuned parameters.
    frame : DataFrame
        Training rows with the classifier's features column and the label (with metadata).
    tune : TuneSettings
        ``config.settings.train.tune``; its seed seeds the sample and the split.

    Returns
    -------
    (dict, list of dict)
        The best parameters (MLlib names) and the results table, one row per grid point, best first.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import TrainValidationSplit

    grid = spec.grid(estimator, tune)
    sample = frame.sample(withReplacement=False, fraction=tune.fraction, seed=tune.seed) if tune.fraction < 1.0 \
        else frame
    evaluator = MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction", metricName="accuracy")
    tvs = TrainValidationSplit(estimator=estimator, estimatorParamMaps=grid, evaluator=evaluator,
                               trainRatio=tune.train_ratio, parallelism=tune.parallelism, seed=tune.seed)
    model = tvs.fit(sample)
    table = []
    for param_map, metric in zip(grid, model.validationMetrics):
        row: dict[str, Any] = {param.name: value for param, value in param_map.items()}
        row[VALIDATION_METRIC] = float(metric)
        table.append(row)
    table.sort(key=lambda r: -r[VALIDATION_METRIC])
    best = {k: v for k, v in table[0].items() if k != VALIDATION_METRIC}
    return best, table
