"""The shift stage: what differs between ImageNet-val and ImageNetV2, measured against a control pair.

Two pairs of sets are compared: ``val_v2`` (val against v2, the shift under study) and ``train_val``
(a ``shift.train_control_fraction`` sample of train against val, a control: the same labelling process,
so whatever it shows is the background level of difference).

Three kinds of evidence
-----------------------
1. **Per-feature statistics** (:func:`feature_shift_stats`): for every feature, the count, mean and
   standard deviation of both sets, the standardised mean difference
   ``smd = (mean_b - mean_a) / sqrt((sd_a^2 + sd_b^2) / 2)``, the two-sample Kolmogorov-Smirnov statistic
   and the Wasserstein-1 distance. All sets and all features are done in one pass over the data
   (:func:`feature_sketches`): per set and feature, count, mean, variance (Chan's parallel merge), min,
   max and exact counts on a fixed grid, the same grid for every set: ``shift.histogram_bins`` equal
   bins over ``pooled mean +- histogram_range_sd * pooled sd`` plus one overflow bin on each side
   reaching the observed min and max. The grid is placed beforehand from the moments of a random
   sample of each set (:func:`sample_grid`; only those rows go to Python); where it lies changes how
   tight the bounds below are, never whether they hold.

   The pass runs in ``mapInArrow`` with numpy over whole Arrow batches (one row = D values), so nothing
   is exploded to one row per value, and the per-partition partials merge in Spark SQL.

   **The sketch's error bound.** The histogram gives each set's empirical CDF *exactly* at every bin
   edge. KS and W1 are computed from those edge values, with the CDFs taken as linear inside each bin.
   Within bin ``k`` (width ``h_k``, masses ``p_a,k`` and ``p_b,k`` of the two sets) the true CDF
   difference stays within ``max(p_a,k, p_b,k)`` of the linear one, so, with the exact sample statistics
   ``KS`` and ``W1``::

       0 <= KS - ks <= ks_error_bound          = max_k max(p_a,k, p_b,k)
       |W1 - wasserstein| <= wasserstein_error_bound = sum_k h_k * max(p_a,k, p_b,k)

   Both bounds are computed from the data and stored per feature (``ks_error_bound``,
   ``wasserstein_error_bound``). For roughly Gaussian features with the defaults (1000 bins over +-5 sd)
   they come to about 0.005-0.01 for KS (the fullest bin: smaller with more rows) and 0.01 pooled sd
   for W1; more bins tighten them in proportion. They are worst cases: measured against scipy, the
   actual differences are several times smaller. Heavy tails loosen the W1 bound, since the overflow
   bins are wide. Means and standard deviations are exact up to float64 rounding.

2. **Domain classifier** (:func:`domain_auc`), a two-sample test: a sample of about
   ``shift.domain_sample_per_set`` rows per set with the same number of rows per class from both sets
   (:func:`balanced_sample`), ``shift.domain_folds``-fold cross-validated logistic regression with the
   folds taken within each class, on standardised features and on ``shift.domain_pca_k`` principal
   components of them. Matching the classes keeps the label shift (reported apart) out of this test and
   avoids the AUC falling below 0.5 under cross-validation when nothing shifts. The out-of-fold scores
   give the ROC AUC (``BinaryClassificationEvaluator``, exact: ``numBins=0``) and a 95% DeLong interval
   (:func:`delong_interval`). 0.5 means the sets cannot be told apart within classes. The features it
   leans on are those with the largest mean ``|coefficient|`` over the folds.

3. **Label and confidence shift**: total variation distance and a chi-square test of homogeneity
   between the label histograms of the full splits (:func:`label_shift`; train is not sampled here,
   only its label column is read) and, for every model whose predictions the
   evaluate stage wrote to ``RUN_DIR/predictions/<model>/{val,v2}/``, the confidence distributions on
   the two sets (:func:`confidence_shift`: mean, quantiles, KS and W1 with the same bounds as above).

Outputs: ``RUN_DIR/shift.json`` (see :func:`run_shift`), ``RUN_DIR/shift/feature_stats/`` (Parquet) and
``RUN_DIR/shift/feature_stats.csv``, one row per feature and pair.
"""
from __future__ import annotations

import io
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.contracts.dataset import manifest_summary, read_dataset
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

# (pair name, set a, set b): statistics are "b relative to a" (smd = mean_b - mean_a over the pooled sd).
PAIRS: tuple[tuple[str, str, str], ...] = (("val_v2", "val", "v2"), ("train_val", "train", "val"))
FEATURES_COL = "features"
SET_COL = "set"
LABEL_COL = "label"
CONFIDENCE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Rows of a batch binned at a time: bounds the float64 scratch arrays to about 4096 x D x 8 bytes.
_CHUNK_ROWS = 4096
_SET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_SET_NAMES = {"feature", SET_COL}
# Rows per set whose moments place the histogram grid (the grid only sets how tight the bounds are).
GRID_SAMPLE_ROWS = 5000

