"""What a command prints: a short summary at the end, and one line when it is interrupted.

The full results stay in the stage's output files; the terminal gets the headline numbers, formatted
the way the report formats them (rates to 4 digits, intervals to 3 decimals).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from gap_spark.core.session import cancel_all_jobs, set_log_level

__all__ = ["headline", "interrupts_cancel_jobs"]

MAX_LINES = 24
MAX_ITEMS = 6


def _value(value: Any) -> str | None:
    """A scalar or a short list as text; None for anything too big to print."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= 160 else value[:157] + "..."
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, float) for v in value):
            return f"[{value[0]:.3f}, {value[1]:.3f}]"
        if len(value) <= MAX_ITEMS and all(isinstance(v, (int, str)) for v in value):
            return ", ".join(str(v) for v in value)
        return f"({len(value)} items)"
    return None


def _lines(summary: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if depth < 2 and len(value) <= 2 * MAX_ITEMS:
                yield from _lines(value, f"{name}.", depth + 1)
            else:
                yield f"{name}: ({len(value)} entries)"
            continue
        text = _value(value)
        if text is not None:
            yield f"{name}: {text}"


def headline(summary: Mapping[str, Any]) -> str:
    """The lines a command prints when it finishes (at most :data:`MAX_LINES`)."""
    lines = list(_lines(summary))
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more in the stage's output files"]
    return "\n".join(lines)


def _quiet_cancel(spark: Any) -> None:
    try:
        set_log_level(spark, "OFF")
        cancel_all_jobs(spark)
    except Exception:  # noqa: BLE001 - the gateway may already be gone; the interrupt still stands
        pass


@contextmanager
def interrupts_cancel_jobs(spark: Any) -> Iterator[None]:
    """Ctrl-C cancels the running Spark jobs quietly and raises KeyboardInterrupt once.

    PySpark's own handler cancels the jobs too, but the JVM and py4j then log the cancellation at
    ERROR level with their traces; a user who pressed Ctrl-C needs one line, which the CLI prints.
    """
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while we clean up is ignored
        # py4j logs its broken command and the interrupt itself on the root logger, with traces.
        for name in ("", "py4j", "pyspark", "gap_spark"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if spark is not None:
            # This thread may be inside a py4j call (reading its reply): a call on the same thread reuses
            # that connection ("reentrant call"), so the cancel goes through a thread of its own.
            worker = threading.Thread(target=_quiet_cancel, args=(spark,), daemon=True)
            worker.start()
            worker.join(timeout=10)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
