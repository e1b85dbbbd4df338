"""Small tables the driver writes beside the Parquet outputs: CSV text from rows of dicts."""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["table_csv"]


def table_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header row.

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per row.
    columns : sequence of str, optional
        The columns, in order; default: the first row's keys (an empty table then has no header).

    Returns
    -------
    str
        ``None`` becomes an empty field; floats keep full precision (``repr``).
    """
    names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    out = io.StringIO()
    if not names:
        return ""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else repr(row[c]) if isinstance(row[c], float) else row[c]
                         for c in names])
    return out.getvalue()
