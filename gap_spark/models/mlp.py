"""A one-hidden-layer perceptron (MLlib MultilayerPerceptronClassifier) on the standardised features.

Why this model. The features are the penultimate layer of a strong image model (D = 1024), so a linear
softmax on them is already close to the best; what a second model can add is a non-linear boundary
without giving up the high-dimensional input. Of MLlib's classifiers:

- the random forest needs PCA inputs (its per-node statistics grow with K x bins x features), so it
  never sees most of the directions LR uses;
- one-vs-rest linear models (``OneVsRest`` with ``LinearSVC`` or binary LR) fit K = 1000 separate models,
  a pass over the data each, per iteration: three orders of magnitude more passes than one multinomial fit;
- gradient-boosted trees and factorisation machines are binary-only in MLlib; naive Bayes assumes
  independent (non-negative) features.

``MultilayerPerceptronClassifier`` (sigmoid hidden units, softmax output, L-BFGS) reads all D standardised
features, is trained with the same optimiser as LR, and costs about ``6 n H (D + K)`` flops per
iteration, against LR's ``4 n D K``: with ``H = 256`` that is under 40% of an LR evaluation at D = 1024,
K = 1000.

MLlib puts no penalty on its weights, so the training loss keeps falling after the held-out loss turns
up: the selection slice stops it (``train.mlp.patience``; :mod:`gap_spark.models.stopping`) and the
round with the lowest log loss on the slice is kept. ``train.mlp.hidden`` (H) is chosen on the slice too
(``benchmarks/select_defaults.py``; ``--tune`` searches ``train.tune.mlp_hidden``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gap_spark.core.progress import FitProgress
from gap_spark.models.base import FitContext, FitResult, ModelSpec
from gap_spark.models.stopping import StopRule, fit_in_rounds

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.ml.classification import MultilayerPerceptronClassifier
    from pyspark.ml.param import ParamMap
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import MLPSettings, TrainSettings, TuneSettings

__all__ = ["SPEC", "MultilayerPerceptronSpec", "mlp_estimator", "mlp_layers", "mlp_params"]

log = logging.getLogger(__name__)


def mlp_params(mlp: "MLPSettings") -> dict[str, Any]:
    """MLlib ``MultilayerPerceptronClassifier`` parameters from the ``train.mlp`` settings.

    ``layers`` needs the data's shape and is filled in by :func:`mlp_layers` (``hidden`` holds H until then).

    Parameters
    ----------
    mlp : MLPSettings
        ``config.settings.train.mlp``.

    Returns
    -------
    dict
        ``hidden``, ``maxIter``, ``tol``, ``blockSize``, ``stepSize``, ``seed``, ``solver``.
    """
    return {"hidden": mlp.hidden, "maxIter": mlp.max_iter, "tol": mlp.tol, "blockSize": mlp.block_size,
            "stepSize": mlp.step_size, "seed": mlp.seed, "solver": "l-bfgs"}


def mlp_layers(params: dict[str, Any], input_dim: int, classes: int) -> dict[str, Any]:
    """The params with ``layers = [input, H, K]`` in place of ``hidden``.

    Parameters
    ----------
    params : dict
        From :func:`mlp_params` (``hidden``) or already shaped (``layers``: its H is kept).
    input_dim : int
        Width of the features column (D, or the PCA components).
    classes : int
        K.

    Returns
    -------
    dict
    """
    out = dict(params)
    hidden = out.pop("hidden", None)
    if hidden is None:
        hidden = out["layers"][1]
    out["layers"] = [int(input_dim), int(hidden), int(classes)]
    return out


def mlp_estimator(params: dict[str, Any], features_col: str) -> "MultilayerPerceptronClassifier":
    """A ``MultilayerPerceptronClassifier`` reading ``features_col`` and ``label``.

    Parameters
    ----------
    params : dict
        Shaped params (:func:`mlp_layers`), possibly updated by tuning; ``hidden`` is ignored.
    features_col : str

    Returns
    -------
    pyspark.ml.classification.MultilayerPerceptronClassifier
    """
    from pyspark.ml.classification import MultilayerPerceptronClassifier

    mllib = {k: v for k, v in params.items() if k != "hidden"}
    return MultilayerPerceptronClassifier(featuresCol=features_col, labelCol="label", **mllib)


def _round_fit(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
               heartbeat_s: float) -> Callable[[Any, int], tuple[Any, list[float], int]]:
    """One round: ``iterations`` of L-BFGS from ``start``'s weights (MLlib's ``initialWeights``) or a seeded start."""
    def fit_round(start: Any, iterations: int) -> tuple[Any, list[float], int]:
        round_params = {**params, "maxIter": iterations}
        if start is not None:
            round_params["initialWeights"] = start.weights
        with FitProgress(spark, "mlp", heartbeat_s, track_lbfgs=True):
            model = mlp_estimator(round_params, features_col).fit(frame)
        summary = model.summary
        if callable(summary):  # pyspark 4.x declares the perceptron's summary a method, not a property
            summary = summary()
        history = [float(v) for v in summary.objectiveHistory]
        return model, history, max(0, len(history) - 1)

    return fit_round


class MultilayerPerceptronSpec(ModelSpec):
    """One hidden layer of ``train.mlp.hidden`` sigmoid units, stopped on the selection slice."""

    pca_key = "train.mlp.pca_k"

    def params(self, settings: "TrainSettings") -> dict[str, Any]:
        return mlp_params(settings.mlp)

    def pca_k(self, settings: "TrainSettings") -> int | None:
        return settings.mlp.pca_k

    def shaped(self, params: dict[str, Any], input_dim: int, classes: int) -> dict[str, Any]:
        return mlp_layers(params, input_dim, classes)

    def estimator(self, params: dict[str, Any], features_col: str) -> "Estimator[Any]":
        return mlp_estimator(params, features_col)

    def grid(self, estimator: "Estimator[Any]", tune: "TuneSettings") -> list["ParamMap"]:
        from pyspark.ml.tuning import ParamGridBuilder

        layers = list(estimator.getOrDefault("layers"))
        return (ParamGridBuilder()
                .addGrid(estimator.getParam("layers"), [[layers[0], int(h), layers[-1]] for h in tune.mlp_hidden])
                .build())

    def fit(self, frame: "DataFrame", params: dict[str, Any], features_col: str, ctx: FitContext) -> FitResult:
        mlp = ctx.settings.mlp
        rule = StopRule(budget=int(params["maxIter"]), check_every=mlp.check_every, tol=float(params["tol"]),
                        patience=mlp.patience)
        result = fit_in_rounds(_round_fit(ctx.spark, frame, params, features_col, ctx.heartbeat_s), rule,
                               score=ctx.scorer(), label="mlp")
        return FitResult(classifier=result.model, iterations=result.iterations,
                         objective_history=result.objective_history,
                         extras={"stopped": result.stopped, "rounds": result.rounds, "stop_rule": rule.as_dict(),
                                 "hidden": int(params["layers"][1])})


SPEC = MultilayerPerceptronSpec(name="mlp", title="multilayer perceptron")
