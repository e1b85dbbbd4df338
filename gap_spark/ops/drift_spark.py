"""The Spark passes behind the per-feature drift statistics: moments and histogram sketches of every set.

All sets and all features are done in one pass over the data (:func:`feature_sketches`): per set and
feature, count, mean, variance (Chan's parallel merge), min, max and exact counts on a fixed grid, the
same grid for every set (:class:`~gap_spark.ops.drift.HistogramGrid`). The grid is placed beforehand from
the moments of a random sample of each set (:func:`sample_grid`; only those rows go to Python).

The pass runs in ``mapInArrow`` with numpy over whole Arrow batches (one row = D values), so nothing is
exploded to one row per value, and the per-partition partials merge in Spark SQL. :func:`compare_sets`
then puts the sets side by side per feature and computes the SMD, KS and W1 with their error bounds
(:func:`~gap_spark.ops.drift.histogram_distances`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.core.errors import DatasetError
from gap_spark.ops.drift import HistogramGrid, Moments, histogram_distances, standardised_mean_difference
from gap_spark.ops.frames import SET_COL, tag_union

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame

__all__ = [
    "FEATURES_COL", "GRID_SAMPLE_ROWS", "MOMENTS_SCHEMA", "SKETCHES_SCHEMA", "STATS_SCHEMA", "compare_sets",
    "feature_moments", "feature_shift_stats", "feature_sketches", "sample_grid",
]

FEATURES_COL = "features"
# Rows of a batch binned at a time: bounds the float64 scratch arrays to about 4096 x D x 8 bytes.
_CHUNK_ROWS = 4096
# Rows per set whose moments place the histogram grid (the grid only sets how tight the bounds are).
GRID_SAMPLE_ROWS = 5000

MOMENTS_SCHEMA = "set string, feature int, n long, mean double, std double, min double, max double"
_PARTIAL_MOMENTS_SCHEMA = "set string, feature int, n long, mean double, m2 double, min double, max double"
SKETCHES_SCHEMA = MOMENTS_SCHEMA + ", counts array<bigint>"
STATS_SCHEMA = ("pair string, set_a string, set_b string, feature int, n_a long, n_b long, mean_a double, "
                "mean_b double, std_a double, std_b double, smd double, ks double, ks_error_bound double, "
                "wasserstein double, wasserstein_error_bound double")
_MOMENT_COLUMNS = ("n", "mean", "std", "min", "max")


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


def _moment_columns(moments: Moments, name: str) -> dict[str, "pa.Array"]:
    import pyarrow as pa

    dim = len(moments.mean)
    return {"set": pa.array([name] * dim, pa.string()), "feature": pa.array(np.arange(dim, dtype=np.int32)),
            "n": pa.array(np.full(dim, moments.n, dtype=np.int64)), "mean": pa.array(moments.mean),
            "m2": pa.array(moments.m2), "min": pa.array(moments.min), "max": pa.array(moments.max)}


def _partition_sketch(batches: Iterator["pa.RecordBatch"], dim: int,
                      grid: HistogramGrid | None) -> Iterator["pa.RecordBatch"]:
    """mapInArrow body: per set and feature, the partition's moments and (with a grid) bin counts."""
    import pyarrow as pa

    moments: dict[str, Moments] = {}
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
                part = Moments(chunk)
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
        columns = _moment_columns(m, name)
        if grid is not None:
            columns["counts"] = pa.ListArray.from_arrays(list_offsets, pa.array(counts[name]))
        yield pa.RecordBatch.from_pydict(columns)


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
                rows.append({"pair": pair, "set_a": set_a, "set_b": set_b, "feature": feature,
                             **_compare_one(frame, i, feature, set_a, set_b, grid)})
        yield pd.DataFrame(rows, columns=columns)


def _compare_one(frame: "pd.DataFrame", i: int, feature: int, set_a: str, set_b: str,
                 grid: HistogramGrid) -> dict[str, Any]:
    """The statistics of one feature (row ``i`` of the wide frame) for sets ``a`` and ``b``."""
    a = {c: frame[f"{set_a}_{c}"].iat[i] for c in (*_MOMENT_COLUMNS, "counts")}
    b = {c: frame[f"{set_b}_{c}"].iat[i] for c in (*_MOMENT_COLUMNS, "counts")}
    std_a = math.nan if a["std"] is None else float(a["std"])
    std_b = math.nan if b["std"] is None else float(b["std"])
    edges = grid.edges(feature, min(a["min"], b["min"]), max(a["max"], b["max"]))
    return {
        "n_a": int(a["n"]), "n_b": int(b["n"]), "mean_a": float(a["mean"]), "mean_b": float(b["mean"]),
        "std_a": std_a, "std_b": std_b,
        "smd": standardised_mean_difference(float(a["mean"]), float(b["mean"]), std_a, std_b),
        **histogram_distances(np.asarray(a["counts"]), np.asarray(b["counts"]), edges),
    }


# --------------------------------------------------------------------------- Spark passes


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
        ``set string, features array<float>`` (:func:`~gap_spark.ops.frames.tag_union`); every array has length ``dim``.
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

    Parameters
    ----------
    tagged : DataFrame
        ``set string, features array<float>`` of length ``grid.dim``.
    grid : HistogramGrid
        Where to count.

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
    it land in the overflow bins.

    Parameters
    ----------
    frames : mapping of str to DataFrame
        Set name to a frame with ``features``.
    dim, bins, range_sd : int, int, float
        Feature dimension and the grid (see :meth:`HistogramGrid.from_moments`).
    sample_rows, seed : int
        Rows per set of the sample, and its seed.

    Returns
    -------
    HistogramGrid
        The grid; raises :class:`DatasetError` when a set is empty.
    """
    samples = {}
    for name, frame in frames.items():
        count = frame.count()
        if count == 0:
            raise DatasetError(f"set {name!r} has no rows: nothing to compare")
        fraction = sample_rows / count
        samples[name] = frame if fraction >= 1 else frame.sample(withReplacement=False, fraction=fraction, seed=seed)
    moments: pd.DataFrame = feature_moments(tag_union(samples, [FEATURES_COL]), dim).toPandas()
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

    set_names: list[Any] = sorted({name for _, a, b in pairs for name in (a, b)})
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
    return compare_sets(feature_sketches(tag_union(chosen, [FEATURES_COL]), grid), grid, pairs)
