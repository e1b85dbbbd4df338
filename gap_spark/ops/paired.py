"""Before and after a mitigation: accuracies and the gap with paired bootstrap intervals.

Each row of val and v2 is right or wrong before and after. Replicate b weighs a row by the same Poisson(1)
draw before and after (the evaluate stage's draws, :mod:`gap_spark.ops.bootstrap`), so the change's
interval is paired: it reflects only the rows whose answer changed, not the sampling of the sets.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.ops.bootstrap import STREAM_IDS, bootstrap_weights
from gap_spark.ops.decompose import summary

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["before_after", "correct_pairs", "paired_sums"]

SETS = ("val", "v2")


def correct_pairs(before: "DataFrame", after: "DataFrame") -> "DataFrame":
    """``row_id, before, after`` (1 right, 0 wrong) from two prediction frames of the same rows."""
    from pyspark.sql import functions as F

    def right(frame: "DataFrame", name: str) -> "DataFrame":
        return frame.select("row_id", (F.col("prediction") == F.col("label")).cast("int").alias(name))

    return right(before, "before").join(right(after, "after"), "row_id")


def paired_sums(pairs: Mapping[str, "DataFrame"], replicates: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per set and replicate (0 = the data): rows, right before and right after.

    Parameters
    ----------
    pairs : mapping
        ``val`` and ``v2`` to :func:`correct_pairs` frames.
    replicates : int
        B.
    seed : int

    Returns
    -------
    dict
        Set to ``{"n", "before", "after"}``, each ``(B + 1,)``.
    """
    from pyspark.sql import functions as F

    out = {}
    for split in SETS:
        base = pairs[split]
        weighted = (base.withColumn("rep", F.lit(-1)).withColumn("w", F.lit(1))
                    .unionByName(bootstrap_weights(base, replicates, seed, STREAM_IDS[split])))
        sums = [F.sum("w").alias("n"), *(F.sum(F.col("w") * F.col(c)).alias(c) for c in ("before", "after"))]
        local: pd.DataFrame = weighted.groupBy("rep").agg(*sums).toPandas()
        arrays = {c: np.zeros(replicates + 1) for c in ("n", "before", "after")}
        for c in arrays:
            arrays[c][local["rep"].to_numpy() + 1] = local[c].to_numpy()
        out[split] = arrays
    return out


def _verdict(change: dict[str, Any], lower_is_better: bool) -> str:
    ci = change.get("ci95")
    if not ci:
        return "unknown"
    if ci[0] <= 0 <= ci[1]:
        return "no measurable change"
    better = (ci[1] < 0) if lower_is_better else (ci[0] > 0)
    return "better" if better else "worse"


def before_after(sums: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Accuracies (fractions) and the gap (percentage points, val minus v2), before, after and the change.

    Parameters
    ----------
    sums : mapping
        :func:`paired_sums`.

    Returns
    -------
    dict
        ``val`` and ``v2`` (``before, after, change``, each ``{"value", "ci95"}``), ``gap_points`` (the
        same in points), ``v2_verdict`` (``better``, ``worse`` or ``no measurable change`` for v2's
        accuracy), ``gap_verdict`` (the same for the gap, where smaller is better) and ``helps`` (v2's
        accuracy rises beyond its interval).
    """
    acc = {}
    for split in SETS:
        s = sums[split]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc[split] = {"before": s["before"] / s["n"], "after": s["after"] / s["n"]}
    out: dict[str, Any] = {split: {"before": summary(a["before"]), "after": summary(a["after"]),
                                   "change": summary(a["after"] - a["before"])} for split, a in acc.items()}
    gap_before = acc["val"]["before"] - acc["v2"]["before"]
    gap_after = acc["val"]["after"] - acc["v2"]["after"]
    out["gap_points"] = {"before": summary(gap_before, 100.0), "after": summary(gap_after, 100.0),
                         "change": summary(gap_after - gap_before, 100.0)}
    out["v2_verdict"] = _verdict(out["v2"]["change"], lower_is_better=False)
    out["gap_verdict"] = _verdict(out["gap_points"]["change"], lower_is_better=True)
    out["helps"] = out["v2_verdict"] == "better"
    return out
