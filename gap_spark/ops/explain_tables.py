"""The small tables the explain stage computes everything from: per bootstrap replicate, per class and per
score bin, aggregated in Spark in one pass per set; only these aggregates reach the driver.

Replicate 0 is the data as they are; replicates 1..B give every row a Poisson(1) weight drawn exactly as
the evaluate stage draws it (:func:`gap_spark.ops.bootstrap.bootstrap_weights`, the same streams), so
for the same seed and B the gap's interval is evaluate's. The density ratio, the models and the score
grid are fixed; everything else (per-class accuracies, v2's class frequencies, the ATC thresholds, the
calibration map) is recomputed from each replicate's tables by :mod:`gap_spark.ops.decompose` and
:mod:`gap_spark.ops.label_free`.

Scores (higher means more confident): ``confidence`` (the top probability) and ``negentropy`` (minus the
entropy of the probability vector). Their grid is ``bins`` bins cut at val's quantiles.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gap_spark.ops.bootstrap import STREAM_IDS, bootstrap_weights

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

__all__ = ["SCORES", "ScoreBins", "SetTables", "bucketed", "score_edges", "scored_rows", "set_tables"]

SCORES = ("confidence", "negentropy")
_CLASS, _BIN = 0, 1  # kinds of group; a score's bins are kind _BIN + its index in SCORES


@dataclass(frozen=True)
class ScoreBins:
    """One score's bins for every replicate: rows, right ones (val only; zeros for v2) and the score's sum."""

    count: np.ndarray  # (R, G)
    correct: np.ndarray  # (R, G)
    total: np.ndarray  # (R, G): sum of the score


@dataclass(frozen=True)
class SetTables:
    """One set's aggregates, replicate 0 first (the data as they are), then the B bootstrap replicates.

    ``weight`` and ``weight_correct`` are the density ratio's sums (zero for v2).
    """

    n: np.ndarray  # (R, K) rows per class
    correct: np.ndarray  # (R, K)
    weight: np.ndarray  # (R, K)
    weight_correct: np.ndarray  # (R, K)
    bins: Mapping[str, ScoreBins]

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy per replicate, ``(R,)``."""
        return np.asarray(self.correct.sum(axis=1) / self.n.sum(axis=1))


def scored_rows(predictions: "DataFrame", ratios: "DataFrame | None" = None) -> "DataFrame":
    """The columns the tables read, from a model's saved predictions (and val's density ratios).

    Parameters
    ----------
    predictions : DataFrame
        The prediction contract (``row_id, label, prediction, confidence, entropy``).
    ratios : DataFrame, optional
        ``row_id, ratio``; absent rows (and all rows without it) weigh 0.

    Returns
    -------
    DataFrame
        ``row_id, label, correct (0/1 int), confidence, negentropy, ratio``.
    """
    from pyspark.sql import functions as F

    out = predictions.select("row_id", F.col("label").cast("int").alias("label"),
                             (F.col("prediction") == F.col("label")).cast("int").alias("correct"),
                             F.col("confidence").cast("double").alias("confidence"),
                             (-F.col("entropy").cast("double")).alias("negentropy"))
    if ratios is None:
        return out.withColumn("ratio", F.lit(0.0))
    return out.join(ratios.select("row_id", "ratio"), "row_id", "left").fillna(0.0, subset=["ratio"])


def score_edges(val: "DataFrame", bins: int) -> dict[str, list[float]]:
    """Inner bin edges of each score: val's quantiles ``1/bins, ..., (bins-1)/bins``, ties merged.

    Parameters
    ----------
    val : DataFrame
        :func:`scored_rows` of val.
    bins : int
        G, the bins wanted per score (fewer where quantiles coincide).

    Returns
    -------
    dict
        Score name to its strictly increasing inner edges (bins - 1 values or fewer).
    """
    from pyspark.sql import functions as F

    levels = [i / bins for i in range(1, bins)]
    row = val.agg(*[F.percentile(F.col(s), levels).alias(s) for s in SCORES]).first()
    assert row is not None
    return {s: sorted({float(v) for v in row[s]}) for s in SCORES}


