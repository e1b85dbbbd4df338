"""Where the gap comes from, class by class: per-class accuracy on val and v2, and the class pairs most
confused on each set and whose confusion grows most on v2.

Both frames come from one aggregation over the two sets tagged and unioned (one shuffle each); at
most ``3 x top_n`` confused pairs reach the driver. Every function is pure.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from gap_spark.ops.frames import SET_COL, tag_union

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "CONFUSED_PAIR_COLUMNS", "PER_CLASS_ACCURACY_COLUMNS", "confused_pair_frame", "per_class_accuracy_frame",
    "top_confused_pairs",
]

PER_CLASS_ACCURACY_COLUMNS = ("label", "val_n", "val_correct", "val_accuracy", "v2_n", "v2_correct",
                              "v2_accuracy", "drop")
CONFUSED_PAIR_COLUMNS = ("true_label", "predicted_label", "val_count", "val_rate", "v2_count", "v2_rate",
                         "growth")


def _tagged(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Both sets' ``label, prediction`` in one frame, with 0/1 columns saying which set a row is from."""
    both = tag_union({"val": pred_val, "v2": pred_v2},
                     [F.col("label").cast("int").alias("label"), F.col("prediction").cast("int").alias("prediction")])
    return both.select("label", "prediction", (F.col(SET_COL) == "val").cast("int").alias("in_val"),
                       (F.col(SET_COL) == "v2").cast("int").alias("in_v2"))


def per_class_accuracy_frame(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Per-class accuracy on val and v2 and the drop, for every class that is a true label in either.

    One aggregation over both sets (tagged and unioned), so one shuffle.

    Parameters
    ----------
    pred_val, pred_v2 : DataFrame
        Have ``label`` and ``prediction``.

    Returns
    -------
    DataFrame
        ``label, val_n, val_correct, val_accuracy, v2_n, v2_correct, v2_accuracy, drop`` (drop =
        val_accuracy - v2_accuracy; an accuracy is null where the class has no rows), by label.
    """
    correct = (F.col("prediction") == F.col("label")).cast("long")
    counts = _tagged(pred_val, pred_v2).groupBy("label").agg(
        F.sum(F.col("in_val").cast("long")).alias("val_n"), F.sum(correct * F.col("in_val")).alias("val_correct"),
        F.sum(F.col("in_v2").cast("long")).alias("v2_n"), F.sum(correct * F.col("in_v2")).alias("v2_correct"))
    table = counts.select(
        "label", "val_n", "val_correct",
        F.when(F.col("val_n") > 0, F.col("val_correct") / F.col("val_n")).alias("val_accuracy"),
        "v2_n", "v2_correct",
        F.when(F.col("v2_n") > 0, F.col("v2_correct") / F.col("v2_n")).alias("v2_accuracy"))
    return table.withColumn("drop", F.col("val_accuracy") - F.col("v2_accuracy")).orderBy("label")


def confused_pair_frame(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Every confused pair on val or v2, side by side, with the growth of its rate on v2.

    The (true, predicted) cell counts of both sets come from one aggregation; the rows per true label
    (the rates' denominators) from a window over the same cells.

    Parameters
    ----------
    pred_val, pred_v2 : DataFrame
        Have ``label`` and ``prediction``.

    Returns
    -------
    DataFrame
        ``true_label, predicted_label, val_count, val_rate, v2_count, v2_rate, growth`` where rate =
        count / rows of that true label in that set and growth = v2_rate - val_rate. A pair absent
        from one set has count 0 there, and rate 0, or null when its true label has no rows there.
    """
    from pyspark.sql import Window

    cells = _tagged(pred_val, pred_v2).groupBy("label", "prediction").agg(
        F.sum(F.col("in_val").cast("long")).alias("val_count"), F.sum(F.col("in_v2").cast("long")).alias("v2_count"))
    by_label = Window.partitionBy("label")
    cells = cells.withColumn("val_rows", F.sum("val_count").over(by_label)) \
        .withColumn("v2_rows", F.sum("v2_count").over(by_label))
    out = cells.where(F.col("label") != F.col("prediction")).select(
        F.col("label").alias("true_label"), F.col("prediction").alias("predicted_label"),
        "val_count", F.when(F.col("val_rows") > 0, F.col("val_count") / F.col("val_rows")).alias("val_rate"),
        "v2_count", F.when(F.col("v2_rows") > 0, F.col("v2_count") / F.col("v2_rows")).alias("v2_rate"))
    return out.withColumn("growth", F.col("v2_rate") - F.col("val_rate"))


def top_confused_pairs(pairs_df: "DataFrame", top_n: int) -> list[dict[str, Any]]:
    """The union of the ``top_n`` pairs by val count, by v2 count and by growth (growth > 0 only).

    One Spark job (three ``limit`` queries in a union); at most ``3 x top_n`` rows reach the driver.

    Parameters
    ----------
    pairs_df : DataFrame
        :func:`confused_pair_frame`.
    top_n : int

    Returns
    -------
    list of dict
        Rows of :func:`confused_pair_frame`, by decreasing growth, then v2 count, then the labels.
    """
    keys = [F.col("true_label"), F.col("predicted_label")]
    by_val = pairs_df.where(F.col("val_count") > 0).orderBy(F.desc("val_count"), *keys).limit(top_n)
    by_v2 = pairs_df.where(F.col("v2_count") > 0).orderBy(F.desc("v2_count"), *keys).limit(top_n)
    by_growth = pairs_df.where(F.col("growth") > 0).orderBy(F.desc("growth"), *keys).limit(top_n)
    rows = by_val.unionByName(by_v2).unionByName(by_growth).distinct().collect()
    table = [{c: r[c] for c in CONFUSED_PAIR_COLUMNS} for r in rows]
    table.sort(key=lambda r: (-(r["growth"] if r["growth"] is not None else -math.inf), -r["v2_count"],
                              r["true_label"], r["predicted_label"]))
    return table
