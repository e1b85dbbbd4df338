"""Ctrl-C during a stage's Spark job: one line, no traceback, exit 130 (issue 13, item 9).

The command runs for real in a child process (``gap_spark.cli.main``: preflight, locks, a real Spark
session, the SIGINT handler of :mod:`gap_spark.console`). Its stage is swapped for one whose Spark job
sleeps, so that the interrupt lands inside a running job at a known time; Spark itself is not replaced.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from gap_spark import cli

CHILD = """
import sys, time
from gap_spark import cli

def sleeping_stage(spark, config, paths):
    sys.stderr.write("STAGE-JOB-STARTING\\n")
    sys.stderr.flush()
    spark.sparkContext.parallelize([0], 1).map(lambda x: time.sleep(120) or x).collect()
    return {"finished": True}

cli.stage_function = lambda name: sleeping_stage
sys.exit(cli.main(sys.argv[1:]))
"""


class _Lines:
    """The child's stderr, read line by line in a thread (so that waiting for a marker never blocks)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._thread.start()

    def wait_for(self, marker: str, proc: subprocess.Popen, timeout: float) -> int:
        """The index of the line holding ``marker``, once it has come."""
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            for i, line in enumerate(list(self.lines)):
                if marker in line:
                    return i
            time.sleep(0.2)
        raise AssertionError(f"no {marker!r} from the child; its stderr so far:\n{''.join(self.lines)}")

    def join(self) -> list[str]:
        self._thread.join(timeout=10)
        return self.lines


@pytest.mark.parametrize("command", ["evaluate"])
def test_ctrl_c_in_a_running_spark_job_prints_one_line_and_exits_130(tmp_path, command):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, command, "--data", str(tmp_path / "data"),
                             "--run", str(run), "--quiet"], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, start_new_session=True)
    stderr = _Lines(proc.stderr)
    try:
        marker = stderr.wait_for("STAGE-JOB-STARTING", proc, timeout=90)
        time.sleep(2.0)  # the job's task is running (sleeping in a Python worker)
        sent = time.time()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group (JVM and workers too)
        proc.wait(timeout=30)
        waited = time.time() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.stdout is not None
    out = proc.stdout.read()
    after = [line.rstrip("\n") for line in stderr.join()[marker + 1:] if line.strip()]
    assert proc.returncode == 130, after
    assert after == [f"gap-spark {command}: {cli.interrupted_message(command)}"], after
    assert out == "" and waited < 30
    assert not os.path.exists(str(run) + ".lock")  # the lock was released on the way out
