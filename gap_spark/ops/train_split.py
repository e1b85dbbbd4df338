"""The train split as the models see it: its cached layout, its checks, and the selection slice.

One aggregation (:func:`label_stats`) over the cached split checks every row; :func:`check_sample_rows`
looks at a few rows first, so a dataset that contradicts its manifest fails before anything is cached.

The selection slice (``split=select``, held out of the train CSV by ingest) is where train chooses
anything: :func:`selection_metrics` scores a model's predictions on it. A dataset without that split
falls back to :func:`hash_holdout`, a slice of train chosen by a hash of ``row_id``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gap_spark.core.errors import DatasetError

if TYPE_CHECKING:
    from pyspark import StorageLevel
    from pyspark.sql import Column, DataFrame

__all__ = [
    "LOG_LOSS_FLOOR", "MISSING_CLASSES_NAMED", "TARGET_PARTITION_BYTES", "auto_partitions", "check_label_stats",
    "check_sample_rows", "describe_missing", "hash_holdout", "label_stats", "selection_metrics", "storage_level",
]

# Size of one cached training partition the automatic partition count aims at (float arrays).
TARGET_PARTITION_BYTES = 128 * 1024 * 1024
MISSING_CLASSES_NAMED = 20
# Probabilities are clipped here before the log, as scikit-learn's log_loss does.
LOG_LOSS_FLOOR = 1e-15
_INCONSISTENT = "the dataset is inconsistent (run `gap-spark ingest` again)"


def storage_level(name: str | None) -> "StorageLevel | None":
    """The ``pyspark.StorageLevel`` of a name, or None for ``NONE`` (no caching).

    Parameters
    ----------
    name : str or None
        ``train.storage_level`` (checked against the levels when the config is loaded), any case.

    Returns
    -------
    pyspark.StorageLevel or None
    """
    from pyspark import StorageLevel

    key = "NONE" if name is None else str(name).strip().upper()
    level: StorageLevel | None = None if key == "NONE" else getattr(StorageLevel, key)
    return level


def auto_partitions(rows: int, dim: int, cores: int) -> int:
    """Partitions for the cached training data: about 128 MB of float arrays each, a multiple of cores.

    Parameters
    ----------
    rows : int
        Training rows.
    dim : int
        Feature dimension D.
    cores : int
        Task slots (``defaultParallelism``).

    Returns
    -------
    int
        At least ``cores``; e.g. 42 for 1.28M x 1024 on 2 cores, 2 for 20k x 1024.
    """
    cores = max(1, int(cores))
    by_size = math.ceil(max(1, rows) * max(1, dim) * 4 / TARGET_PARTITION_BYTES)
    return max(cores, math.ceil(by_size / cores) * cores)


def check_sample_rows(frame: "DataFrame", dim: int, classes: int, rows: int = 20) -> None:
    """Fail fast when a few rows already contradict the manifest's D or K.

    Parameters
    ----------
    frame : DataFrame
        The train split (``label``, ``features``).
    dim, classes : int
        D and K from the manifest.
    rows : int
        How many rows to look at.

    Raises
    ------
    DatasetError
        No rows, an array of another length than D, or a label outside ``[0, K)``.
    """
    from pyspark.sql import functions as F

    sample = frame.select(F.size("features").alias("n"), "label").limit(rows).collect()
    if not sample:
        raise DatasetError("the train split has no rows; nothing to train on")
    for row in sample:
        if row["n"] != dim:
            raise DatasetError(f"feature arrays hold {row['n']} values but the manifest says D={dim}; {_INCONSISTENT}")
        if row["label"] is None or not 0 <= row["label"] < classes:
            raise DatasetError(f"label {row['label']} lies outside [0, {classes}) for the manifest's K={classes}; "
                               f"{_INCONSISTENT}")


def label_stats(frame: "DataFrame") -> dict[str, Any]:
    """One pass over the frame: rows per label and the range of feature-array lengths.

    Parameters
    ----------
    frame : DataFrame
        Rows with ``label`` and ``features``.

    Returns
    -------
    dict
        ``rows``, ``counts`` (label -> rows), ``min_dim``, ``max_dim``.
    """
    from pyspark.sql import functions as F

    per_label = (frame.groupBy("label")
                 .agg(F.count(F.lit(1)).alias("n"), F.min(F.size("features")).alias("lo"),
                      F.max(F.size("features")).alias("hi"))
                 .collect())
    counts = {int(r["label"]) if r["label"] is not None else None: int(r["n"]) for r in per_label}
    return {
        "rows": sum(counts.values()),
        "counts": counts,
        "min_dim": min((r["lo"] for r in per_label), default=None),
        "max_dim": max((r["hi"] for r in per_label), default=None),
    }


def check_label_stats(stats: dict[str, Any], dim: int, classes: int) -> list[int]:
    """Refuse data that disagrees with the manifest; return the classes with no training rows.

    Parameters
    ----------
    stats : dict
        From :func:`label_stats`.
    dim, classes : int
        D and K from the manifest.

    Returns
    -------
    list of int
        Labels in ``[0, K)`` that have no rows, sorted.

    Raises
    ------
    DatasetError
        No rows, arrays of another length than D, or a label outside ``[0, K)``.
    """
    if stats["rows"] == 0:
        raise DatasetError("the train split has no rows; nothing to train on")
    if stats["min_dim"] != dim or stats["max_dim"] != dim:
        raise DatasetError(f"feature arrays hold between {stats['min_dim']} and {stats['max_dim']} values but the "
                           f"manifest says D={dim}; {_INCONSISTENT}")
    labels = [k for k in stats["counts"] if k is not None]
    if None in stats["counts"] or min(labels) < 0 or max(labels) >= classes:
        bad = "null" if None in stats["counts"] else (min(labels) if min(labels) < 0 else max(labels))
        raise DatasetError(f"the train split holds label {bad}, outside [0, {classes}) for the manifest's K={classes}; "
                           f"{_INCONSISTENT}")
    present = set(labels)
    return [k for k in range(classes) if k not in present]


def describe_missing(missing: list[int], classes: int) -> str:
    """One line naming the classes without training rows (the first few, then a count).

    Parameters
    ----------
    missing : list of int
        From :func:`check_label_stats`.
    classes : int
        K.

    Returns
    -------
    str
    """
    named = ", ".join(str(k) for k in missing[:MISSING_CLASSES_NAMED])
    more = f" and {len(missing) - MISSING_CLASSES_NAMED} more" if len(missing) > MISSING_CLASSES_NAMED else ""
    return (f"the train split has no rows for {len(missing)} of {classes} classes: {named}{more}; "
            "the models can never predict them")


def hash_holdout(frame: "DataFrame", fraction: float, seed: int,
                 id_col: str = "row_id") -> tuple["DataFrame", "DataFrame"]:
    """Split ``frame`` in two by a hash of ``(id_col, seed)``: the rest, and about ``fraction`` held out.

    The fallback selection slice for a dataset without ``split=select``. A function of the row ids
    only, so the same rows are held out whatever the partitioning; the two parts are disjoint.

    Parameters
    ----------
    frame : DataFrame
        Rows with ``id_col``.
    fraction : float
        Share held out, in (0, 1).
    seed : int
        Seed of the hash.
    id_col : str
        The row key.

    Returns
    -------
    (DataFrame, DataFrame)
        ``(kept, held_out)``.
    """
    from pyspark.sql import functions as F

    from gap_spark.ops.frames import hash_uniform

    u = hash_uniform(F.col(id_col), F.lit(int(seed)))
    return frame.filter(u >= fraction), frame.filter(u < fraction)


def _true_class_probability(probability: "Column", label: "Column") -> "Column":
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return F.element_at(vector_to_array(probability), label.cast("int") + 1)


def selection_metrics(predictions: "DataFrame", label_col: str = "label", prediction_col: str = "prediction",
                      probability_col: str | None = "probability") -> dict[str, Any]:
    """Rows, accuracy and mean log loss of a model's predictions on the selection slice, in one pass.

    Parameters
    ----------
    predictions : DataFrame
        A fitted classifier's output: the label, its prediction and (optionally) its class
        probabilities (an ML vector of K values).
    label_col, prediction_col : str
        The label and predicted-label columns (numbers in ``[0, K)``).
    probability_col : str or None
        The probability vector column; None (or a model without one) leaves ``log_loss`` None.

    Returns
    -------
    dict
        ``rows``, ``accuracy`` and ``log_loss`` (the mean of ``-log max(p_true, 1e-15)``); accuracy and
        log loss are None when there are no rows.
    """
    from pyspark.sql import functions as F

    label = F.col(label_col)
    aggregates = [F.count(F.lit(1)).alias("rows"),
                  F.avg((F.col(prediction_col) == label).cast("double")).alias("accuracy")]
    if probability_col and probability_col in predictions.columns:
        p_true = _true_class_probability(F.col(probability_col), label)
        aggregates.append(F.avg(-F.log(F.greatest(p_true.cast("double"), F.lit(LOG_LOSS_FLOOR)))).alias("log_loss"))
    row = predictions.agg(*aggregates).first()
    values = row.asDict() if row is not None else {}
    return {"rows": int(values.get("rows") or 0),
            "accuracy": None if values.get("accuracy") is None else float(values["accuracy"]),
            "log_loss": None if values.get("log_loss") is None else float(values["log_loss"])}
