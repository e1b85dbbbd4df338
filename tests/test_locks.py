"""Directory locks, preflight and the one-line summary: no Spark needed."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from gap_spark import cli
from gap_spark.console import headline
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.core.locks import LockHeld, directory_lock, hold_locks, lock_path

HOUR = 3600.0

HOLDER = """
import sys, time
from gap_spark.core.locks import directory_lock
with directory_lock(sys.argv[1], 3600):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def other_process_holds(tmp_path):
    """A live process (another PID) holding the lock of tmp_path/run."""
    target = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, target], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "locked"
    yield target, proc
    proc.kill()
    proc.wait()


def test_a_live_lock_refuses_and_names_its_holder(other_process_holds):
    target, proc = other_process_holds
    with pytest.raises(LockHeld) as info, directory_lock(target, HOUR):
        pass
    message = str(info.value)
    assert f"PID {proc.pid}" in message and socket.gethostname() in message
    assert lock_path(target) in message  # tells the user what to remove if that run is gone
    assert fs.exists(lock_path(target))  # the holder's lock is untouched


def test_a_second_command_on_the_same_run_exits_2_with_one_line(other_process_holds, tmp_path, capsys):
    target, proc = other_process_holds
    code = cli.main(["report", "--run", target])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "in use by another gap-spark run" in err[0] and f"PID {proc.pid}" in err[0]
    assert not os.path.exists(target)  # nothing was created


HOLDER_MANY = """
import os, sys, time
from gap_spark.core.locks import hold_locks
data, staging, held = sys.argv[1], sys.argv[2], sys.argv[3:]
with hold_locks(held, 3600):
    os.makedirs(staging)  # a live ingest's staging beside the dataset
    with open(os.path.join(staging, "part-00000.parquet"), "wb") as f:
        f.write(b"PAR1 being written")
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("held", [("run",), ("data", "run")])
def test_a_second_pipeline_on_the_same_directories_refuses_before_spark(tmp_path, held):
    """Issue 13 item 3: while a first run holds the run directory (and, as a pipeline does, the dataset),
    a second ``gap-spark pipeline`` on the same directories exits 2 with one line naming the holder. It
    runs with JAVA_HOME pointing nowhere: had it reached Spark it would fail on Java instead. The first
    run's staging folder and locks are left as they were, and nothing else is written."""
    dirs = {name: str(tmp_path / name) for name in ("raw", "data", "run")}
    staging = dirs["data"] + ".staging-0123abcd"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_MANY, dirs["data"], staging,
                               *(dirs[name] for name in held)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted(os.listdir(tmp_path))
        started = time.time()
        second = subprocess.run([sys.executable, "-m", "gap_spark.cli", "pipeline", "--raw", dirs["raw"],
                                 "--data", dirs["data"], "--run", dirs["run"]], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd(),
                                                  "JAVA_HOME": str(tmp_path / "no-java")})
        err = second.stderr.strip().splitlines()
        assert second.returncode == 2, second.stderr
        assert len(err) == 1 and err[0].startswith("gap-spark pipeline: error: "), err
        assert "in use by another gap-spark run" in err[0] and f"PID {holder.pid}" in err[0], err
        assert "java" not in second.stderr.lower() and time.time() - started < 60
        assert sorted(os.listdir(tmp_path)) == before  # the staging, the holder's locks, nothing new
        assert os.listdir(staging) == ["part-00000.parquet"]
        for name in held:
            assert json.loads(fs.read_text(lock_path(dirs[name])))["pid"] == holder.pid
        assert holder.poll() is None  # the first run is still going
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_whose_process_is_gone_is_broken_with_a_warning(tmp_path, caplog):
    target = str(tmp_path / "data")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fs.write_json(lock_path(target), {"host": socket.gethostname(), "pid": dead.pid, "started": time.time(),
                                      "command": "gap-spark ingest", "token": "old"})
    with caplog.at_level(logging.WARNING, logger="gap_spark.core.locks"), directory_lock(target, HOUR) as path:
        assert json.loads(fs.read_text(path))["pid"] == os.getpid()
    assert "stale lock" in caplog.text and "is gone" in caplog.text
    assert not fs.exists(lock_path(target))  # released on exit


