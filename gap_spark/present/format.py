"""Numbers to the strings the report shows: ``n/a`` for anything that is not a finite number."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gap_spark.contracts.run_outputs import is_number

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["class_label", "class_labels", "count", "fmt", "interval", "label_text", "pct", "points", "run_class_labels"]


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (never ``-0.000``), or ``n/a``."""
    if not is_number(x):
        return "n/a"
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.8123`` -> ``81.2%``), or ``n/a``."""
    return f"{float(x) * 100:.{digits}f}%" if is_number(x) else "n/a"


def points(x: Any, digits: int = 1) -> str:
    """A difference of fractions in percentage points (``0.088`` -> ``8.8``), or ``n/a``."""
    return f"{float(x) * 100:.{digits}f}" if is_number(x) else "n/a"


def interval(ci: Any, scale: float = 1.0, digits: int = 3) -> str:
    """``[lo, hi]`` of a two-number interval, or an empty string when there is none."""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(is_number(v) for v in ci):
        return f"[{float(ci[0]) * scale:.{digits}f}, {float(ci[1]) * scale:.{digits}f}]"
    return ""


def count(x: Any) -> str:
    """A count with thousands separators (``12345`` -> ``12,345``), or ``n/a``."""
    return f"{int(x):,}" if is_number(x) else "n/a"


def label_text(x: Any) -> str:
    """A class label as written in the data: ``7`` rather than pandas' ``7.0``."""
    if is_number(x) and float(x).is_integer():
        return str(int(x))
    return str(x)


def _text(x: Any) -> str | None:
    """A non-empty string, or None (pandas reads an empty CSV field as NaN)."""
    return x.strip() or None if isinstance(x, str) else None


def class_label(label: Any, name: Any = None, wnid: Any = None) -> str:
    """A class as the report shows it: ``tench (n01440764)``, the name alone, or ``class 3``."""
    name, wnid = _text(name), _text(wnid)
    if name and wnid:
        return f"{name} ({wnid})"
    return name or f"class {label_text(label)}"


def class_labels(table: "pd.DataFrame | None", label: str = "label", prefix: str = "") -> dict[int, str]:
    """Label -> :func:`class_label` from a table with ``<prefix>name`` and ``<prefix>wnid`` columns.

    Parameters
    ----------
    table : pandas.DataFrame, optional
        A per-class or confused-pair table; without the name columns (an older run) the mapping is empty.
    label : str
        The label column.
    prefix : str
        ``""`` for a per-class table, ``"true_"`` or ``"predicted_"`` for the pairs.

    Returns
    -------
    dict
        Only the labels that have a name.
    """
    if table is None or f"{prefix}name" not in table.columns:
        return {}
    wnids = table[f"{prefix}wnid"] if f"{prefix}wnid" in table.columns else [None] * len(table)
    return {int(lab): class_label(lab, name, wnid) for lab, name, wnid in zip(table[label], table[f"{prefix}name"],
                                                                             wnids) if _text(name)}


def run_class_labels(per_class: "pd.DataFrame | None", confused_pairs: "pd.DataFrame | None") -> dict[int, str]:
    """Label -> ``name (wnid)`` from a run's per-class and confused-pair tables (evaluate's names; empty
    when the run shows indices), for every part of the report and the figures that names a class."""
    return {**class_labels(confused_pairs, "true_label", "true_"),
            **class_labels(confused_pairs, "predicted_label", "predicted_"), **class_labels(per_class)}
