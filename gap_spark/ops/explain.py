"""The explain analysis of one pair of sets, composed from its parts (no I/O, no config look-ups).

1. :func:`fit_feature_ratio`: the cross-fitted val-vs-v2 classifier on the features (one per run);
2. :func:`model_ratio`: per model, the density ratio on val's rows (the features' log-odds, stacked with
   the model's scores when ``explain.domain_scores``), clipped, with its diagnostics;
3. :func:`explain_model`: per model, the gap's parts, the per-class table and the label-free estimates
   with their intervals (:mod:`gap_spark.ops.explain_tables`, :mod:`gap_spark.ops.decompose`,
   :mod:`gap_spark.ops.label_free`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gap_spark.ops.decompose import PARTS, gap_parts, per_class_table, summary
from gap_spark.ops.density import (
    DOMAIN_COL,
    cross_fitted_logits,
    domain_rows,
    ratio_frame,
    stacked_logits,
    weight_diagnostics,
)
from gap_spark.ops.explain_tables import score_edges, scored_rows, set_tables
from gap_spark.ops.label_free import estimates, estimator_summary

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

    from gap_spark.core.settings import ExplainSettings

__all__ = ["BOOTSTRAP_NOTE", "FeatureRatio", "explain_model", "fit_feature_ratio", "model_ratio"]

BOOTSTRAP_NOTE = {
    "resampled": "the rows of val and of v2, independently (Poisson(1) weights drawn as in evaluate)",
    "fixed": "the models, the density ratio and the score grid",
    "recomputed": "per-class accuracies, v2's class frequencies, the ATC thresholds and the calibration map",
}


@dataclass(frozen=True)
class FeatureRatio:
    """The features' cross-fitted domain classifier: out-of-fold log-odds of every row, and the fold models."""

    logits: "DataFrame"  # row_id, domain, fold, logit (checkpointed)
    models: list["PipelineModel"]
    n_val: int
    n_v2: int
    auc: float


def _auc(logits: "DataFrame") -> float:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    evaluator = BinaryClassificationEvaluator(rawPredictionCol="logit", labelCol=DOMAIN_COL,
                                              metricName="areaUnderROC", numBins=0)
    return float(evaluator.evaluate(logits))


