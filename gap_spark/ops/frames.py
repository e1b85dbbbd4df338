"""Small DataFrame building blocks shared by the stages: tagging sets, counting labels, sampling.

Every function is pure (``DataFrame -> DataFrame`` or ``DataFrame -> small dict``); none reads a
config or a path.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "SET_COL", "hash_uniform", "label_count_frame", "label_counts", "matched_quotas", "proportional_quotas",
    "stratified_sample", "tag_union",
]

# The column naming which set (val, v2, train, ...) a row of a tagged union comes from.
SET_COL = "set"
_SET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def tag_union(frames: Mapping[str, "DataFrame"], columns: Sequence["str | Column"],
              tag: str = SET_COL) -> "DataFrame":
    """One frame of the named frames' ``columns``, each row tagged with its frame's name in ``tag``.

    Parameters
    ----------
    frames : mapping of str to DataFrame
        Set name (a plain identifier) to frame; the union keeps this order.
    columns : sequence of str or Column
        What to take from every frame (the same names in each).
    tag : str
        Name of the string column holding the set name; it comes first.

    Returns
    -------
    DataFrame
        ``tag, *columns``.
    """
    from pyspark.sql import functions as F

    if not frames:
        raise ValueError("tag_union needs at least one frame")
    tagged: DataFrame | None = None
    for name, frame in frames.items():
        if not _SET_NAME.match(name) or name == tag:
            raise ValueError(f"set name {name!r} must be a plain identifier other than {tag!r}")
        part = frame.select(F.lit(name).alias(tag), *columns)
        tagged = part if tagged is None else tagged.unionByName(part)
    assert tagged is not None
    return tagged


def label_counts(frame: "DataFrame", label: str = "label") -> dict[int, int]:
    """Rows per label of one frame, in one aggregation: ``{label: rows}``."""
    return {int(r[label]): int(r["count"]) for r in frame.groupBy(label).count().collect()}


def label_count_frame(frames: Mapping[str, "DataFrame"], label: str = "label") -> "DataFrame":
    """``set, label, count`` for all named frames in one job (reads only the label column)."""
    from pyspark.sql import functions as F

    return tag_union(frames, [F.col(label).cast("int").alias(label)]).groupBy(SET_COL, label).count()


def hash_uniform(*cols: "Column") -> "Column":
    """A uniform double in [0, 1) from the 64-bit xxHash of ``cols`` (its top 53 bits).

    A function of the values only, so the same rows get the same number whatever the partitioning.
    """
    from pyspark.sql import functions as F

    return F.shiftrightunsigned(F.xxhash64(*cols), 11).cast("double") / F.lit(float(2 ** 53))


def proportional_quotas(counts: Mapping[int, int], total: int) -> dict[int, int]:
    """Split ``total`` rows over labels in proportion to their counts (largest remainder, exact sum).

    Parameters
    ----------
    counts : mapping
        label -> rows available.
    total : int
        Rows wanted; more than available means every row.

    Returns
    -------
    dict
        label -> rows to take, never more than available.
    """
    labels = sorted(counts)
    available = np.array([counts[lab] for lab in labels], dtype=np.int64)
    if total >= available.sum():
        return dict(zip(labels, available.tolist()))
    share = available / available.sum() * total
    quota = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    return {lab: int(q) for lab, q in zip(labels, np.minimum(quota, available))}


def matched_quotas(counts_a: Mapping[int, int], counts_b: Mapping[int, int], rows_per_set: int,
                   seed: int = 0) -> dict[int, int]:
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


def stratified_sample(frame: "DataFrame", counts: Mapping[int, int], quotas: Mapping[str, Mapping[int, int]],
                      seed: int, label: str = "label", key: str = "row_id") -> "DataFrame":
    """An exact per-label sample, reproducible whatever the file layout; several quotas in one pass.

    Each row gets a key hashed from ``key`` and ``seed``; per label the rows with the smallest keys are
    kept, so a smaller quota's rows are a subset of a larger one's. A first filter keeps only rows
    whose hash lies below a per-label cut-off set a little above the largest quota, so the window that
    ranks rows sees about the sample's size, not the whole split.

    Parameters
    ----------
    frame : DataFrame
        Has the columns ``label`` and ``key``.
    counts : mapping
        label -> rows in ``frame`` (from :func:`label_counts`).
    quotas : mapping of str to mapping
        Name -> (label -> rows). Each name becomes a boolean column: the row is among that quota.
    seed : int
        Seed of the hash.

    Returns
    -------
    DataFrame
        The input's columns, ``rank`` (1, 2, ... in hash order within the label) and one boolean column
        per quota; only rows in at least one quota.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = list(quotas)
    rows = []
    for lab, available in counts.items():
        wanted = [int(quotas[n].get(lab, 0)) for n in names]
        k = max(wanted, default=0)
        if k <= 0 or available <= 0:
            continue
        # Binomial margin: k + 4 sqrt(k) + 8 expected rows leaves a shortfall practically impossible.
        cutoff = min(1.0, (k + 4.0 * math.sqrt(k) + 8.0) / available)
        rows.append((int(lab), float(cutoff), *wanted))
    quota_cols = [f"_k{i}" for i in range(len(names))]
    schema = ", ".join([f"{label} int", "_cutoff double", *(f"{c} int" for c in quota_cols)])
    plan = frame.sparkSession.createDataFrame(rows, schema)
    hashed = (F.pmod(F.xxhash64(F.col(key), F.lit(int(seed))), F.lit(1 << 40)) / float(1 << 40))
    ranked = (frame.join(F.broadcast(plan), label)
              .withColumn("_key", hashed)
              .where(F.col("_key") < F.col("_cutoff"))
              .withColumn("rank", F.row_number().over(Window.partitionBy(label).orderBy("_key", key))))
    for name, col in zip(names, quota_cols):
        ranked = ranked.withColumn(name, F.col("rank") <= F.col(col))
    keep = F.lit(False)
    for name in names:
        keep = keep | F.col(name)
    return ranked.where(keep).drop("_key", "_cutoff", *quota_cols)
