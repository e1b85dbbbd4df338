"""v2's accuracy estimated without v2's labels, from val (with labels) and v2's scores, per replicate.

The estimators (each an array over bootstrap replicates; replicate 0 is the data):

- ``ac``: average confidence, v2's mean top probability;
- ``doc``: difference of confidences (Guillory et al., ICCV 2021): ``acc_val - (conf_val - conf_v2)``;
- ``atc_confidence`` and ``atc_negentropy``: average thresholded confidence (Garg et al., ICLR 2022):
  the threshold t leaves val's accuracy as the share of val's rows scoring above it, and v2's estimate
  is v2's share above t. On the score grid (:mod:`gap_spark.ops.explain_tables`) t lies inside one bin,
  and both shares are interpolated linearly in that bin's mass;
- ``importance_weighted``: val's correctness reweighted by the density ratio;
- ``calibrated``: a CBPE-style estimate (NannyML's confidence-based performance estimation): the top
  probability is calibrated on val by histogram binning in equal-mass bins of val, and v2's calibrated
  confidences are averaged (v2's share of each bin times val's accuracy in it).

Each estimate is scored against the true v2 accuracy by :func:`estimator_summary`. Pure numpy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gap_spark.ops.decompose import interval, summary
from gap_spark.ops.explain_tables import ScoreBins, SetTables

__all__ = ["ESTIMATORS", "atc_estimate", "calibrated_estimate", "estimates", "estimator_summary"]

ESTIMATORS = ("ac", "doc", "atc_confidence", "atc_negentropy", "importance_weighted", "calibrated")


def _survival(count: np.ndarray) -> np.ndarray:
    """``S[:, j]``: the share of rows in bins j and above, ``(R, G + 1)`` with ``S[:, 0] = 1``, ``S[:, G] = 0``."""
    tail = np.cumsum(count[:, ::-1], axis=1)[:, ::-1]
    total = count.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = tail / total
    return np.concatenate([share, np.zeros((len(count), 1))], axis=1)


def atc_estimate(val: ScoreBins, v2: ScoreBins, val_accuracy: np.ndarray) -> np.ndarray:
    """ATC on a score grid: v2's share of rows above the threshold that leaves val's accuracy above it.

    Parameters
    ----------
    val, v2 : ScoreBins
        Row counts per replicate and bin (bins in increasing score).
    val_accuracy : numpy.ndarray
        val's accuracy per replicate, ``(R,)``.

    Returns
    -------
    numpy.ndarray
        ``(R,)``.
    """
    s_val, s_v2 = _survival(val.count), _survival(v2.count)
    bins = val.count.shape[1]
    # The last bin start j whose share S[j] still reaches the accuracy; the threshold lies in bin j.
    j = np.clip((s_val >= val_accuracy[:, None]).sum(axis=1) - 1, 0, bins - 1)
    rows = np.arange(len(j))
    mass_val = s_val[rows, j] - s_val[rows, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.where(mass_val > 0, (s_val[rows, j] - val_accuracy) / mass_val, 0.0)
    theta = np.clip(theta, 0.0, 1.0)
    return np.asarray(s_v2[rows, j] - theta * (s_v2[rows, j] - s_v2[rows, j + 1]))


def calibrated_estimate(val: ScoreBins, v2: ScoreBins, groups: int) -> np.ndarray:
    """Histogram-binning calibration on val, averaged over v2: ``sum_g share_v2(g) * acc_val(g)``.

    The fine bins are merged into ``groups`` neighbouring groups of about equal val mass (the fine bins
    are val's quantiles). A group without val rows in a replicate uses its accuracy in the data, and
    failing that val's overall accuracy.

    Parameters
    ----------
    val, v2 : ScoreBins
        ``count`` and ``correct`` (val) per replicate and fine bin.
    groups : int
        Calibration bins.

    Returns
    -------
    numpy.ndarray
        ``(R,)``.
    """
    bins = val.count.shape[1]
    group_of = np.minimum(np.arange(bins) * groups // bins, groups - 1)

    def merge(a: np.ndarray) -> np.ndarray:
        out = np.zeros((len(a), groups))
        for g in range(groups):
            out[:, g] = a[:, group_of == g].sum(axis=1)
        return out

    n_val, right_val, n_v2 = merge(val.count), merge(val.correct), merge(v2.count)
    overall = right_val.sum(axis=1) / n_val.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = right_val / n_val
    fallback = np.where(np.isfinite(acc[0]), acc[0], overall[0])
    acc = np.where(n_val > 0, acc, fallback[None, :])
    share = n_v2 / n_v2.sum(axis=1, keepdims=True)
    return np.asarray((share * acc).sum(axis=1))


def estimates(val: SetTables, v2: SetTables, importance_weighted: np.ndarray,
              calibration_bins: int) -> dict[str, np.ndarray]:
    """Every estimator of :data:`ESTIMATORS`, per replicate; v2's labels are never read.

    Parameters
    ----------
    val : SetTables
    v2 : SetTables
        Only its score bins (counts and score sums) are read.
    importance_weighted : numpy.ndarray
        The density-ratio-weighted val accuracy per replicate (:func:`~gap_spark.ops.decompose.gap_parts`).
    calibration_bins : int
        Bins of the calibrated-confidence estimate.

    Returns
    -------
    dict
        Estimator name to ``(R,)``.
    """
    acc_val = val.accuracy
    conf_val, conf_v2 = val.bins["confidence"], v2.bins["confidence"]
    mean_val = conf_val.total.sum(axis=1) / conf_val.count.sum(axis=1)
    mean_v2 = conf_v2.total.sum(axis=1) / conf_v2.count.sum(axis=1)
    return {
        "ac": mean_v2,
        "doc": acc_val - (mean_val - mean_v2),
        "atc_confidence": atc_estimate(conf_val, conf_v2, acc_val),
        "atc_negentropy": atc_estimate(val.bins["negentropy"], v2.bins["negentropy"], acc_val),
        "importance_weighted": np.asarray(importance_weighted, dtype=float),
        "calibrated": calibrated_estimate(conf_val, conf_v2, calibration_bins),
    }


def estimator_summary(estimate: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """One estimator against the true v2 accuracy (both per replicate, fractions).

    Returns
    -------
    dict
        ``estimate, ci95`` (the estimate's interval), ``truth``, ``error`` (estimate minus truth),
        ``abs_error``, ``error_ci95`` (the interval of the paired differences) and ``covers_truth``
        (the estimate's interval holds the true accuracy).
    """
    est = summary(estimate)
    error = np.asarray(estimate) - np.asarray(truth)
    ci, value, true = est["ci95"], est["value"], float(truth[0])
    return {"estimate": value, "ci95": ci, "truth": true,
            "error": float(error[0]) if value is not None else None,
            "abs_error": abs(float(error[0])) if value is not None else None,
            "error_ci95": interval(error),
            "covers_truth": bool(ci[0] <= true <= ci[1]) if ci else None}
