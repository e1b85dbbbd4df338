"""The selection split: a deterministic, stratified slice of the train CSV's rows, chosen by a hash.

Pure numpy. Each row gets ``u = hash_uniform(seed, row_id)`` in [0, 1), the same number Spark computes
with :func:`gap_spark.ops.frames.hash_uniform` over ``(row_id, lit(seed))``. Class ``c`` with ``n_c``
good rows gives :func:`select_quotas` rows to the slice: its rows with the smallest ``(u, row_id)``.
So the slice depends only on the rows and the seed, never on how the file was cut into tasks.

Ingest never holds all rows at once: each task writes the rows with ``u < t`` (:func:`candidate_threshold`,
a little above the fraction) to a small candidate file and reports its rows per class; the driver then
picks the slice among the candidates (:func:`choose_select`) once the class counts are known.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "candidate_threshold", "choose_select", "hash_uniform_ids", "select_quotas", "shortfall",
    "xxhash64_long",
]

# xxHash64's primes, as in Spark's org.apache.spark.sql.catalyst.expressions.XXH64.
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_SPARK_SEED = 42  # the seed of Spark's xxhash64(...) expression


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


def xxhash64_long(values: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Spark's ``XXH64.hashLong(value, seed)`` for an array of 64-bit integers.

    Parameters
    ----------
    values : numpy.ndarray of int64
        The values.
    seed : int or numpy.ndarray of uint64
        One seed, or one per value.

    Returns
    -------
    numpy.ndarray of uint64
    """
    with np.errstate(over="ignore"):
        v = np.asarray(values, dtype=np.int64).view(np.uint64)
        h = np.asarray(seed, dtype=np.int64).astype(np.uint64) + _P5 + np.uint64(8)
        h = h ^ (_rotl(v * _P2, 31) * _P1)
        h = _rotl(h, 27) * _P1 + _P4
        return _fmix(h)


def _xxhash64_int(value: int, seed: np.ndarray) -> np.ndarray:
    """Spark's ``XXH64.hashInt(value, seed)``: one 32-bit integer under many seeds."""
    with np.errstate(over="ignore"):
        h = seed.astype(np.uint64) + _P5 + np.uint64(4)
        h = h ^ (np.uint64(value & 0xFFFFFFFF) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        return _fmix(h)


def hash_uniform_ids(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """``u`` in [0, 1) per row: Spark's ``hash_uniform(col("row_id"), lit(seed))``, in numpy.

    Parameters
    ----------
    row_ids : numpy.ndarray of int64
        The rows' ``row_id``.
    seed : int
        In ``[0, 2**31)`` (Spark types the literal as an int).

    Returns
    -------
    numpy.ndarray of float64
        The top 53 bits of ``xxhash64(row_id, seed)`` over ``2**53``.
    """
    if not 0 <= seed < 2 ** 31:
        raise ValueError(f"seed must lie in [0, 2**31), got {seed}")
    h = _xxhash64_int(seed, xxhash64_long(row_ids, _SPARK_SEED))
    return (h >> np.uint64(11)).astype(np.float64) / float(2 ** 53)


def select_quotas(counts: Mapping[int, int], fraction: float, seed: int) -> dict[int, int]:
    """Rows each class gives to the slice: ``fraction`` of its rows, rounded so the total is exact.

    Largest remainder: class ``c`` gets ``floor(f n_c)`` or one more, and the quotas sum to
    ``round(f N)``. Plain ``round(f n_c)`` per class would give an empty slice when every class has
    fewer than ``0.5 / f`` rows (25 at 2%: the 1% scale has about 13 rows a class). Classes with equal
    remainders are ordered by a hash of ``(label, seed)``, not by label, so no range of labels is
    favoured.

    Parameters
    ----------
    counts : mapping of int to int
        Label -> good rows of that class in the train CSV.
    fraction : float
        In [0, 1).
    seed : int
        Seed of the order among equal remainders.

    Returns
    -------
    dict of int to int
        Label -> rows, for every label in ``counts`` (zero included).
    """
    labels = np.array(sorted(counts), dtype=np.int64)
    if labels.size == 0:
        return {}
    n = np.array([counts[int(c)] for c in labels], dtype=np.int64)
    share = fraction * n.astype(np.float64)
    quota = np.floor(share).astype(np.int64)
    total = round(fraction * int(n.sum()))
    left = max(0, min(total - int(quota.sum()), labels.size))
    ties = hash_uniform_ids(labels, seed)
    order = np.lexsort((ties, -(share - quota)))  # largest remainder first, then the hash
    quota[order[:left]] += 1
    quota = np.minimum(quota, n)
    return {int(c): int(q) for c, q in zip(labels, quota)}


def candidate_threshold(fraction: float, rows_per_class: float) -> float:
    """The ``u`` below which a task keeps a row as a candidate for the slice.

    Each class needs its quota (about ``k = f m`` for a class of ``m`` rows) among its candidates,
    about ``t m`` of them. ``t m = k + 4 sqrt(k) + 8`` (the margin of
    :func:`gap_spark.ops.frames.stratified_sample`) makes a shortfall a rare event, which ingest still
    handles exactly (:func:`shortfall`).

    Parameters
    ----------
    fraction : float
        The slice's fraction.
    rows_per_class : float
        The expected rows of a class (an underestimate errs on the safe side).

    Returns
    -------
    float
        In [0, 1]; 0 when ``fraction`` is 0.
    """
    if fraction <= 0:
        return 0.0
    m = max(float(rows_per_class), 1.0)
    k = fraction * m
    return min(1.0, (k + 4.0 * math.sqrt(k) + 8.0) / m)


def choose_select(row_ids: np.ndarray, labels: np.ndarray, u: np.ndarray, quotas: Mapping[int, int]) -> np.ndarray:
    """Which rows are in the slice: per class, the ``quotas[c]`` rows with the smallest ``(u, row_id)``.

    Parameters
    ----------
    row_ids, labels, u : numpy.ndarray
        The candidate rows (int64 ids, int labels, their ``u``).
    quotas : mapping of int to int
        From :func:`select_quotas`.

    Returns
    -------
    numpy.ndarray of bool
        True for the rows in the slice.
    """
    order = np.lexsort((row_ids, u, labels))  # by label, then u, then row_id
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    wanted = np.array([quotas.get(int(c), 0) for c in sorted_labels], dtype=np.int64) if order.size else \
        np.zeros(0, dtype=np.int64)
    chosen = np.zeros(order.size, dtype=bool)
    chosen[order] = rank < wanted
    return chosen


def shortfall(candidate_counts: Mapping[int, int], quotas: Mapping[int, int]) -> dict[int, int]:
    """Classes whose candidates are fewer than their quota, and by how many rows.

    Parameters
    ----------
    candidate_counts : mapping of int to int
        Label -> candidate rows.
    quotas : mapping of int to int
        Label -> rows wanted.

    Returns
    -------
    dict of int to int
        Label -> rows missing (only labels that miss some).
    """
    return {c: q - candidate_counts.get(c, 0) for c, q in quotas.items() if q > candidate_counts.get(c, 0)}
