"""The gap (val minus v2) split into three parts that add up to it exactly, per bootstrap replicate.

With ``acc_val(c)`` val's accuracy on class c, ``pi_v2(c)`` v2's class frequencies and ``w`` the density
ratio on val's rows (:mod:`gap_spark.ops.density`)::

    label-reweighted accuracy  L   = sum_c pi_v2(c) acc_val(c)
    importance-weighted        A_w = sum_val w * right / sum_val w
    label mix  = acc_val - L          (v2 has other classes in other proportions)
    covariate  = L - A_w              (what the reweighting by features adds beyond the class mix)
    residual   = A_w - acc_v2         (rows that look alike are harder in v2: p(y | x) differs)

A class with no val rows in a replicate counts with that replicate's overall val accuracy. Every input
is an array over replicates (:class:`~gap_spark.ops.explain_tables.SetTables`, replicate 0 = the data),
so each part's interval is the percentile interval of its replicates. Pure numpy.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gap_spark.ops.explain_tables import SetTables

__all__ = ["PARTS", "class_accuracy", "gap_parts", "interval", "per_class_table", "summary"]

PARTS = ("label_mix", "covariate", "residual")
_Z = 1.959963984540054  # the normal 97.5% point


def interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The percentile interval of the bootstrap replicates ``values[1:]`` (numpy's linear interpolation,
    as Spark's ``percentile``), or None without finite replicates."""
    reps = np.asarray(values, dtype=float)[1:]
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return None
    tails = [(1.0 - level) / 2.0 * 100, (1.0 + level) / 2.0 * 100]
    return [float(v) for v in np.percentile(reps, tails)]


def summary(values: np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    """``{"value": replicate 0, "ci95": [lo, hi]}``, both times ``scale`` (100 for percentage points)."""
    ci = interval(values)
    value = float(values[0])
    return {"value": value * scale if math.isfinite(value) else None,
            "ci95": [ci[0] * scale, ci[1] * scale] if ci else None}


def class_accuracy(tables: SetTables) -> np.ndarray:
    """Accuracy per replicate and class, ``(R, K)``; a class without rows gets the replicate's accuracy."""
    overall = tables.accuracy[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = tables.correct / tables.n
    return np.where(tables.n > 0, per_class, overall)


def gap_parts(val: SetTables, v2: SetTables) -> dict[str, np.ndarray]:
    """Accuracies, the reweighted accuracies and the parts of the gap, each ``(R,)`` (fractions).

    Parameters
    ----------
    val : SetTables
        val's tables, with the density ratio's sums.
    v2 : SetTables
        v2's tables.

    Returns
    -------
    dict
        ``val_accuracy, v2_accuracy, label_reweighted_accuracy, importance_weighted_accuracy, gap,
        label_mix, covariate, residual``; ``label_mix + covariate + residual == gap``.
    """
    acc_val, acc_v2 = val.accuracy, v2.accuracy
    freq = v2.n / v2.n.sum(axis=1, keepdims=True)
    reweighted = (freq * class_accuracy(val)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        importance = val.weight_correct.sum(axis=1) / val.weight.sum(axis=1)
    return {"val_accuracy": acc_val, "v2_accuracy": acc_v2, "label_reweighted_accuracy": reweighted,
            "importance_weighted_accuracy": importance, "gap": acc_val - acc_v2, "label_mix": acc_val - reweighted,
            "covariate": reweighted - importance, "residual": importance - acc_v2}


def _binomial_se(right: np.ndarray, n: np.ndarray) -> np.ndarray:
    p = (right + 1.0) / (n + 2.0)  # shrunk towards 1/2, so 0 of 10 and 10 of 10 keep some uncertainty
    return np.asarray(np.sqrt(p * (1.0 - p) / n))


def per_class_table(val: SetTables, v2: SetTables, top: int) -> dict[str, Any]:
    """Which classes' drops the covariate reweighting predicts, from the data (replicate 0).

    Per class c with rows in both sets: ``drop = acc_val(c) - acc_v2(c)``, ``predicted = acc_val(c) -
    A_w(c)`` (val's correctness on c reweighted by the density ratio) and ``residual = drop - predicted``.
    A class is *explained* when ``|residual|`` is within 1.96 binomial standard errors of the two
    accuracies, *left* when its drop exceeds the prediction by more, *overshot* when it falls short.

    Parameters
    ----------
    val, v2 : SetTables
    top : int
        Rows to return, the largest residuals first.

    Returns
    -------
    dict
        ``classes, explained, left, overshot, drop_points, predicted_points`` (summed over the classes),
        ``correlation`` (of predicted and observed drops) and ``rows`` (``label, val_n, v2_n,
        val_accuracy, v2_accuracy, drop, predicted_drop, residual, status``).
    """
    nv, n2 = val.n[0], v2.n[0]
    both = np.flatnonzero((nv > 0) & (n2 > 0) & (val.weight[0] > 0))
    av, a2 = val.correct[0, both] / nv[both], v2.correct[0, both] / n2[both]
    aw = val.weight_correct[0, both] / val.weight[0, both]
    drop, predicted = av - a2, av - aw
    residual = drop - predicted
    se = np.sqrt(_binomial_se(val.correct[0, both], nv[both]) ** 2 + _binomial_se(v2.correct[0, both], n2[both]) ** 2)
    status = np.where(np.abs(residual) <= _Z * se, "explained", np.where(residual > 0, "left", "overshot"))
    order = np.argsort(-residual, kind="stable")[:top]
    rows = [{"label": int(both[i]), "val_n": int(nv[both[i]]), "v2_n": int(n2[both[i]]),
             "val_accuracy": float(av[i]), "v2_accuracy": float(a2[i]), "drop": float(drop[i]),
             "predicted_drop": float(predicted[i]), "residual": float(residual[i]), "status": str(status[i])}
            for i in order]
    spread = len(both) > 2 and np.std(drop) > 0 and np.std(predicted) > 0
    return {"classes": len(both), **{s: int((status == s).sum()) for s in ("explained", "left", "overshot")},
            "drop_points": float(drop.sum() * 100), "predicted_points": float(predicted.sum() * 100),
            "correlation": float(np.corrcoef(drop, predicted)[0, 1]) if spread else None, "rows": rows}
