"""Numbers to the strings the report shows: ``n/a`` for anything that is not a finite number."""
from __future__ import annotations

from typing import Any

from gap_spark.contracts.run_outputs import is_number

__all__ = ["count", "fmt", "interval", "label_text", "pct", "points"]


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
