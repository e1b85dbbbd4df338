"""Rows of one CSV that share a ``row_id`` or ``path``: found with one Spark job over the written keys,
then taken out of the files that hold them (every copy: there is no telling which one is right)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from gap_spark.core import fs
from gap_spark.ops.row_keys import find_duplicates
from gap_spark.stages.ingest_select import count_labels, parquet_files, read_files, rewrite_without

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["add_counts", "drop_duplicates", "duplicate_rows"]


def add_counts(a: Mapping[int, int], b: Mapping[int, int], sign: int = 1) -> dict[int, int]:
    """``a + sign * b`` per key, without the keys that end at zero."""
    total = dict(a)
    for key, value in b.items():
        total[key] = total.get(key, 0) + sign * value
    return {k: v for k, v in total.items() if v}


def duplicate_rows(spark: "SparkSession", dirs: Sequence[str]) -> "DataFrame | None":
    """Every copy of a duplicated key across the Parquet files in ``dirs``: ``row_id, path, kind, dir, file``.

    ``dir`` is the index in ``dirs``, ``file`` the file's name (URL-encoded, as Spark gives it). None
    when the directories hold no file.
    """
    from pyspark.sql import functions as F

    frames = [spark.read.parquet(fs.to_spark_uri(d))
              .select("row_id", "path", F.lit(i).alias("dir"), F.col("_metadata.file_name").alias("file"))
              for i, d in enumerate(dirs) if parquet_files(d)]
    if not frames:
        return None
    keys = frames[0]
    for frame in frames[1:]:
        keys = keys.unionByName(frame)
    return find_duplicates(keys, carry=["dir", "file"])


def drop_duplicates(dup_rows: Sequence[Any], dirs: Sequence[str], by_kind: dict[str, int],
                    compression: str) -> dict[int, int]:
    """Rewrite the files holding duplicated rows without them; returns the rows taken out per class.

    Adds the copies per kind to ``by_kind``.
    """
    by_file: dict[tuple[int, str], set[tuple[int, str]]] = {}
    for row in dup_rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        by_file.setdefault((int(row["dir"]), unquote(row["file"])), set()).add((int(row["row_id"]), row["path"]))
    removed: dict[int, int] = {}
    for (directory, name), keys in sorted(by_file.items()):
        uri = fs.join(dirs[directory], name)
        table = read_files([uri], ["row_id", "path"])
        pairs = zip(table.column("row_id").to_pylist(), table.column("path").to_pylist())
        drop = np.fromiter(((i, p) in keys for i, p in pairs), dtype=bool, count=table.num_rows)
        removed = add_counts(removed, count_labels(rewrite_without(uri, drop, compression)))
    return removed
