"""The gap (val minus v2) of accuracy, macro-F1 and ECE, with a percentile bootstrap interval.

Each row gets a Poisson(1) weight per replicate, drawn from a hash of ``(seed, set, row_id,
replicate)``, so all replicates are aggregated in one pass and the result does not depend on
partitioning. Only the interval ends reach the driver. Every function is pure.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from gap_spark.ops.frames import hash_uniform
from gap_spark.ops.metrics import confidence_bin, macro_f1_column
from gap_spark.ops.predictions import HOLDOUT_SET

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "GAP_METRICS", "STREAM_IDS", "bootstrap_gap", "bootstrap_gap_table", "bootstrap_replicates",
    "bootstrap_weights", "gap_summary", "poisson_from_uniform",
]

# Independent bootstrap streams per set, so val and v2 rows with equal row_ids get unrelated weights.
STREAM_IDS = {"val": 1, "v2": 2, HOLDOUT_SET: 3}
GAP_METRICS = ("accuracy", "macro_f1", "ece")
# Largest Poisson(1) draw represented; P(X > 20) is below 1e-19, far under double resolution.
_POISSON_MAX = 20


def _poisson_cdf(max_k: int = _POISSON_MAX) -> list[float]:
    cdf, term, total = [], math.exp(-1.0), 0.0
    for k in range(max_k + 1):
        total += term
        cdf.append(total)
        term /= (k + 1)
    return cdf


def poisson_from_uniform(u: Column) -> Column:
    """Inverse-CDF Poisson(1) draw from a uniform ``u``: the smallest k with ``u < P(X <= k)``."""
    # The CDF reaches 1.0 in double precision well before _POISSON_MAX; those k are never drawn.
    thresholds = list(takewhile(lambda p: p < 1.0, _poisson_cdf()))
    expr = F.when(u < F.lit(thresholds[0]), F.lit(0))
    for k, threshold in enumerate(thresholds[1:], start=1):
        expr = expr.when(u < F.lit(threshold), F.lit(k))
    return expr.otherwise(F.lit(_POISSON_MAX)).cast("int")


def bootstrap_weights(pred_df: "DataFrame", replicates: int, seed: int, stream: int = 0) -> "DataFrame":
    """Every row once per replicate, with its Poisson(1) weight ``w`` (rows with ``w = 0`` dropped).

    The weight is a function of ``(seed, stream, row_id, rep)`` only, so it is the same whatever the
    partitioning or the order of the rows; different streams (sets) get independent weights.

    Parameters
    ----------
    pred_df : DataFrame
        Has ``row_id``.
    replicates : int
        B.
    seed : int
    stream : int
        Distinguishes sets sharing row ids (see :data:`STREAM_IDS`).

    Returns
    -------
    DataFrame
        The columns of ``pred_df`` plus ``rep int`` and ``w int``.
    """
    exploded = pred_df.withColumn("rep", F.explode(F.sequence(F.lit(0), F.lit(int(replicates) - 1))))
    u = hash_uniform(F.lit(int(seed)), F.lit(int(stream)), F.col("row_id"), F.col("rep"))
    return exploded.withColumn("w", poisson_from_uniform(u)).where(F.col("w") > 0)


def bootstrap_replicates(pred_df: "DataFrame", replicates: int, seed: int, stream: int = 0,
                         bins: int = 15, by: Sequence[str] = ()) -> "DataFrame":
    """Accuracy, macro-F1 and ECE of every Poisson bootstrap replicate of one set, in one pass.

    Each weighted row adds itself to three kinds of group per replicate: its true class (rows, right
    ones, and predictions when it is right), its predicted class when it is wrong (predictions), and
    its confidence bin (rows, right ones, confidence). One aggregation over ``(rep, kind, key)``
    gives every count; the per-replicate statistics come from that small table (``replicates x
    (K + bins)`` rows), never from the rows themselves.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame` (``row_id`` must identify a
        row within the set).
    replicates : int
        Number of bootstrap replicates B.
    seed : int
    stream : int
        Distinguishes sets sharing row ids (see :data:`STREAM_IDS`).
    bins : int
        Confidence bins for ECE.
    by : sequence of str
        Columns of ``pred_df`` that split it into independent groups (for example several models or
        experiments in one frame), each bootstrapped on its own in the same pass.

    Returns
    -------
    DataFrame
        ``*by, rep int, accuracy double, macro_f1 double, ece double``, one row per group and replicate.
    """
    CLASS, BIN = 0, 1
    by = list(by)
    base = pred_df.select(*by, "row_id", "label", "prediction",
                          F.col("confidence").cast("double").alias("confidence"))
    weighted = bootstrap_weights(base, replicates, seed, stream)
    w = F.col("w").cast("long")
    right = (F.col("prediction") == F.col("label"))
    wc = F.when(right, w).otherwise(F.lit(0).cast("long"))
    zero = F.lit(0).cast("long")

    def part(kind: int, key: Column, n: Column, tp: Column, predicted: Column, conf: Column) -> Column:
        return F.struct(F.lit(kind).alias("kind"), key.cast("int").alias("key"), n.alias("n"), tp.alias("tp"),
                        predicted.alias("predicted"), conf.alias("conf"))

    as_label = part(CLASS, F.col("label"), w, wc, wc, F.lit(0.0))
    as_prediction = part(CLASS, F.col("prediction"), zero, zero, w, F.lit(0.0))
    as_bin = part(BIN, confidence_bin(F.col("confidence"), bins), w, wc, zero, w * F.col("confidence"))
    parts = F.when(right, F.array(as_label, as_bin)).otherwise(F.array(as_label, as_prediction, as_bin))
    counts = weighted.select(*by, "rep", F.inline(parts)).groupBy(*by, "rep", "kind", "key").agg(
        F.sum("n").alias("n"), F.sum("tp").alias("tp"), F.sum("predicted").alias("predicted"),
        F.sum("conf").alias("conf"))
    # One aggregation for both kinds: filtering each kind into its own branch would let Spark push
    # the filter below the first aggregation and run the whole weighted pass twice.
    is_class, is_bin = F.col("kind") == CLASS, F.col("kind") == BIN
    return counts.groupBy(*by, "rep").agg(
        (F.sum(F.when(is_bin, F.col("tp"))) / F.sum(F.when(is_bin, F.col("n")))).alias("accuracy"),
        F.avg(F.when(is_class, macro_f1_column(F.col("n"), F.col("tp"), F.col("predicted")))).alias("macro_f1"),
        (F.sum(F.when(is_bin, F.abs(F.col("tp") - F.col("conf")))) / F.sum(F.when(is_bin, F.col("n")))).alias("ece"))


def bootstrap_gap_table(pred_val: "DataFrame", pred_v2: "DataFrame", replicates: int, seed: int, bins: int = 15,
                        level: float = 0.95, by: Sequence[str] = (),
                        streams: tuple[int, int] = (STREAM_IDS["val"], STREAM_IDS["v2"])) -> "DataFrame":
    """Percentile bootstrap intervals of ``metric(val) - metric(v2)``, per group of ``by``.

    Replicate ``b`` resamples val and v2 independently (Poisson weights from different streams);
    the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the B
    differences, computed with Spark's ``percentile``.

    Parameters
    ----------
    pred_val, pred_v2 : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame` (and ``by``).
    replicates : int
        B.
    seed : int
    bins : int
        Confidence bins for ECE.
    level : float
        Coverage of the interval.
    by : sequence of str
        Grouping columns, bootstrapped independently.
    streams : (int, int)
        Bootstrap streams of val and v2.

    Returns
    -------
    DataFrame
        ``*by`` and one ``array<double>`` ``[lo, hi]`` column per metric of :data:`GAP_METRICS`.
    """
    by = list(by)
    a = bootstrap_replicates(pred_val, replicates, seed, streams[0], bins, by)
    b = bootstrap_replicates(pred_v2, replicates, seed, streams[1], bins, by)
    diffs = a.alias("a").join(b.alias("b"), [*by, "rep"]).select(
        *by, *[(F.col(f"a.{m}") - F.col(f"b.{m}")).alias(m) for m in GAP_METRICS])
    tails = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    return diffs.groupBy(*by).agg(*[F.percentile(F.col(m), tails).alias(m) for m in GAP_METRICS])


def bootstrap_gap(pred_val: "DataFrame", pred_v2: "DataFrame", replicates: int, seed: int, bins: int = 15,
                  level: float = 0.95,
                  streams: tuple[int, int] = (STREAM_IDS["val"], STREAM_IDS["v2"])) -> dict[str, Any]:
    """Percentile bootstrap intervals of ``metric(val) - metric(v2)`` for accuracy, macro-F1 and ECE.

    All replicates of both sets are aggregated in one Spark job (see :func:`bootstrap_replicates`);
    only the interval ends reach the driver.

    Parameters
    ----------
    pred_val, pred_v2 : DataFrame
        Columns of :func:`~gap_spark.ops.predictions.predictions_frame`.
    replicates : int
        B.
    seed : int
    bins : int
        Confidence bins for ECE.
    level : float
        Coverage of the interval.
    streams : (int, int)
        Bootstrap streams of val and v2.

    Returns
    -------
    dict
        ``{"accuracy": [lo, hi], "macro_f1": [lo, hi], "ece": [lo, hi], "replicates": B}``.
    """
    row = bootstrap_gap_table(pred_val, pred_v2, replicates, seed, bins, level, (), streams).first()
    out: dict[str, Any] = {m: [float(v) for v in row[m]] if row and row[m] is not None else [None, None]
                           for m in GAP_METRICS}
    out["replicates"] = int(replicates)
    return out


def gap_summary(val: Mapping[str, Any], v2: Mapping[str, Any], intervals: Mapping[str, Any]) -> dict[str, Any]:
    """The gap block ``G`` of ``metrics.json``: val minus v2, with the bootstrap intervals.

    Parameters
    ----------
    val, v2 : mapping
        The sets' metrics blocks (:func:`~gap_spark.ops.metrics.set_metrics`).
    intervals : mapping
        :func:`bootstrap_gap`.

    Returns
    -------
    dict
        ``accuracy, ci95, macro_f1, macro_f1_ci95, ece, ece_ci95``.
    """
    return {
        "accuracy": val["accuracy"] - v2["accuracy"], "ci95": intervals["accuracy"],
        "macro_f1": val["macro_f1"] - v2["macro_f1"], "macro_f1_ci95": intervals["macro_f1"],
        "ece": val["ece"] - v2["ece"], "ece_ci95": intervals["ece"],
    }
