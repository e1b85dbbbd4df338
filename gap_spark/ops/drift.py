"""Per-feature drift statistics in numpy: the histogram grid, KS and W1 with error bounds, the SMD.

The Spark passes that feed these (:mod:`gap_spark.ops.drift_spark`) count every set's values on one
fixed grid per feature (:class:`HistogramGrid`): ``bins`` equal bins over ``pooled mean +- range_sd *
pooled sd`` plus one overflow bin on each side reaching the observed min and max. Where the grid lies
changes how tight the bounds below are, never whether they hold.

**The sketch's error bound.** The histogram gives each set's empirical CDF *exactly* at every bin edge.
KS and W1 are computed from those edge values, with the CDFs taken as linear inside each bin. Within
bin ``k`` (width ``h_k``, masses ``p_a,k`` and ``p_b,k`` of the two sets) the true CDF difference stays
within ``max(p_a,k, p_b,k)`` of the linear one, so, with the exact sample statistics ``KS`` and ``W1``::

    0 <= KS - ks <= ks_error_bound          = max_k max(p_a,k, p_b,k)
    |W1 - wasserstein| <= wasserstein_error_bound = sum_k h_k * max(p_a,k, p_b,k)

For roughly Gaussian features with the defaults (1000 bins over +-5 sd) they come to about 0.005-0.01
for KS (the fullest bin: smaller with more rows) and 0.01 pooled sd for W1; more bins tighten them in
proportion. They are worst cases: measured against scipy, the actual differences are several times
smaller. Heavy tails loosen the W1 bound, since the overflow bins are wide. Means and standard
deviations are exact up to float64 rounding (:class:`Moments`, Chan's parallel merge).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.core.errors import DatasetError
from gap_spark.ops.frames import SET_COL

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HistogramGrid", "Moments", "histogram_distances", "standardised_mean_difference",
           "summarise_feature_shift"]


@dataclass(frozen=True)
class HistogramGrid:
    """One fixed grid per feature, shared by every set.

    Bin 0 holds the values below ``lo``, bins ``1..bins`` split ``[lo, hi]`` evenly (the last one closed)
    and bin ``bins + 1`` holds the values above ``hi``. The overflow bins reach the observed min and max,
    which the counting pass measures exactly, so :meth:`edges` takes them as arguments. Where the grid's
    range comes from (a sample, say) affects only how tight the error bounds are, never their validity.
    """

    lo: np.ndarray
    hi: np.ndarray
    bins: int

    @property
    def dim(self) -> int:
        return int(self.lo.shape[0])

    @property
    def slots(self) -> int:
        """Bins per feature, the two overflow bins included."""
        return self.bins + 2

    @classmethod
    def from_moments(cls, moments: "pd.DataFrame", bins: int, range_sd: float) -> "HistogramGrid":
        """The grid for per-set moments (``feature_moments`` collected, possibly of a sample).

        Parameters
        ----------
        moments : pandas.DataFrame
            Columns ``set, feature, n, mean, std, min, max``; features ``0..D-1`` for every set.
        bins : int
            Number of equal inner bins.
        range_sd : float
            The inner range is the pooled mean plus or minus this many pooled standard deviations,
            cut to the observed range.

        Returns
        -------
        HistogramGrid
            The grid; raises :class:`DatasetError` when a feature has no finite value.
        """
        dim = int(moments["feature"].max()) + 1
        n = np.zeros(dim)
        total = np.zeros(dim)
        low = np.full(dim, np.inf)
        high = np.full(dim, -np.inf)
        for _, group in moments.groupby(SET_COL):
            f = group["feature"].to_numpy()
            n[f] += group["n"].to_numpy()
            total[f] += group["n"].to_numpy() * group["mean"].to_numpy()
            low[f] = np.minimum(low[f], group["min"].to_numpy())
            high[f] = np.maximum(high[f], group["max"].to_numpy())
        if not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
            raise DatasetError("some features have no finite values (NaN or infinite features)")
        mean = total / np.maximum(n, 1)
        # Pooled variance = within-set sums of squares plus between-set spread of the means.
        ss = np.zeros(dim)
        for _, group in moments.groupby(SET_COL):
            f = group["feature"].to_numpy()
            gn = group["n"].to_numpy().astype(float)
            sd = np.nan_to_num(group["std"].to_numpy(dtype=float))
            ss[f] += (gn - 1).clip(min=0) * sd ** 2 + gn * (group["mean"].to_numpy() - mean[f]) ** 2
        sd = np.sqrt(ss / np.maximum(n - 1, 1))
        lo = np.clip(mean - range_sd * sd, low, high)
        hi = np.clip(mean + range_sd * sd, lo, high)
        return cls(lo=lo, hi=hi, bins=int(bins))

    def bin_index(self, x: np.ndarray) -> np.ndarray:
        """Bin of every value of ``x`` (rows x D), as int64 in ``[0, bins + 1]``."""
        width = (self.hi - self.lo) / self.bins
        inverse = np.divide(1.0, width, out=np.zeros_like(width), where=width > 0)
        index = np.floor((x - self.lo) * inverse)
        np.clip(index, 0, self.bins - 1, out=index)
        index += 1
        index[x < self.lo] = 0
        index[x > self.hi] = self.bins + 1
        return index.astype(np.int64)

    def edges(self, feature: int, low: float, high: float) -> np.ndarray:
        """The ``bins + 3`` bin edges of one feature, for values observed in ``[low, high]``."""
        inner = np.linspace(self.lo[feature], self.hi[feature], self.bins + 1)
        return np.concatenate([[min(low, inner[0])], inner, [max(high, inner[-1])]])


class Moments:
    """Running count, mean, M2 (sum of squared deviations), min and max of D features.

    Parameters
    ----------
    x : numpy.ndarray
        A (rows x D) block, at least one row; kept as float64.
    """

    def __init__(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.n = x.shape[0]
        self.mean = x.mean(axis=0)
        self.m2 = ((x - self.mean) ** 2).sum(axis=0)
        self.min, self.max = x.min(axis=0), x.max(axis=0)

    def merge(self, other: "Moments") -> None:
        """Add ``other``'s rows (Chan et al.'s merge: stable where a naive sum of squares would cancel)."""
        n = self.n + other.n
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.n * other.n / n)
        self.mean = self.mean + delta * (other.n / n)
        self.n = n
        self.min, self.max = np.minimum(self.min, other.min), np.maximum(self.max, other.max)


def histogram_distances(counts_a: np.ndarray, counts_b: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    """KS statistic and Wasserstein-1 distance of two samples binned on the same grid, with error bounds.

    Parameters
    ----------
    counts_a, counts_b : numpy.ndarray
        Counts per bin (length ``len(edges) - 1``) of the two samples; neither may be all zero.
    edges : numpy.ndarray
        Non-decreasing bin edges; a value ``v`` of bin ``k`` satisfies ``edges[k] <= v <= edges[k+1]``.

    Returns
    -------
    dict
        ``ks`` (a lower bound of the exact statistic), ``ks_error_bound`` (``0 <= KS - ks <= bound``),
        ``wasserstein`` and ``wasserstein_error_bound`` (``|W1 - wasserstein| <= bound``).
    """
    counts_a = np.asarray(counts_a, dtype=np.float64)
    counts_b = np.asarray(counts_b, dtype=np.float64)
    if counts_a.sum() <= 0 or counts_b.sum() <= 0:
        raise ValueError("both samples need at least one value")
    mass_a = counts_a / counts_a.sum()
    mass_b = counts_b / counts_b.sum()
    # CDF difference at every edge: the fraction of each sample in the bins to the left.
    diff = np.concatenate([[0.0], np.cumsum(mass_a) - np.cumsum(mass_b)])
    diff[-1] = 0.0  # both CDFs reach exactly 1 at the last edge; drop the rounding
    widths = np.diff(np.asarray(edges, dtype=np.float64))
    heavier = np.maximum(mass_a, mass_b)
    left, right = diff[:-1], diff[1:]
    abs_left, abs_right = np.abs(left), np.abs(right)
    # Integral of |linear| over each bin; where the sign changes it is d0^2 + d1^2 over 2 (|d0| + |d1|).
    crossing = left * right < 0
    denominator = np.where(crossing, abs_left + abs_right, 1.0)
    mean_abs = np.where(crossing, (left ** 2 + right ** 2) / (2 * denominator), (abs_left + abs_right) / 2)
    return {
        "ks": float(np.max(np.abs(diff))),
        "ks_error_bound": float(np.max(heavier)),
        "wasserstein": float(np.sum(widths * mean_abs)),
        "wasserstein_error_bound": float(np.sum(widths * heavier)),
    }


def standardised_mean_difference(mean_a: float, mean_b: float, std_a: float, std_b: float) -> float:
    """``(mean_b - mean_a) / sqrt((std_a^2 + std_b^2) / 2)``; 0 for two identical constants, NaN if undefined."""
    pooled = math.sqrt((std_a ** 2 + std_b ** 2) / 2) if np.isfinite(std_a) and np.isfinite(std_b) else math.nan
    if pooled > 0:
        return (mean_b - mean_a) / pooled
    return 0.0 if pooled == 0 and mean_a == mean_b else math.nan


def summarise_feature_shift(stats: "pd.DataFrame", pair: str, threshold: float, top: int) -> dict[str, Any]:
    """The ``features.<pair>`` block of shift.json from the collected statistics of one pair.

    Parameters
    ----------
    stats : pandas.DataFrame
        ``compare_sets`` collected (one row per pair and feature).
    pair : str
        The pair to summarise.
    threshold : float
        ``n_shifted`` counts the features with ``|smd| > threshold``.
    top : int
        How many features to list, ranked by ``|smd|``.

    Returns
    -------
    dict
        ``set_a, set_b, rows_a, rows_b, n_features, threshold, n_shifted, mean_abs_smd, max_ks,
        ks_error_bound, wasserstein_error_bound, top``; numbers that cannot be computed are NaN.
    """
    rows = stats[stats["pair"] == pair]
    if rows.empty:
        raise ValueError(f"no statistics for pair {pair!r}")
    abs_smd = rows["smd"].abs()
    ranked = rows.assign(_abs=abs_smd).sort_values(["_abs", "feature"], ascending=[False, True], na_position="last")
    keys = ("feature", "mean_a", "mean_b", "std_a", "std_b", "smd", "ks", "wasserstein")
    return {
        "set_a": str(rows["set_a"].iloc[0]), "set_b": str(rows["set_b"].iloc[0]),
        "rows_a": int(rows["n_a"].iloc[0]), "rows_b": int(rows["n_b"].iloc[0]),
        "n_features": len(rows),
        "threshold": float(threshold),
        "n_shifted": int((abs_smd > threshold).sum()),
        "mean_abs_smd": float(abs_smd.mean()),
        "max_ks": float(rows["ks"].max()),
        "ks_error_bound": float(rows["ks_error_bound"].max()),
        "wasserstein_error_bound": float(rows["wasserstein_error_bound"].max()),
        "top": [{k: (int(r[k]) if k == "feature" else float(r[k])) for k in keys}
                for _, r in ranked.head(top).iterrows()],
    }

