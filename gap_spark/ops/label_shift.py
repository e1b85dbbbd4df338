"""Label and confidence shift between two sets.

- :func:`label_shift`: total variation distance and a chi-square test of homogeneity between the label
  histograms of two sets (:func:`~gap_spark.ops.frames.label_count_frame` collected).
- :func:`confidence_shift`: one model's confidence distributions on two sets: mean, quantiles, and KS
  and W1 with the histogram sketch's error bounds (:mod:`gap_spark.ops.drift`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.core.errors import DatasetError
from gap_spark.ops.drift_spark import FEATURES_COL, feature_shift_stats
from gap_spark.ops.frames import SET_COL

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["CONFIDENCE_QUANTILES", "confidence_shift", "label_shift"]

LABEL_COL = "label"
CONFIDENCE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_QUANTILE_KEYS = ("q05", "q25", "median", "q75", "q95")


def label_shift(counts: "pd.DataFrame", set_a: str, set_b: str) -> dict[str, Any]:
    """Total variation distance and chi-square test of homogeneity between two label histograms.

    Parameters
    ----------
    counts : pandas.DataFrame
        :func:`~gap_spark.ops.frames.label_count_frame` collected (``set, label, count``; one row per
        label present: small).
    set_a, set_b : str
        The two sets to compare.

    Returns
    -------
    dict
        ``rows_a, rows_b, classes_a, classes_b, tvd, chi2, dof, p_value``. With few rows per class the
        chi-square approximation is rough (expected counts under 5); the TVD has no such caveat.
    """
    from scipy.stats import chi2_contingency

    table = counts[counts[SET_COL].isin([set_a, set_b])].pivot_table(
        index=LABEL_COL, columns=SET_COL, values="count", aggfunc="sum", fill_value=0)
    for name in (set_a, set_b):
        if name not in table.columns or table[name].sum() == 0:
            raise DatasetError(f"no labels in set {name!r}")
    a = table[set_a].to_numpy(dtype=float)
    b = table[set_b].to_numpy(dtype=float)
    tvd = 0.5 * float(np.abs(a / a.sum() - b / b.sum()).sum())
    if len(table) >= 2:
        chi2, p_value, dof, _ = chi2_contingency(np.vstack([a, b]), correction=False)
    else:
        chi2, p_value, dof = 0.0, 1.0, 0
    return {"rows_a": int(a.sum()), "rows_b": int(b.sum()), "classes_a": int((a > 0).sum()),
            "classes_b": int((b > 0).sum()), "tvd": tvd, "chi2": float(chi2), "dof": int(dof),
            "p_value": float(p_value)}


def confidence_shift(pred_a: "DataFrame", pred_b: "DataFrame", bins: int = 1000, range_sd: float = 5.0,
                     names: tuple[str, str] = ("val", "v2")) -> dict[str, Any]:
    """Confidence distributions of one model on two sets: per-set summaries, KS and W1.

    Parameters
    ----------
    pred_a, pred_b : DataFrame
        Predictions with ``confidence`` (and ``true_prob`` when present), as the evaluate stage writes.
    bins, range_sd : int, float
        Grid of the KS/W1 histogram sketch (same bounds as
        :func:`~gap_spark.ops.drift.histogram_distances`).
    names : (str, str)
        Keys of the two per-set summaries.

    Returns
    -------
    dict
        ``{names[0]: S, names[1]: S, "mean_difference", "ks", "ks_error_bound", "wasserstein",
        "wasserstein_error_bound"}`` with S = ``rows, mean, std, q05, q25, median, q75, q95``
        (``mean_true_prob`` too when the column exists); differences are b minus a. A summary of no
        rows has None for its mean, sd and quantiles.
    """
    from pyspark.sql import functions as F

    frames = {"a": pred_a, "b": pred_b}
    arrays = {k: f.select(F.array(F.col("confidence").cast("float")).alias(FEATURES_COL)) for k, f in frames.items()}
    collected: pd.DataFrame = feature_shift_stats(arrays, [("confidence", "a", "b")], 1, bins, range_sd).toPandas()
    stats = collected.iloc[0]
    out: dict[str, Any] = {name: _confidence_summary(frames[key]) for key, name in zip(("a", "b"), names)}
    out["mean_difference"] = float(stats["mean_b"] - stats["mean_a"])
    for key in ("ks", "ks_error_bound", "wasserstein", "wasserstein_error_bound"):
        out[key] = float(stats[key])
    return out


def _confidence_summary(frame: "DataFrame") -> dict[str, Any]:
    """``rows, mean, std, q05, q25, median, q75, q95`` (and ``mean_true_prob``) of one prediction frame."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows"), F.avg("confidence").alias("mean"),
            F.stddev("confidence").alias("std"),
            F.percentile_approx("confidence", list(CONFIDENCE_QUANTILES), 10000).alias("quantiles")]
    if "true_prob" in frame.columns:
        aggs.append(F.avg("true_prob").alias("mean_true_prob"))
    first = frame.agg(*aggs).first()
    assert first is not None  # a global aggregate has one row
    row = first.asDict()
    # Spark gives Python floats, or None for an aggregate over no rows.
    summary: dict[str, Any] = {"rows": int(row["rows"]), "mean": row["mean"], "std": row["std"]}
    summary.update(zip(_QUANTILE_KEYS, row["quantiles"] or []))
    if "mean_true_prob" in row:
        summary["mean_true_prob"] = row["mean_true_prob"]
    return summary

