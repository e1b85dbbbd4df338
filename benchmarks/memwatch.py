"""Run a command and record the peak resident memory of its whole process tree.

The tree holds the driver's Python process, the Spark JVM (driver and, in local mode, the executors)
and the Python workers, so the peak is what the machine had to hold. Samples every ``--interval``
seconds; the JVM and the Python processes are also reported apart.

    python -m benchmarks.memwatch --json out.json -- gap-spark pipeline --config conf/full.yaml
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import psutil


def tree_rss_mb(root: psutil.Process) -> dict[str, float]:
    """RSS of ``root`` and its descendants in MB, split into java, python and other processes."""
    totals = {"total": 0.0, "java": 0.0, "python": 0.0, "other": 0.0}
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss = proc.memory_info().rss / 2**20
            name = proc.name().lower()
        except psutil.Error:
            continue
        kind = "java" if "java" in name else "python" if "python" in name else "other"
        totals[kind] += rss
        totals["total"] += rss
    return totals


class MemoryWatch:
    """Samples a process tree in a background thread; ``peak`` holds the largest sample of each kind."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = {"total": 0.0, "java": 0.0, "python": 0.0, "other": 0.0}
        self.timeline: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tree_rss_mb(self.root)
            for key, value in sample.items():
                self.peak[key] = max(self.peak[key], value)
            self.timeline.append((round(time.time() - self._started, 1), round(sample["total"], 1)))
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_watched(command: list[str], interval: float = 1.0, env: dict | None = None,
                cwd: str | None = None) -> dict:
    """Run ``command``; return its exit code, wall seconds and peak tree RSS (MB) by process kind."""
    started = time.time()
    proc = subprocess.Popen(command, env=env, cwd=cwd)
    with MemoryWatch(proc.pid, interval) as watch:
        code = proc.wait()
    return {"command": command, "returncode": code, "seconds": round(time.time() - started, 1),
            "peak_rss_mb": {k: round(v, 1) for k, v in watch.peak.items()},
            "timeline_total_mb": watch.timeline[:: max(1, len(watch.timeline) // 500)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the result here")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given")
    result = run_watched(command, args.interval)
    print(f"memwatch: exit {result['returncode']} after {result['seconds']} s; peak RSS (MB) "
          + ", ".join(f"{k} {v:.0f}" for k, v in result["peak_rss_mb"].items()), file=sys.stderr)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