def bucketed(frame: "DataFrame", edges: Mapping[str, list[float]]) -> "DataFrame":
    """``frame`` with ``<score>_bin`` (0 .. len(edges)) for each score: bin j holds ``[e_(j-1), e_j)``."""
    from pyspark.ml.feature import Bucketizer

    splits = [[-float("inf"), *edges[s], float("inf")] for s in SCORES]
    return Bucketizer(splitsArray=splits, inputCols=list(SCORES), outputCols=[f"{s}_bin" for s in SCORES],
                      handleInvalid="keep").transform(frame)


def set_tables(rows: "DataFrame", edges: Mapping[str, list[float]], classes: int, replicates: int, seed: int,
               split: str) -> SetTables:
    """Aggregate one set for the data and every bootstrap replicate, in one pass.

    Parameters
    ----------
    rows : DataFrame
        :func:`scored_rows`.
    edges : mapping
        :func:`score_edges`.
    classes : int
        K (labels outside ``[0, K)`` are left out of the class tables).
    replicates : int
        B.
    seed : int
        The bootstrap's seed.
    split : str
        ``val`` or ``v2``: names its bootstrap stream; v2's right answers are not aggregated per bin.

    Returns
    -------
    SetTables
    """
    from pyspark.sql import functions as F

    base = bucketed(rows, edges)
    point = base.withColumn("rep", F.lit(-1)).withColumn("w", F.lit(1))
    weighted = point.unionByName(bootstrap_weights(base, replicates, seed, STREAM_IDS[split]))
    w = F.col("w").cast("double")
    right = w * F.col("correct")
    zero = F.lit(0.0)

    def part(kind: int, key: str, correct: "Column", weight: "Column", weight_correct: "Column",
             total: "Column") -> "Column":
        return F.struct(F.lit(kind).alias("kind"), F.col(key).cast("int").alias("key"), w.alias("n"),
                        correct.alias("correct"), weight.alias("weight"), weight_correct.alias("weight_correct"),
                        total.alias("total"))

    labelled_bins = split == "val"
    parts = [part(_CLASS, "label", right, w * F.col("ratio"), right * F.col("ratio"), zero)]
    parts += [part(_BIN + i, f"{s}_bin", right if labelled_bins else zero, zero, zero, w * F.col(s))
              for i, s in enumerate(SCORES)]
    sums = ("n", "correct", "weight", "weight_correct", "total")
    local: pd.DataFrame = (weighted.select("rep", F.inline(F.array(*parts)))
                           .groupBy("rep", "kind", "key").agg(*[F.sum(c).alias(c) for c in sums]).toPandas())
    return _to_arrays(local, edges, classes, replicates)


def _to_arrays(local: "pd.DataFrame", edges: Mapping[str, list[float]], classes: int,
               replicates: int) -> SetTables:
    """Dense ``(R, K)`` and ``(R, G)`` arrays from the aggregated rows (absent groups are zero)."""
    r = local["rep"].to_numpy() + 1  # replicate -1 (the data) becomes row 0

    def dense(kind: int, width: int, column: str) -> np.ndarray:
        out = np.zeros((replicates + 1, width))
        keep = (local["kind"].to_numpy() == kind) & (local["key"].to_numpy() >= 0) & \
            (local["key"].to_numpy() < width)
        np.add.at(out, (r[keep], local["key"].to_numpy()[keep].astype(int)), local[column].to_numpy()[keep])
        return out

    bins = {s: ScoreBins(*(dense(_BIN + i, len(edges[s]) + 1, c) for c in ("n", "correct", "total")))
            for i, s in enumerate(SCORES)}
    n, correct, weight, weight_correct = (dense(_CLASS, classes, c)
                                          for c in ("n", "correct", "weight", "weight_correct"))
    return SetTables(n, correct, weight, weight_correct, bins)