def fit_feature_ratio(val: "DataFrame", v2: "DataFrame", settings: "ExplainSettings") -> FeatureRatio:
    """Cross-fit the val-vs-v2 classifier on all rows of both sets (``explain.domain_*``).

    Parameters
    ----------
    val, v2 : DataFrame
        Dataset rows (``row_id, features``).
    settings : ExplainSettings

    Returns
    -------
    FeatureRatio
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    data = domain_rows(val, v2, settings.domain_folds, settings.seed).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {int(r[DOMAIN_COL]): int(r["count"]) for r in data.groupBy(DOMAIN_COL).count().collect()}
        logits, models = cross_fitted_logits(data, settings.domain_folds, settings.domain_pca_k,
                                             settings.domain_reg_param, settings.domain_max_iter)
        logits = logits.localCheckpoint()
    finally:
        data.unpersist()
    return FeatureRatio(logits.select("row_id", F.col(DOMAIN_COL), "fold", "logit"), models, counts.get(0, 0),
                        counts.get(1, 0), _auc(logits))


def model_ratio(features: FeatureRatio, val_pred: "DataFrame", v2_pred: "DataFrame",
                settings: "ExplainSettings") -> tuple["DataFrame", dict[str, Any]]:
    """val's density ratios for one model, and their diagnostics.

    Parameters
    ----------
    features : FeatureRatio
    val_pred, v2_pred : DataFrame
        The model's saved predictions (``row_id, confidence, entropy``).
    settings : ExplainSettings
        ``domain_scores`` (stack the model's scores), ``clip_quantile``.

    Returns
    -------
    (DataFrame, dict)
        ``row_id, ratio_raw, ratio`` for val's rows (checkpointed), and ``inputs`` (``features`` or
        ``features+scores``), ``auc`` (out of fold) and :func:`~gap_spark.ops.density.weight_diagnostics`.
    """
    from pyspark.sql import functions as F

    logits, inputs, auc = features.logits, "features", features.auc
    if settings.domain_scores:
        scores = val_pred.select("row_id", F.lit(0.0).alias(DOMAIN_COL), "confidence", "entropy").unionByName(
            v2_pred.select("row_id", F.lit(1.0).alias(DOMAIN_COL), "confidence", "entropy"))
        logits = stacked_logits(features.logits, scores, settings.domain_folds, settings.domain_reg_param,
                                settings.domain_max_iter, settings.domain_score_bins)
        inputs, auc = "features+scores", _auc(logits)
    ratios, threshold = ratio_frame(logits, features.n_val, features.n_v2, settings.clip_quantile)
    ratios = ratios.localCheckpoint()
    return ratios, {"inputs": inputs, "auc": auc, **weight_diagnostics(ratios, threshold)}


def explain_model(val_pred: "DataFrame", v2_pred: "DataFrame", ratios: "DataFrame", classes: int,
                  settings: "ExplainSettings", feature_ratios: "DataFrame | None" = None) -> dict[str, Any]:
    """The gap's parts, the per-class table and the label-free estimates of one model, with intervals.

    Parameters
    ----------
    val_pred, v2_pred : DataFrame
        The model's predictions (the prediction contract, with ``entropy``).
    ratios : DataFrame
        val's ``row_id, ratio`` (:func:`model_ratio`).
    classes : int
        K.
    settings : ExplainSettings
        ``bootstrap_replicates``, ``seed``, ``score_bins``, ``calibration_bins``, ``top_classes``.
    feature_ratios : DataFrame, optional
        val's ``row_id, ratio`` from the features alone, when ``ratios`` also reads the model's scores: the
        covariate and residual parts are then computed with it too (``features_only``), on the same
        bootstrap draws, to show what the features alone see of the shift.

    Returns
    -------
    dict
        ``accuracy`` (val, v2, the label- and importance-reweighted val accuracies, fractions with
        intervals), ``parts`` (gap, label_mix, covariate, residual in percentage points, val minus v2),
        ``per_class``, ``estimators`` (each :func:`~gap_spark.ops.label_free.estimator_summary`) and,
        with ``feature_ratios``, ``features_only`` (``inputs``, ``importance_weighted`` accuracy, and the
        ``covariate`` and ``residual`` parts in points).
    """
    val_rows = scored_rows(val_pred, ratios).persist()
    v2_rows = scored_rows(v2_pred).persist()
    b, seed = settings.bootstrap_replicates, settings.seed
    try:
        edges = score_edges(val_rows, settings.score_bins)
        val = set_tables(val_rows, edges, classes, b, seed, "val")
        v2 = set_tables(v2_rows, edges, classes, b, seed, "v2")
    finally:
        val_rows.unpersist()
        v2_rows.unpersist()
    parts = gap_parts(val, v2)
    found = estimates(val, v2, parts["importance_weighted_accuracy"], settings.calibration_bins)
    accuracy_keys = ("val_accuracy", "v2_accuracy", "label_reweighted_accuracy", "importance_weighted_accuracy")
    out = {
        "accuracy": {k.removesuffix("_accuracy"): summary(parts[k]) for k in accuracy_keys},
        "parts": {k: summary(parts[k], 100.0) for k in ("gap", *PARTS)},
        "per_class": per_class_table(val, v2, settings.top_classes),
        "estimators": {name: estimator_summary(values, parts["v2_accuracy"]) for name, values in found.items()},
        "score_bins": {name: len(e) + 1 for name, e in edges.items()},
    }
    if feature_ratios is not None:
        alone = gap_parts(set_tables(scored_rows(val_pred, feature_ratios), edges, classes, b, seed, "val"), v2)
        out["features_only"] = {"inputs": "features",
                                "importance_weighted": summary(alone["importance_weighted_accuracy"]),
                                **{k: summary(alone[k], 100.0) for k in ("covariate", "residual")}}
    return out