MOMENTS_SCHEMA = "set string, feature int, n long, mean double, std double, min double, max double"
_PARTIAL_MOMENTS_SCHEMA = "set string, feature int, n long, mean double, m2 double, min double, max double"
SKETCHES_SCHEMA = MOMENTS_SCHEMA + ", counts array<bigint>"
STATS_SCHEMA = ("pair string, set_a string, set_b string, feature int, n_a long, n_b long, mean_a double, "
                "mean_b double, std_a double, std_b double, smd double, ks double, ks_error_bound double, "
                "wasserstein double, wasserstein_error_bound double")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ShiftSettings:
    """The ``shift`` section of the config, checked."""

    histogram_bins: int
    histogram_range_sd: float
    smd_threshold: float
    top_features: int
    domain_sample_per_set: int
    domain_folds: int
    domain_pca_k: int
    domain_reg_param: float
    domain_max_iter: int
    seed: int
    train_control_fraction: float

    @classmethod
    def from_config(cls, config: "Config") -> "ShiftSettings":
        """Read and validate ``config['shift']``; a bad value raises :class:`ConfigError`."""
        s = config.section("shift")
        casts = {"histogram_bins": int, "histogram_range_sd": float, "smd_threshold": float, "top_features": int,
                 "domain_sample_per_set": int, "domain_folds": int, "domain_pca_k": int,
                 "domain_reg_param": float, "domain_max_iter": int, "seed": int, "train_control_fraction": float}
        values = {}
        for name, cast in casts.items():
            try:
                values[name] = cast(s[name])
            except (TypeError, ValueError):
                raise ConfigError(f"shift.{name} must be a number, got {s[name]!r}") from None
        settings = cls(**values)
        checks = [
            (settings.histogram_bins >= 10, "shift.histogram_bins must be at least 10"),
            (settings.histogram_range_sd > 0, "shift.histogram_range_sd must be positive"),
            (settings.smd_threshold > 0, "shift.smd_threshold must be positive"),
            (settings.top_features >= 1, "shift.top_features must be at least 1"),
            (settings.domain_folds >= 2, "shift.domain_folds must be at least 2"),
            (settings.domain_sample_per_set >= 10 * settings.domain_folds,
             "shift.domain_sample_per_set must be at least 10 x shift.domain_folds"),
            (settings.domain_pca_k >= 1, "shift.domain_pca_k must be at least 1"),
            (settings.domain_reg_param >= 0, "shift.domain_reg_param must not be negative"),
            (settings.domain_max_iter >= 1, "shift.domain_max_iter must be at least 1"),
            (0 < settings.train_control_fraction <= 1, "shift.train_control_fraction must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return settings


# --------------------------------------------------------------------------- numpy core


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
        """The grid for per-set moments (:func:`feature_moments` collected, possibly of a sample).

        Parameters
        ----------
        moments : pandas.DataFrame
            Columns ``set, feature, n, mean, std, min, max``; features ``0..D-1`` for every set.
        bins : int
            Number of equal inner bins.
        range_sd : float
            The inner range is the pooled mean plus or minus this many pooled standard deviations,
            cut to the observed range.
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


def delong_interval(labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """ROC AUC of ``scores`` for ``labels`` (1 = positive) with DeLong's normal-approximation interval.

    Ties count one half. The variance is ``var(V10)/m + var(V01)/n`` over the structural components
    (placement values) of the ``m`` positives and ``n`` negatives (DeLong, DeLong and Clarke-Pearson 1988).

    Returns
    -------
    dict
        ``auc``, ``se``, ``half_width`` (``z * se``) and ``ci`` (``auc -+ half_width``, clipped to
        ``[0, 1]``).
    """
    from scipy.stats import norm, rankdata

    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    m, n = len(positives), len(negatives)
    if m < 2 or n < 2:
        raise ValueError(f"the AUC interval needs at least 2 positives and 2 negatives, got {m} and {n}")
    ranks = rankdata(np.concatenate([positives, negatives]))
    # Negatives below each positive (ties one half), and positives above each negative.
    v10 = (ranks[:m] - rankdata(positives)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(negatives)) / m
    auc = float(v10.mean())
    se = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    half_width = float(norm.ppf(0.5 + level / 2)) * se
    return {"auc": auc, "se": se, "half_width": half_width,
            "ci": [max(0.0, auc - half_width), min(1.0, auc + half_width)]}


# --------------------------------------------------------------------------- Arrow batch helpers


def _feature_matrix(batch: "pa.RecordBatch", dim: int) -> np.ndarray:
    """The ``features`` list column of a batch as a (rows x dim) float32 view."""
    column = batch.column(FEATURES_COL)
    if column.null_count:
        raise ValueError("features must not be null")
    lengths = np.diff(np.asarray(column.offsets))
    if lengths.size and (lengths.min() != dim or lengths.max() != dim):
        bad = int(lengths[lengths != dim][0])
        raise ValueError(f"every features array must have length {dim}, found one of length {bad}")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), dim)


def _rows_by_set(batch: "pa.RecordBatch") -> Iterator[tuple[str, np.ndarray | None]]:
    """(set name, row mask or None for the whole batch) for every set present in the batch."""
    names = batch.column(SET_COL).to_numpy(zero_copy_only=False)
    unique = np.unique(names)
    if len(unique) == 1:  # the usual case: a partition holds rows of one set only
        yield str(unique[0]), None
        return
    for name in unique:
        yield str(name), names == name


class _Moments:
    """Running count, mean, M2 (sum of squared deviations), min and max of D features."""

    def __init__(self, x: np.ndarray):
        x = x.astype(np.float64)
        self.n = x.shape[0]
        self.mean = x.mean(axis=0)
        self.m2 = ((x - self.mean) ** 2).sum(axis=0)
        self.min, self.max = x.min(axis=0), x.max(axis=0)

    def merge(self, other: "_Moments") -> None:
        # Chan et al.'s merge: stable where a naive sum of squares would cancel.
        n = self.n + other.n
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.n * other.n / n)
        self.mean = self.mean + delta * (other.n / n)
        self.n = n
        self.min, self.max = np.minimum(self.min, other.min), np.maximum(self.max, other.max)

    def columns(self, name: str) -> dict:
        import pyarrow as pa

        dim = len(self.mean)
        return {"set": pa.array([name] * dim, pa.string()), "feature": pa.array(np.arange(dim, dtype=np.int32)),
                "n": pa.array(np.full(dim, self.n, dtype=np.int64)), "mean": pa.array(self.mean),
                "m2": pa.array(self.m2), "min": pa.array(self.min), "max": pa.array(self.max)}


def _partition_sketch(batches: Iterator["pa.RecordBatch"], dim: int,
                      grid: HistogramGrid | None) -> Iterator["pa.RecordBatch"]:
    """mapInArrow body: per set and feature, the partition's moments and (with a grid) bin counts."""
    import pyarrow as pa

    moments: dict[str, _Moments] = {}
    counts: dict[str, np.ndarray] = {}
    slots = grid.slots if grid is not None else 0
    offsets = (np.arange(dim, dtype=np.int64) * slots)[None, :]
    for batch in batches:
        if batch.num_rows == 0:
            continue
        matrix = _feature_matrix(batch, dim)
        for name, rows in _rows_by_set(batch):
            x = matrix if rows is None else matrix[rows]
            for start in range(0, x.shape[0], _CHUNK_ROWS):
                chunk = x[start:start + _CHUNK_ROWS]
                part = _Moments(chunk)
                if name in moments:
                    moments[name].merge(part)
                else:
                    moments[name] = part
                if grid is not None:
                    index = grid.bin_index(chunk) + offsets
                    total = counts.setdefault(name, np.zeros(dim * slots, dtype=np.int64))
                    total += np.bincount(index.ravel(), minlength=dim * slots)
    list_offsets = pa.array(np.arange(0, dim * slots + 1, slots, dtype=np.int32)) if grid is not None else None
    for name, m in moments.items():
        columns = m.columns(name)
        if grid is not None:
            columns["counts"] = pa.ListArray.from_arrays(list_offsets, pa.array(counts[name]))
        yield pa.RecordBatch.from_pydict(columns)


_MOMENT_COLUMNS = ("n", "mean", "std", "min", "max")


def _compare_partition(frames: Iterator["pd.DataFrame"], pairs: Sequence[tuple[str, str, str]],
                       grid: HistogramGrid) -> Iterator["pd.DataFrame"]:
    """mapInPandas body: one output row per pair for every input row (one feature, all sets side by side)."""
    import pandas as pd

    columns = [c.split()[0] for c in STATS_SCHEMA.split(", ")]
    for frame in frames:
        rows = []
        for i in range(len(frame)):
            feature = int(frame["feature"].iat[i])
            for pair, set_a, set_b in pairs:
                a = {c: frame[f"{set_a}_{c}"].iat[i] for c in (*_MOMENT_COLUMNS, "counts")}
                b = {c: frame[f"{set_b}_{c}"].iat[i] for c in (*_MOMENT_COLUMNS, "counts")}
                std_a = math.nan if a["std"] is None else float(a["std"])
                std_b = math.nan if b["std"] is None else float(b["std"])
                edges = grid.edges(feature, min(a["min"], b["min"]), max(a["max"], b["max"]))
                rows.append({
                    "pair": pair, "set_a": set_a, "set_b": set_b, "feature": feature,
                    "n_a": int(a["n"]), "n_b": int(b["n"]), "mean_a": float(a["mean"]), "mean_b": float(b["mean"]),
                    "std_a": std_a, "std_b": std_b,
                    "smd": standardised_mean_difference(float(a["mean"]), float(b["mean"]), std_a, std_b),
                    **histogram_distances(np.asarray(a["counts"]), np.asarray(b["counts"]), edges),
                })
        yield pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- Spark: per-feature statistics


def tag_sets(frames: Mapping[str, "DataFrame"], column: str = FEATURES_COL) -> "DataFrame":
    """One frame of ``set, features`` rows from named frames (the array column is taken from ``column``).

    Parameters
    ----------
    frames : mapping of str to DataFrame
        Set name (a plain identifier, not ``feature`` or ``set``) to a frame with an array column.
    column : str
        The array column to read from every frame.
    """
    from pyspark.sql import functions as F

    if not frames:
        raise ValueError("tag_sets needs at least one frame")
    tagged = None
    for name, frame in frames.items():
        if not _SET_NAME.match(name) or name in _RESERVED_SET_NAMES:
            raise ValueError(f"set name {name!r} must be a plain identifier other than {sorted(_RESERVED_SET_NAMES)}")
        part = frame.select(F.lit(name).alias(SET_COL), F.col(column).alias(FEATURES_COL))
        tagged = part if tagged is None else tagged.unionByName(part)
    return tagged


def _merge_partials(partials: "DataFrame", with_counts: bool, slots: int = 0) -> "DataFrame":
    """Merge per-partition partials into one row per set and feature (moments, and counts if present)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_feature = Window.partitionBy(SET_COL, "feature")
    # Chan's merge of the partials: M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2), no cancellation.
    partials = (partials
                .withColumn("_n", F.sum("n").over(by_feature))
                .withColumn("_mean", F.sum(F.col("n") * F.col("mean")).over(by_feature) / F.col("_n")))
    aggregates = [
        F.first("_n").alias("n"),
        F.first("_mean").alias("mean"),
        (F.sum("m2") + F.sum(F.col("n") * (F.col("mean") - F.col("_mean")) ** 2)).alias("_m2"),
        F.min("min").alias("min"),
        F.max("max").alias("max"),
    ]
    if with_counts:
        zero = F.array_repeat(F.lit(0).cast("bigint"), slots)
        aggregates.append(F.reduce(F.collect_list("counts"), zero,
                                   lambda acc, c: F.zip_with(acc, c, lambda x, y: x + y)).alias("counts"))
    merged = partials.groupBy(SET_COL, "feature").agg(*aggregates)
    std = F.when(F.col("n") > 1, F.sqrt(F.greatest(F.col("_m2"), F.lit(0.0)) / (F.col("n") - 1)))
    return merged.select(SET_COL, "feature", F.col("n").cast("long").alias("n"), "mean", std.alias("std"),
                         "min", "max", *(["counts"] if with_counts else []))


def feature_moments(tagged: "DataFrame", dim: int) -> "DataFrame":
    """Count, mean, sample standard deviation, min and max of every feature in every set (one pass).

    Parameters
    ----------
    tagged : DataFrame
        ``set string, features array<float>`` (see :func:`tag_sets`); every array has length ``dim``.
    dim : int
        Feature dimension D.

    Returns
    -------
    DataFrame
        ``set, feature, n, mean, std, min, max`` (:data:`MOMENTS_SCHEMA`), one row per set and feature;
        ``std`` is null for a set of one row.
    """
    partials = tagged.mapInArrow(partial(_partition_sketch, dim=int(dim), grid=None), _PARTIAL_MOMENTS_SCHEMA)
    return _merge_partials(partials, with_counts=False)


def feature_sketches(tagged: "DataFrame", grid: HistogramGrid) -> "DataFrame":
    """Moments and exact bin counts on ``grid`` of every feature in every set (one pass).

    Returns
    -------
    DataFrame
        ``set, feature, n, mean, std, min, max, counts array<bigint>`` (:data:`SKETCHES_SCHEMA`), with
        ``grid.slots`` counts per row.
    """
    partials = tagged.mapInArrow(partial(_partition_sketch, dim=grid.dim, grid=grid),
                                 _PARTIAL_MOMENTS_SCHEMA + ", counts array<bigint>")
    return _merge_partials(partials, with_counts=True, slots=grid.slots)


def sample_grid(frames: Mapping[str, "DataFrame"], dim: int, bins: int, range_sd: float,
                sample_rows: int = GRID_SAMPLE_ROWS, seed: int = 0) -> HistogramGrid:
    """The histogram grid from the moments of a random sample of about ``sample_rows`` rows per set.

    The sample only places the grid; the counting pass is exact whatever the grid, and values outside
    it land in the overflow bins. Raises :class:`DatasetError` when a set is empty.
    """
    samples = {}
    for name, frame in frames.items():
        count = frame.count()
        if count == 0:
            raise DatasetError(f"set {name!r} has no rows: nothing to compare")
        fraction = sample_rows / count
        samples[name] = frame if fraction >= 1 else frame.sample(withReplacement=False, fraction=fraction, seed=seed)
    moments = feature_moments(tag_sets(samples), dim).toPandas()
    if moments.empty:
        raise DatasetError("the sample for the histogram grid has no rows")
    return HistogramGrid.from_moments(moments, bins, range_sd)


def compare_sets(sketches: "DataFrame", grid: HistogramGrid, pairs: Sequence[tuple[str, str, str]]) -> "DataFrame":
    """Per-feature comparison of each pair of sets: means, sds, SMD, KS and W1 with their error bounds.

    Parameters
    ----------
    sketches : DataFrame
        :func:`feature_sketches` on ``grid``, with rows for every set the pairs name.
    grid : HistogramGrid
        The grid the counts were taken on.
    pairs : sequence of (pair, set_a, set_b)
        The comparisons; statistics are b relative to a.

    Returns
    -------
    DataFrame
        :data:`STATS_SCHEMA`, one row per pair and feature.
    """
    from pyspark.sql import functions as F

    set_names = sorted({name for _, a, b in pairs for name in (a, b)})
    aggregates = [F.first(c).alias(c) for c in (*_MOMENT_COLUMNS, "counts")]
    # One row per feature with every set's columns side by side: <set>_n, <set>_mean, ..., <set>_counts.
    wide = (sketches.filter(F.col(SET_COL).isin(set_names))
            .groupBy("feature").pivot(SET_COL, set_names).agg(*aggregates))
    return wide.mapInPandas(partial(_compare_partition, pairs=tuple(pairs), grid=grid), STATS_SCHEMA)


def feature_shift_stats(frames: Mapping[str, "DataFrame"], pairs: Sequence[tuple[str, str, str]], dim: int,
                        bins: int = 1000, range_sd: float = 5.0, seed: int = 0,
                        grid_sample_rows: int = GRID_SAMPLE_ROWS) -> "DataFrame":
    """Per-feature statistics of every pair, for all sets and features in one pass over the data.

    A sample of each set places the grid first (:func:`sample_grid`: counts, then a scan that sends only
    the sampled rows to Python); the full pass runs when the returned frame is used, so persist it if it
    is used more than once.

    Parameters
    ----------
    frames : mapping of str to DataFrame
        Set name to a frame with ``features array<float>`` of length ``dim``.
    pairs : sequence of (pair, set_a, set_b)
        The comparisons, naming sets of ``frames``.
    dim : int
        Feature dimension D.
    bins, range_sd : int, float
        The histogram grid (see :class:`HistogramGrid`): the error bounds shrink like ``1 / bins``.
    seed, grid_sample_rows : int
        Seed and rows per set of the grid sample.

    Returns
    -------
    DataFrame
        :data:`STATS_SCHEMA`, one row per pair and feature.
    """
    chosen = {name: frames[name] for name in sorted({s for _, a, b in pairs for s in (a, b)})}
    grid = sample_grid(chosen, dim, bins, range_sd, sample_rows=grid_sample_rows, seed=seed)
    return compare_sets(feature_sketches(tag_sets(chosen), grid), grid, pairs)


def summarise_feature_shift(stats: "pd.DataFrame", pair: str, threshold: float, top: int) -> dict[str, Any]:
    """The ``features.<pair>`` block of shift.json from the collected statistics of one pair.

    Features are ranked by ``|smd|``; ``n_shifted`` counts those with ``|smd| > threshold``.
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
        "mean_abs_smd": _finite(abs_smd.mean()),
        "max_ks": _finite(rows["ks"].max()),
        "ks_error_bound": _finite(rows["ks_error_bound"].max()),
        "wasserstein_error_bound": _finite(rows["wasserstein_error_bound"].max()),
        "top": [{k: (int(r[k]) if k == "feature" else _finite(r[k])) for k in keys}
                for _, r in ranked.head(top).iterrows()],
    }


# --------------------------------------------------------------------------- Spark: domain classifier


def matched_quotas(counts_a: Mapping[Any, int], counts_b: Mapping[Any, int], rows_per_set: int,
                   seed: int = 0) -> dict[Any, int]:
    """Rows to take per stratum from *each* set: the same number from both, about ``rows_per_set`` in all.

    A stratum gets at most the rows both sets have of it; the total is filled evenly (the largest equal
    quota every stratum can take, then one more for randomly chosen strata that still have rows).

    Parameters
    ----------
    counts_a, counts_b : mapping of stratum to int
        Rows per stratum (class) in each set.
    rows_per_set : int
        Target rows per set.
    seed : int
        Seed of the choice of strata that take one more row.

    Returns
    -------
    dict
        Stratum to quota, strata present in both sets only; the quotas sum to
        ``min(rows_per_set, sum of min(counts_a, counts_b))``.
    """
    shared = sorted(set(counts_a) & set(counts_b), key=repr)
    room = np.array([min(int(counts_a[c]), int(counts_b[c])) for c in shared], dtype=np.int64)
    if room.sum() <= rows_per_set:
        return {c: int(r) for c, r in zip(shared, room) if r > 0}
    # The largest q with sum(min(room, q)) <= rows_per_set, by bisection on [0, max(room)].
    low, high = 0, int(room.max())
    while low < high:
        mid = (low + high + 1) // 2
        if np.minimum(room, mid).sum() <= rows_per_set:
            low = mid
        else:
            high = mid - 1
    quota = np.minimum(room, low)
    left = int(rows_per_set - quota.sum())
    candidates = np.flatnonzero(room > low)
    chosen = np.random.default_rng(seed).choice(candidates, size=left, replace=False)
    quota[chosen] += 1
    return {c: int(q) for c, q in zip(shared, quota) if q > 0}


def balanced_sample(df_a: "DataFrame", df_b: "DataFrame", rows_per_set: int, seed: int,
                    strata: str | None = LABEL_COL) -> "DataFrame":
    """Random rows of two frames, the same number from each, and within each class the same number too.

    Matching the classes matters for the domain classifier. The features say which class a row is,
    so a sample whose sets differ in class make-up lets the classifier score the classes, not a shift
    (that is the label shift, measured apart). Worse, under cross-validation a class with more rows of
    one set in the training folds has fewer of it in the held-out fold, which drives the AUC *below*
    0.5 when there is no shift at all. With the same rows per class and set, and folds taken within
    each class (:func:`domain_auc` uses ``stratum_rank``), neither can happen.

    Parameters
    ----------
    df_a, df_b : DataFrame
        Frames with ``features`` and, unless ``strata`` is None, the class column ``strata``.
    rows_per_set : int
        Target rows per set (fewer when the classes the sets share have fewer rows).
    seed : int
        Seed of the sampling.
    strata : str or None
        The class column to match on; None samples each set as a whole.

    Returns
    -------
    DataFrame
        ``features``, ``label`` (0.0 for rows of ``df_a``, 1.0 for rows of ``df_b``), ``stratum`` and
        ``stratum_rank`` (1, 2, ... in random order within each stratum and set).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frames = []
    for frame in (df_a, df_b):
        stratum = F.col(strata).cast("long") if strata else F.lit(0).cast("long")
        frames.append(frame.select(F.col(FEATURES_COL), stratum.alias("stratum")))
    counts = [{int(r["stratum"]): int(r["count"]) for r in f.groupBy("stratum").count().collect()} for f in frames]
    quotas = matched_quotas(counts[0], counts[1], int(rows_per_set), seed)
    if not quotas:
        raise DatasetError("cannot sample for the domain classifier: the two sets share no class")

    parts = []
    for i, (frame, count) in enumerate(zip(frames, counts)):
        # Bernoulli sampling per class with a margin (about 3 sd plus 10 rows), then exact counts below.
        fractions = {c: min(1.0, (1.1 * q + 3 * math.sqrt(q) + 10) / count[c]) for c, q in quotas.items()}
        sampled = frame.sampleBy("stratum", fractions, seed=seed + 1 + i)
        parts.append(sampled.withColumn(LABEL_COL, F.lit(float(i))))
    both = parts[0].unionByName(parts[1]).withColumn("_order", F.rand(seed + 3))
    quota_frame = df_a.sparkSession.createDataFrame(list(quotas.items()), "stratum long, _quota long")
    group, stratum = Window.partitionBy("stratum", LABEL_COL), Window.partitionBy("stratum")
    both = (both.join(F.broadcast(quota_frame), "stratum")
            .withColumn("stratum_rank", F.row_number().over(group.orderBy("_order")))
            .withColumn("_available", F.count(F.lit(1)).over(group)))
    # Both sets take the same number per class, even where the Bernoulli step fell short for one.
    take = F.least(F.col("_quota"), F.min("_available").over(stratum))
    both = (both.withColumn("_sets", F.size(F.collect_set(LABEL_COL).over(stratum)))
            .withColumn("_take", take)
            .filter((F.col("_sets") == 2) & (F.col("stratum_rank") <= F.col("_take"))))
    return both.select(FEATURES_COL, LABEL_COL, "stratum", "stratum_rank")


def _domain_pipeline(pca_k: int | None, reg_param: float, max_iter: int):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import PCA, StandardScaler

    stages: list = [StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True)]
    column = "scaled"
    if pca_k is not None:
        stages.append(PCA(k=pca_k, inputCol="scaled", outputCol="components"))
        column = "components"
    # The features are standardised already, so the coefficients (and the penalty) are on that scale.
    stages.append(LogisticRegression(featuresCol=column, labelCol=LABEL_COL, regParam=reg_param,
                                     elasticNetParam=0.0, maxIter=max_iter, standardization=pca_k is not None))
    return Pipeline(stages=stages)


def cross_validated_scores(data: "DataFrame", folds: int, pca_k: int | None, reg_param: float,
                           max_iter: int) -> tuple["DataFrame", list[np.ndarray]]:
    """Out-of-fold probability of label 1 for every row, and the coefficients of each fold's model.

    Parameters
    ----------
    data : DataFrame
        ``vector`` (ml Vector), ``label`` (0.0/1.0) and ``fold`` (int in ``[0, folds)``); persist it.

    Returns
    -------
    (DataFrame, list of numpy.ndarray)
        ``label, score, fold`` for every row (not persisted), and one coefficient vector per fold.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = None
    coefficients = []
    for fold in range(folds):
        model = _domain_pipeline(pca_k, reg_param, max_iter).fit(data.filter(F.col("fold") != fold))
        coefficients.append(model.stages[-1].coefficients.toArray())
        held_out = model.transform(data.filter(F.col("fold") == fold)).select(
            LABEL_COL, vector_to_array("probability")[1].alias("score"), "fold")
        scored = held_out if scored is None else scored.unionByName(held_out)
    assert scored is not None
    return scored, coefficients


def domain_auc(sample: "DataFrame", folds: int = 3, seed: int = 13, pca_k: int | None = None,
               reg_param: float = 0.01, max_iter: int = 100, top_features: int = 20) -> dict[str, Any]:
    """Cross-validated ROC AUC of a logistic regression telling label 0 from label 1.

    Parameters
    ----------
    sample : DataFrame
        ``features array<float>, label double`` and, optionally, ``stratum`` and ``stratum_rank``
        (see :func:`balanced_sample`).
    folds : int
        Number of cross-validation folds. With ``stratum_rank``, each set's rows, ordered by class and
        rank, are dealt round-robin (the n-th row goes to fold ``(n - 1) mod folds``), so every fold
        has the same rows per class from both sets; otherwise folds are random.
    seed : int
        Seed of the fold assignment.
    pca_k : int or None
        Also report the AUC on this many principal components of the standardised features
        (``auc_pca``); None skips it.
    reg_param, max_iter : float, int
        L2 penalty and iteration limit of the logistic regression.
    top_features : int
        How many features to list by mean ``|coefficient|`` over the folds.

    Returns
    -------
    dict
        ``auc`` (BinaryClassificationEvaluator on all out-of-fold scores), ``ci95`` (DeLong), ``se``,
        ``fold_auc``; the same four with ``_pca`` (and ``pca_k``, cut to D) when ``pca_k`` is given;
        ``rows`` (``{"a": label-0 rows, "b": label-1 rows}``), ``rows_per_set`` (the smaller),
        ``folds`` and ``top_features`` (``[{"feature", "importance", "coefficient"}]``, importance =
        ``|mean coefficient|`` on standardised features).
    """
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    if "stratum_rank" in sample.columns:
        # Deal each set's rows, ordered by class then rank, round-robin into the folds. Both sets have the
        # same rows per class, so the n-th row of either set has the same class and fold: every fold holds
        # the same rows per class from both sets, even when most classes have a single row per set.
        from pyspark.sql import Window

        keys = [c for c in ("stratum", "stratum_rank") if c in sample.columns]
        order = Window.partitionBy(LABEL_COL).orderBy(*keys)
        fold = ((F.row_number().over(order) - 1) % folds).cast("int")
    else:
        fold = F.floor(F.rand(seed) * folds).cast("int")
    data = sample.select(array_to_vector(FEATURES_COL).alias("vector"), F.col(LABEL_COL).cast("double"),
                         fold.alias("fold")).persist()
    try:
        summary = data.groupBy(LABEL_COL).agg(F.count(F.lit(1)).alias("rows"),
                                              F.max(F.size(vector_to_array("vector"))).alias("dim")).collect()
        counts = {int(r[LABEL_COL]): int(r["rows"]) for r in summary}
        if counts.get(0, 0) < folds or counts.get(1, 0) < folds:
            raise DatasetError(f"the domain classifier needs at least {folds} rows of each set, got {counts}")
        dim = max(int(r["dim"]) for r in summary)
        evaluator = BinaryClassificationEvaluator(rawPredictionCol="score", labelCol=LABEL_COL,
                                                  metricName="areaUnderROC", numBins=0)
        out: dict[str, Any] = {"rows": {"a": counts.get(0, 0), "b": counts.get(1, 0)},
                               "rows_per_set": min(counts.get(0, 0), counts.get(1, 0)), "folds": folds}
        variants = [("", None)]
        if pca_k is not None:
            out["pca_k"] = min(int(pca_k), dim)
            variants.append(("_pca", out["pca_k"]))
        for suffix, k in variants:
            scored, coefficients = cross_validated_scores(data, folds, k, reg_param, max_iter)
            scored = scored.persist()
            try:
                auc = float(evaluator.evaluate(scored))
                local = scored.toPandas()  # the out-of-fold scores of the sample: small
            finally:
                scored.unpersist()
            interval = delong_interval(local[LABEL_COL].to_numpy(), local["score"].to_numpy())
            half = interval["half_width"]
            out[f"auc{suffix}"] = auc
            # DeLong's interval, centred on the evaluator's AUC (the two agree; numBins=0 is exact).
            out[f"ci95{suffix}"] = [max(0.0, auc - half), min(1.0, auc + half)]
            out[f"se{suffix}"] = interval["se"]
            out[f"fold_auc{suffix}"] = [
                _fold_auc(local[local["fold"] == f]) for f in range(folds)]
            if k is None:
                mean_coefficients = np.mean(coefficients, axis=0)
                order = np.argsort(-np.abs(mean_coefficients), kind="stable")[:top_features]
                out["top_features"] = [{"feature": int(i), "importance": float(abs(mean_coefficients[i])),
                                        "coefficient": float(mean_coefficients[i])} for i in order]
        return out
    finally:
        data.unpersist()


def _fold_auc(frame: "pd.DataFrame") -> float | None:
    labels = frame[LABEL_COL].to_numpy()
    if (labels == 1).sum() < 2 or (labels == 0).sum() < 2:
        return None
    return delong_interval(labels, frame["score"].to_numpy())["auc"]


# --------------------------------------------------------------------------- labels and confidence


def label_counts(frames: Mapping[str, "DataFrame"]) -> "DataFrame":
    """``set, label, count`` for all named frames in one job (reads only the label column)."""
    from pyspark.sql import functions as F

    tagged = None
    for name, frame in frames.items():
        part = frame.select(F.lit(name).alias(SET_COL), F.col(LABEL_COL).cast("int").alias(LABEL_COL))
        tagged = part if tagged is None else tagged.unionByName(part)
    if tagged is None:
        raise ValueError("label_counts needs at least one frame")
    return tagged.groupBy(SET_COL, LABEL_COL).count()


def label_shift(counts: "pd.DataFrame", set_a: str, set_b: str) -> dict[str, Any]:
    """Total variation distance and chi-square test of homogeneity between two label histograms.

    Parameters
    ----------
    counts : pandas.DataFrame
        :func:`label_counts` collected (``set, label, count``; one row per label present: small).

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
        Grid of the KS/W1 histogram sketch (same bounds as :func:`histogram_distances`).
    names : (str, str)
        Keys of the two per-set summaries.

    Returns
    -------
    dict
        ``{names[0]: S, names[1]: S, "mean_difference", "ks", "ks_error_bound", "wasserstein",
        "wasserstein_error_bound"}`` with S = ``rows, mean, std, q05, q25, median, q75, q95``
        (``mean_true_prob`` too when the column exists); differences are b minus a.
    """
    from pyspark.sql import functions as F

    frames = {"a": pred_a, "b": pred_b}
    arrays = {k: f.select(F.array(F.col("confidence").cast("float")).alias(FEATURES_COL)) for k, f in frames.items()}
    stats = feature_shift_stats(arrays, [("confidence", "a", "b")], 1, bins, range_sd).toPandas().iloc[0]
    out: dict[str, Any] = {}
    for key, name in zip(("a", "b"), names):
        frame = frames[key]
        aggs = [F.count(F.lit(1)).alias("rows"), F.avg("confidence").alias("mean"),
                F.stddev("confidence").alias("std"),
                F.percentile_approx("confidence", list(CONFIDENCE_QUANTILES), 10000).alias("quantiles")]
        if "true_prob" in frame.columns:
            aggs.append(F.avg("true_prob").alias("mean_true_prob"))
        row = frame.agg(*aggs).first().asDict()
        summary = {"rows": int(row["rows"]), "mean": _finite(row["mean"]), "std": _finite(row["std"])}
        for q, value in zip(("q05", "q25", "median", "q75", "q95"), row["quantiles"] or []):
            summary[q] = _finite(value)
        if "mean_true_prob" in row:
            summary["mean_true_prob"] = _finite(row["mean_true_prob"])
        out[name] = summary
    out["mean_difference"] = _finite(stats["mean_b"] - stats["mean_a"])
    for key in ("ks", "ks_error_bound", "wasserstein", "wasserstein_error_bound"):
        out[key] = _finite(stats[key])
    return out


def find_predictions(run_dir: str, splits: tuple[str, str] = ("val", "v2")) -> dict[str, dict[str, str]]:
    """``{model: {split: path}}`` for every model with predictions on both splits under ``run_dir``."""
    root = fs.join(run_dir, "predictions")
    if not fs.is_dir(root):
        return {}
    found = {}
    for model in fs.list_dir(root):
        paths = {split: fs.join(root, model, split) for split in splits}
        if all(fs.is_dir(p) for p in paths.values()):
            found[model] = paths
    return found


# --------------------------------------------------------------------------- the stage


def _finite(value: Any) -> float | None:
    """A JSON-safe float: None for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_shift(spark: "SparkSession", config: "Config", paths: "Paths") -> dict:
    """Stage entry point: write ``RUN_DIR/shift.json`` and the per-feature tables.

    shift.json holds ``features`` (per pair: ``n_features, threshold, n_shifted, top`` and the error
    bounds), ``domain_classifier`` (per pair: ``auc, ci95, auc_pca, ci95_pca, rows_per_set,
    top_features``), ``labels`` (per pair: TVD and chi-square), ``confidence`` (per model, only when
    predictions exist), ``dataset``, ``settings``, ``phase_seconds`` and ``seconds``. The pairs are
    ``val_v2`` and, when the dataset has a train split, ``train_val`` (the control).
    """
    from pyspark import StorageLevel
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    started = time.time()
    settings = ShiftSettings.from_config(config)
    frames, manifest = read_dataset(spark, paths.data)
    for split in ("val", "v2"):
        if split not in frames:
            raise DatasetError(f"dataset {paths.data} has no {split} split: nothing to compare")
    dim = manifest.get("dim")
    if not isinstance(dim, int) or dim < 1:
        raise DatasetError(f"the manifest of {paths.data} does not give the feature dimension")
    phases: dict[str, float] = {}

    sets: dict[str, DataFrame] = {"val": frames["val"], "v2": frames["v2"]}
    train_sample = None
    if "train" in frames:
        # The control sample is read four times (count, grid sample, statistics pass, domain sample), and
        # each read of it would scan all of train: keep it.
        train_sample = frames["train"].sample(withReplacement=False, fraction=settings.train_control_fraction,
                                              seed=settings.seed).persist(StorageLevel.MEMORY_AND_DISK)
        sets["train"] = train_sample
    pairs = [p for p in PAIRS if p[1] in sets and p[2] in sets]
    try:
        t = time.time()
        stats = feature_shift_stats(sets, pairs, dim, settings.histogram_bins, settings.histogram_range_sd,
                                    seed=settings.seed)
        stats = stats.withColumn("shifted", F.abs(F.col("smd")) > settings.smd_threshold).persist()
        out_dir = paths.run_file("shift", "feature_stats")
        stats.orderBy("pair", "feature").write.mode("overwrite").parquet(fs.to_spark_uri(out_dir))
        local = stats.toPandas().sort_values(["pair", "feature"]).reset_index(drop=True)
        stats.unpersist()
        buffer = io.StringIO()
        local.to_csv(buffer, index=False)
        fs.write_text(paths.run_file("shift", "feature_stats.csv"), buffer.getvalue())
        features = {pair: summarise_feature_shift(local, pair, settings.smd_threshold, settings.top_features)
                    for pair, _, _ in pairs}
        phases["feature_stats"] = time.time() - t

        t = time.time()
        domain = {}
        for i, (pair, a, b) in enumerate(pairs):
            sample = balanced_sample(sets[a], sets[b], settings.domain_sample_per_set, settings.seed + 100 * i)
            domain[pair] = domain_auc(sample, settings.domain_folds, settings.seed + 100 * i,
                                      settings.domain_pca_k, settings.domain_reg_param, settings.domain_max_iter,
                                      settings.top_features)
            log.info("shift: domain classifier %s: AUC %.3f %s, PCA %.3f %s", pair, domain[pair]["auc"],
                     domain[pair]["ci95"], domain[pair]["auc_pca"], domain[pair]["ci95_pca"])
        phases["domain_classifier"] = time.time() - t
    finally:
        if train_sample is not None:
            train_sample.unpersist()

    t = time.time()
    # Labels from the full splits: only the label column is read, so this is cheap even for train.
    counts = label_counts({s: frames[s] for s in ("train", "val", "v2") if s in frames}).toPandas()
    labels = {pair: label_shift(counts, a, b) for pair, a, b in pairs}
    phases["labels"] = time.time() - t

    summary: dict[str, Any] = {"features": features, "domain_classifier": domain, "labels": labels}
    t = time.time()
    confidence = {}
    for model, split_paths in find_predictions(paths.run).items():
        try:
            preds = {s: spark.read.parquet(fs.to_spark_uri(p)) for s, p in split_paths.items()}
        except AnalysisException as exc:  # an empty or half-written directory: say so and go on without it
            log.warning("shift: cannot read the predictions of %s (%s); skipping them", model, exc)
            continue
        if "confidence" not in preds["val"].columns or "confidence" not in preds["v2"].columns:
            log.warning("shift: the predictions of %s have no confidence column; skipping them", model)
            continue
        confidence[model] = confidence_shift(preds["val"], preds["v2"], settings.histogram_bins,
                                             settings.histogram_range_sd)
    if confidence:
        summary["confidence"] = confidence
        phases["confidence"] = time.time() - t

    summary["dataset"] = manifest_summary(manifest)
    summary["settings"] = asdict(settings)
    summary["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
    summary["seconds"] = round(time.time() - started, 3)
    fs.write_json(paths.run_file("shift.json"), summary)
    log.info("shift: %s written in %.1f s", paths.run_file("shift.json"), summary["seconds"])
    return summary
