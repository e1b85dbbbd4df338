"""Metrics of one evaluated set, from its predictions (the columns of ``ops.predictions``).

- accuracy, weighted-F1 and log loss with ``MulticlassClassificationEvaluator``;
- top-5 accuracy, macro-F1, expected calibration error (ECE, equal-width confidence bins), mean
  confidence and the confident / unconfident accuracy split with Spark aggregations.

Every function is pure (``DataFrame -> DataFrame`` or ``DataFrame -> small dict``); only totals,
per-bin and per-class counts reach the driver.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "LOG_LOSS_EPS", "METRIC_KEYS", "EmptyPredictionsError", "accuracy_metrics", "calibration_bins",
    "class_counts", "confidence_bin", "evaluator_metrics", "expected_calibration_error", "macro_f1",
    "macro_f1_column", "reliability_table", "set_metrics",
]



class EmptyPredictionsError(GapSparkError):
    """A set of predictions holds no rows (the caller names the model and the split)."""


# MulticlassClassificationEvaluator's default clipping of the true-class probability in log loss.
LOG_LOSS_EPS = 1e-15
# The keys of one set's block in metrics.json, in order.
METRIC_KEYS = ("rows", "accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "log_loss", "ece",
               "mean_confidence", "confident_fraction", "confident_accuracy", "unconfident_accuracy",
               "reliability")


def confidence_bin(confidence: Column, bins: int) -> Column:
    """Equal-width bin of a confidence in [0, 1]: ``min(floor(c * bins), bins - 1)``.

    Bin ``b`` holds ``b / bins <= c < (b + 1) / bins``; the last bin also holds ``c = 1``.
    """
    return F.least(F.floor(confidence * F.lit(float(bins))), F.lit(bins - 1)).cast("int")


def evaluator_metrics(pred_df: "DataFrame") -> dict[str, float]:
    """Accuracy, weighted-F1 and log loss from ``MulticlassClassificationEvaluator``.

    Log loss depends only on the probability of the true class, so the evaluator reads a one-element
    probability vector ``[true_prob]`` with the label 0: the same ``-log(max(p_true, 1e-15))``
    averaged over rows, without keeping the K-wide probability vectors.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame`.

    Returns
    -------
    dict
        ``accuracy``, ``weighted_f1``, ``log_loss``.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.functions import array_to_vector

    labelled = pred_df.select(F.col("label").cast("double").alias("label"),
                              F.col("prediction").cast("double").alias("prediction"))
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(labelled)
    weighted_f1 = MulticlassClassificationEvaluator(metricName="f1").evaluate(labelled)
    true_class = pred_df.select(F.lit(0.0).alias("label"), F.lit(0.0).alias("prediction"),
                                array_to_vector(F.array(F.col("true_prob").cast("double"))).alias("probability"))
    log_loss = MulticlassClassificationEvaluator(
        metricName="logLoss", eps=LOG_LOSS_EPS,  # type: ignore[arg-type]  # the annotation omits "logLoss"
    ).evaluate(true_class)
    return {"accuracy": float(accuracy), "weighted_f1": float(weighted_f1), "log_loss": float(log_loss)}


def class_counts(pred_df: "DataFrame") -> "DataFrame":
    """Per class: rows with that true label, how many were right, and how often it was predicted.

    Parameters
    ----------
    pred_df : DataFrame
        Has ``label`` and ``prediction``.

    Returns
    -------
    DataFrame
        ``label int, n long, correct long, predicted long`` for every class that is a label or a
        prediction at least once.
    """
    both = pred_df.select(F.inline(F.array(
        F.struct(F.col("label").alias("cls"), F.lit(1).alias("n"),
                 (F.col("prediction") == F.col("label")).cast("int").alias("correct"), F.lit(0).alias("predicted")),
        F.struct(F.col("prediction").alias("cls"), F.lit(0).alias("n"), F.lit(0).alias("correct"),
                 F.lit(1).alias("predicted")),
    )))
    return both.groupBy(F.col("cls").alias("label")).agg(
        F.sum("n").cast("long").alias("n"), F.sum("correct").cast("long").alias("correct"),
        F.sum("predicted").cast("long").alias("predicted"))


def macro_f1_column(true_n: Column, true_positive: Column, predicted_n: Column) -> Column:
    """Per-class F1 = 2 TP / (n_true + n_predicted); null for a class that is neither."""
    denominator = true_n + predicted_n
    return F.when(denominator > 0, 2.0 * true_positive / denominator)


def macro_f1(counts_df: "DataFrame") -> float:
    """Macro-F1 from :func:`class_counts`: the mean F1 over classes that occur as label or prediction.

    This is scikit-learn's ``f1_score(average="macro")`` with its default label set.
    """
    row = counts_df.agg(F.avg(macro_f1_column(F.col("n"), F.col("correct"), F.col("predicted"))).alias("f1")).first()
    return float(row["f1"]) if row and row["f1"] is not None else float("nan")


def calibration_bins(pred_df: "DataFrame", bins: int) -> "DataFrame":
    """Counts per equal-width confidence bin (only bins that hold rows).

    Parameters
    ----------
    pred_df : DataFrame
        Has ``label``, ``prediction`` and ``confidence``.
    bins : int
        Number of equal-width bins over [0, 1].

    Returns
    -------
    DataFrame
        ``bin int, count long, correct long, confidence_sum double``.
    """
    return pred_df.groupBy(confidence_bin(F.col("confidence"), bins).alias("bin")).agg(
        F.count(F.lit(1)).alias("count"),
        F.sum((F.col("prediction") == F.col("label")).cast("long")).alias("correct"),
        F.sum(F.col("confidence").cast("double")).alias("confidence_sum"))


def reliability_table(bin_rows: Iterable[Any], bins: int) -> list[dict[str, Any]]:
    """All ``bins`` bins, empty ones included, from the rows of :func:`calibration_bins`.

    Parameters
    ----------
    bin_rows : iterable of Row or mapping
        ``bin, count, correct, confidence_sum`` per non-empty bin.
    bins : int

    Returns
    -------
    list of dict
        ``bin_lower, bin_upper, count, accuracy, confidence`` per bin (accuracy and confidence are
        None for an empty bin).
    """
    by_bin = {int(r["bin"]): r for r in bin_rows}
    table = []
    for b in range(bins):
        row = by_bin.get(b)
        count = int(row["count"]) if row else 0
        accuracy = confidence = None
        if row is not None and count:
            accuracy = float(row["correct"]) / count
            confidence = float(row["confidence_sum"]) / count
        table.append({"bin_lower": b / bins, "bin_upper": (b + 1) / bins, "count": count,
                      "accuracy": accuracy, "confidence": confidence})
    return table


def expected_calibration_error(reliability: Sequence[Mapping[str, Any]]) -> float:
    """ECE = sum over bins of (bin rows / all rows) * |bin accuracy - bin mean confidence|."""
    total = sum(b["count"] for b in reliability)
    if not total:
        return float("nan")
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in reliability if b["count"]) / total)


def accuracy_metrics(pred_df: "DataFrame", confidence_threshold: float = 0.5) -> dict[str, Any]:
    """Every count-based metric of one set except calibration.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame`.
    confidence_threshold : float
        A prediction is confident when ``confidence >= confidence_threshold``.

    Returns
    -------
    dict
        ``rows, accuracy, top5_accuracy, macro_f1, weighted_f1, log_loss, mean_confidence,
        confident_fraction, confident_accuracy, unconfident_accuracy`` (the split accuracies are None
        when their side is empty).

    Raises
    ------
    GapSparkError
        When ``pred_df`` has no rows.
    """
    threshold = float(confidence_threshold)
    confident = F.col("confidence") >= F.lit(threshold)
    correct = (F.col("prediction") == F.col("label")).cast("long")
    totals = pred_df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.array_contains("top5", F.col("label")).cast("long")).alias("top5_hits"),
        F.avg("confidence").alias("mean_confidence"),
        F.sum(confident.cast("long")).alias("confident_rows"),
        F.sum(F.when(confident, correct)).alias("confident_correct"),
        F.sum(F.when(~confident, correct)).alias("unconfident_correct"),
    ).first()
    if totals is None or int(totals["rows"]) == 0:
        raise EmptyPredictionsError("cannot evaluate an empty set of predictions")
    rows = int(totals["rows"])
    confident_rows = int(totals["confident_rows"] or 0)
    unconfident_rows = rows - confident_rows
    out: dict[str, Any] = {"rows": rows}
    out.update(evaluator_metrics(pred_df))
    out["top5_accuracy"] = float(totals["top5_hits"]) / rows
    out["macro_f1"] = macro_f1(class_counts(pred_df))
    out["mean_confidence"] = float(totals["mean_confidence"])
    out["confident_fraction"] = confident_rows / rows
    out["confident_accuracy"] = float(totals["confident_correct"]) / confident_rows if confident_rows else None
    out["unconfident_accuracy"] = (float(totals["unconfident_correct"]) / unconfident_rows
                                   if unconfident_rows else None)
    return out


def set_metrics(pred_df: "DataFrame", bins: int = 15, confidence_threshold: float = 0.5) -> dict[str, Any]:
    """The metrics block ``M`` of ``metrics.json`` for one set (keys in :data:`METRIC_KEYS`).

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame`.
    bins : int
        Equal-width confidence bins for ECE and the reliability table.
    confidence_threshold : float
        See :func:`accuracy_metrics`.

    Returns
    -------
    dict
        :func:`accuracy_metrics` plus ``ece`` and ``reliability`` (:func:`reliability_table`).
    """
    metrics = accuracy_metrics(pred_df, confidence_threshold)
    reliability = reliability_table(calibration_bins(pred_df, bins).collect(), bins)
    metrics["ece"] = expected_calibration_error(reliability)
    metrics["reliability"] = reliability
    return {key: metrics[key] for key in METRIC_KEYS}
