"""The keys of dataset rows (``row_id`` and ``path``): which rows share one, and the keys of raw lines.

Pure DataFrame functions for ingest's duplicate check: rows whose key is not unique within a split are
all quarantined, since there is no telling which copy is right.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["extract_keys", "find_duplicates"]

# The first two CSV fields of a line: the index, and the path (quoted when it holds a comma or a quote).
_FIRST_TWO_FIELDS = r'^([^,]*),("(?:[^"]|"")*"|[^,]*)'


def find_duplicates(good: "DataFrame", carry: Sequence[str] = ()) -> "DataFrame":
    """Rows whose ``row_id`` or ``path`` occurs more than once.

    Parameters
    ----------
    good : DataFrame
        With ``row_id`` and ``path`` columns.
    carry : sequence of str
        More columns of ``good`` to keep with each copy (for example the file holding it).

    Returns
    -------
    DataFrame
        ``row_id, path, kind, *carry``: every copy, with kind ``duplicate_row_id`` (the row_id repeats)
        or else ``duplicate_path``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_id = F.count(F.lit(1)).over(Window.partitionBy("row_id"))
    by_path = F.count(F.lit(1)).over(Window.partitionBy("path"))
    keys = good.select("row_id", "path", *carry).withColumn("n_id", by_id).withColumn("n_path", by_path)
    return (keys.where((F.col("n_id") > 1) | (F.col("n_path") > 1))
            .select("row_id", "path",
                    F.when(F.col("n_id") > 1, F.lit("duplicate_row_id")).otherwise(F.lit("duplicate_path"))
                    .alias("kind"), *carry))


def extract_keys(lines: "DataFrame") -> "DataFrame":
    """``row_id`` and ``path`` of raw CSV lines, in the JVM (no float parsing), for matching duplicates.

    Parameters
    ----------
    lines : DataFrame
        ``pos long, value string``: the raw lines.

    Returns
    -------
    DataFrame
        ``pos, value, row_id`` (null when the first field is not an integer) ``, path`` (unquoted).
    """
    from pyspark.sql import functions as F

    keys = lines.select("pos", "value",
                        F.regexp_extract("value", _FIRST_TWO_FIELDS, 1).try_cast("long").alias("row_id"),
                        F.regexp_extract("value", _FIRST_TWO_FIELDS, 2).alias("raw_path"))
    unquoted = F.regexp_replace(F.expr("substring(raw_path, 2, length(raw_path) - 2)"), '""', '"')
    return keys.select("pos", "value", "row_id",
                       F.when(F.col("raw_path").startswith('"'), unquoted).otherwise(F.col("raw_path")).alias("path"))