def test_a_lock_older_than_the_limit_is_broken_even_from_another_host(tmp_path, caplog):
    target = str(tmp_path / "run")
    fs.write_json(lock_path(target), {"host": "elsewhere.example", "pid": 1, "started": time.time() - 13 * HOUR,
                                      "command": "gap-spark train", "token": "old"})
    with caplog.at_level(logging.WARNING), directory_lock(target, 12 * HOUR):
        pass
    assert "13.0 h old" in caplog.text
    fs.write_json(lock_path(target), {"host": "elsewhere.example", "pid": 1, "started": time.time() - HOUR,
                                      "command": "gap-spark train", "token": "old"})
    with pytest.raises(LockHeld, match="elsewhere.example"), directory_lock(target, 12 * HOUR):
        pass


def test_locks_are_reentrant_in_a_process_and_released_once(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with hold_locks([a, b, a], HOUR) as held:
        assert sorted(held) == [lock_path(a), lock_path(b)]
        with directory_lock(a, HOUR):  # a stage inside the pipeline takes the lock again
            pass
        assert fs.exists(lock_path(a))  # still held by the outer block
    assert not fs.exists(lock_path(a)) and not fs.exists(lock_path(b))


def test_a_lock_taken_over_by_another_run_is_not_removed_by_the_first(tmp_path):
    target = str(tmp_path / "run")
    with directory_lock(target, HOUR) as path:
        fs.write_json(path, {"host": "h", "pid": 1, "started": time.time(), "command": "", "token": "theirs"})
    assert json.loads(fs.read_text(lock_path(target)))["token"] == "theirs"


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the run directory's parent should be")
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli.main(["report", "--run", str(blocker / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write the output" in err[0] and "not a directory" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_headline_is_short_and_formats_numbers_like_the_report():
    summary = {"html": "run/report.html", "rows": 1281167, "accuracy": 0.897312, "ci95": [0.79954570618, 0.82597],
               "models": {"lr": {"val": 0.9, "v2": 0.83}}, "top": list(range(50)),
               "features": {str(i): i for i in range(40)}}
    text = headline(summary)
    assert "rows: 1,281,167" in text and "accuracy: 0.8973" in text and "ci95: [0.800, 0.826]" in text
    assert "models.lr.v2: 0.83" in text and "top: (50 items)" in text and "features: (40 entries)" in text
    assert "0.7995457" not in text


# ---------------------------------------------------------------------------------------------
# An unwritable parent: the lock file cannot be created beside the directory (issue 13, item 8)
# ---------------------------------------------------------------------------------------------

def _without_root_file_powers() -> None:
    """In the child, before exec: drop the capabilities that let root ignore file modes (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set, so that a 0o555 directory binds root too."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_parent_of_the_run_is_one_line_and_exit_2(tmp_path):
    """The run directory is writable (so the preflight passes) but its parent is 0o555, so ``run.lock``
    cannot be created beside it. Run as root, the command runs without the capabilities that bypass
    file modes, so the 0o555 parent is really unwritable to it."""
    parent = tmp_path / "ro"
    run = parent / "run"
    run.mkdir(parents=True)
    parent.chmod(0o555)
    try:
        before = sorted(os.listdir(parent))
        proc = subprocess.run([sys.executable, "-m", "gap_spark.cli", "report", "--run", str(run)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.getcwd()},
                              preexec_fn=_without_root_file_powers if os.geteuid() == 0 else None)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(err) == 1 and err[0].startswith("gap-spark report: error: cannot write the output: "), err
        assert lock_path(str(run)) in err[0] and "Permission denied" in err[0]
        assert sorted(os.listdir(parent)) == before
    finally:
        parent.chmod(0o755)


def test_a_lock_beside_a_regular_file_is_one_line(tmp_path):
    """The same refusal from the lock itself, for a parent that is a regular file (no preflight involved)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(GapSparkError, match=r"^cannot write the output: .*a-file/run: cannot create its lock "
                                            r"file .*a-file/run\.lock") as info, \
            directory_lock(str(blocker / "run"), HOUR):
        pass
    assert "\n" not in str(info.value)
