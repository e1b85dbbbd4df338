"""Helpers shared by the benchmark scripts: timing, memory and data preparation."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil


def machine() -> dict:
    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


@contextmanager
def timer() -> Iterator[dict]:
    out: dict = {}
    start = time.perf_counter()
    yield out
    out["seconds"] = time.perf_counter() - start


def median_time(func: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        with timer() as t:
            func()
        times.append(t["seconds"])
    return statistics.median(times), times


def print_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
             "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    return text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def dump(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
