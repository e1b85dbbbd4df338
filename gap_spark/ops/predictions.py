"""Predictions of a model on the evaluated sets: which rows are evaluated, and the saved prediction columns.

The prediction contract (``RUN_DIR/predictions/<model>/<set>/``) has the columns of
:data:`PREDICTION_COLUMNS`; :func:`predictions_frame` builds them from a model's output with JVM
array functions only. Every function here is pure (``DataFrame -> DataFrame``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F

from gap_spark.ops.frames import hash_uniform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "EVAL_SETS", "HOLDOUT_SET", "PREDICTION_COLUMNS", "TOP_K", "holdout_slice", "predictions_frame",
    "top_k_indices",
]

# The test sets every model is evaluated on, and the optional slice of train evaluated beside them.
EVAL_SETS = ("val", "v2")
HOLDOUT_SET = "train_holdout"
TOP_K = 5
PREDICTION_COLUMNS = ("row_id", "label", "prediction", "top5", "confidence", "true_prob", "entropy")


def top_k_indices(frame: "DataFrame", array_col: str, k: int, out_col: str) -> "DataFrame":
    """Add ``out_col``: the indices of the ``k`` largest values of ``array_col``, largest first.

    Ties go to the lower index, exactly like ``np.argsort(-p, kind="stable")[:k]``. Each round takes
    ``array_position(array_max)`` and cuts that element out (values and original indices together),
    in separate projections so the plan stays linear in ``k``. Only JVM array functions run: a
    sort of the whole K-array, or shipping it to Python, measured several times slower for K=1000.

    Parameters
    ----------
    frame : DataFrame
        Has the ``array<double>`` column ``array_col``.
    array_col : str
    k : int
        How many indices; arrays shorter than ``k`` give all their indices.
    out_col : str
        Name of the new ``array<int>`` column.

    Returns
    -------
    DataFrame
        ``frame`` with ``out_col`` added.
    """
    values, index, picks, pos = "__topk_values", "__topk_index", "__topk_picks", "__topk_pos"
    cur = frame.withColumn(values, F.col(array_col)) \
        .withColumn(index, F.sequence(F.lit(0), F.size(array_col) - 1)) \
        .withColumn(picks, F.array().cast("array<int>"))
    for round_no in range(k):
        cur = cur.withColumn(pos, F.coalesce(F.array_position(values, F.array_max(values)), F.lit(0)).cast("int"))
        found = F.col(pos) > 0
        cur = cur.withColumn(picks, F.when(found, F.concat(picks, F.array(F.element_at(index, F.col(pos)))))
                             .otherwise(F.col(picks)))
        if round_no < k - 1:
            def cut(name: str, found: Column = found) -> Column:
                return F.when(found, F.concat(F.slice(name, 1, F.col(pos) - 1),
                                              F.slice(name, F.col(pos) + 1, F.greatest(F.size(name), F.lit(1)))))\
                    .otherwise(F.col(name))
            cur = cur.withColumn(values, cut(values)).withColumn(index, cut(index))
    return cur.withColumnRenamed(picks, out_col).drop(values, index, pos)


def predictions_frame(model_output: "DataFrame", top_k: int = TOP_K) -> "DataFrame":
    """The saved prediction columns from a model's output.

    Parameters
    ----------
    model_output : DataFrame
        Output of ``PipelineModel.transform``: ``row_id``, ``label``, ``prediction`` (double) and
        ``probability`` (vector of length K).
    top_k : int
        Length of the ``top5`` column (5 by the contract).

    Returns
    -------
    DataFrame
        ``row_id long, label int, prediction int, top5 array<int>`` (class indices by decreasing
        probability, ties to the lower index), ``confidence double`` (the largest probability) and
        ``true_prob double`` (the probability given to the true label; 0 when the label is outside
        the vector) and ``entropy double`` (``-sum p log p`` in nats over the whole vector, 0 log 0 = 0:
        the label-free estimators read it).
    """
    from pyspark.ml.functions import vector_to_array

    probs = "__probs"
    staged = model_output.select(
        F.col("row_id").cast("long").alias("row_id"),
        F.col("label").cast("int").alias("label"),
        F.col("prediction").cast("int").alias("prediction"),
        vector_to_array(F.col("probability"), "float64").alias(probs),
    )
    ranked = top_k_indices(staged, probs, top_k, "top5")
    return ranked.select(
        "row_id", "label", "prediction", "top5",
        F.array_max(probs).cast("double").alias("confidence"),
        F.coalesce(F.when(F.col("label") >= 0, F.try_element_at(F.col(probs), F.col("label") + 1)),
                   F.lit(0.0)).cast("double").alias("true_prob"),
        F.aggregate(probs, F.lit(0.0), lambda acc, p: acc - F.when(p > 0, p * F.log(p)).otherwise(F.lit(0.0)))
        .cast("double").alias("entropy"),
    )


def holdout_slice(train_df: "DataFrame", fraction: float, seed: int) -> "DataFrame":
    """A deterministic ``fraction`` of train rows, chosen by a hash of ``(seed, row_id)``.

    The same rows come out for the same seed whatever the partitioning, so a training stage can
    exclude exactly these rows with ``hash_uniform(seed, -1, row_id) >= fraction``.

    Parameters
    ----------
    train_df : DataFrame
        Has ``row_id``.
    fraction : float
        Expected share of the rows kept, in [0, 1).
    seed : int

    Returns
    -------
    DataFrame
        The rows of ``train_df`` whose hash lies below ``fraction``.
    """
    return train_df.where(hash_uniform(F.lit(int(seed)), F.lit(-1), F.col("row_id")) < F.lit(float(fraction)))
