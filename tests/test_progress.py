"""The stage heartbeat (issue 16): off a terminal, one progress line per stage at an interval, with the
Spark jobs and tasks read from the status tracker; nothing on a terminal; the thread ends with the stage."""
from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time

import pytest

from gap_spark.core.progress import elapsed_text, stage_heartbeat
from gap_spark.stages import STAGES
from tests.conftest import TINY_SYNTH, config_and_paths

LOGGER = "gap_spark.core.progress"


def _lines(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.getMessage().startswith(f"{name}: ")]


def _heartbeats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("-heartbeat")]


def test_elapsed_time_reads_as_minutes_and_hours():
    assert [elapsed_text(s) for s in (0.4, 59, 90, 3599, 3600 + 5 * 60 + 9)] == ["0s", "59s", "1m30s", "59m59s",
                                                                              "1h05m"]


def test_heartbeat_counts_the_stages_jobs_and_tasks(spark, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    spark.range(10).count()  # a job before the stage: not counted
    with stage_heartbeat(spark, "demo", 0.2, tty=False) as heartbeat:
        assert heartbeat is not None
        spark.sparkContext.parallelize(range(4), 2).map(lambda x: time.sleep(0.5) or x).count()
        time.sleep(0.7)  # the job's end reaches the status tracker, then one more line
    lines = _lines(caplog, "demo")
    assert all(re.fullmatch(r"demo: running \d+s; Spark jobs \d+ done, \d+ running \(.+\)", line) for line in lines)
    assert any(re.search(r"Spark jobs 0 done, 1 running \(stage \d+: [0-2]/2 tasks\)", line) for line in lines)
    assert lines[-1].endswith("; Spark jobs 1 done, 0 running (driver-side work)")
    time.sleep(0.5)
    assert len(_lines(caplog, "demo")) == len(lines) and not _heartbeats()  # stopped with the block


def test_nothing_is_logged_on_a_terminal(spark, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with stage_heartbeat(spark, "quiet", 0.05, tty=True) as heartbeat:
        assert heartbeat is None and not _heartbeats()
        spark.range(100).count()
        time.sleep(0.3)
    assert not _lines(caplog, "quiet")


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_thread_ends_when_the_stage_raises(error, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(error), stage_heartbeat(None, "failing", 0.05, tty=False) as heartbeat:
        assert heartbeat is not None
        assert [t.daemon for t in _heartbeats()] == [True]  # never keeps the process alive
        time.sleep(0.2)
        raise error()
    assert not _heartbeats()
    # Without a SparkContext (Spark Connect, or a stage without Spark) the line has the elapsed time only.
    assert _lines(caplog, "failing") and all(re.fullmatch(r"failing: running \d+s", line)
                                             for line in _lines(caplog, "failing"))


def test_every_stage_runs_under_the_heartbeat_at_spark_progress_seconds(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under `pytest -s` in one
    caplog.set_level(logging.INFO, logger=LOGGER)
    config, paths = config_and_paths(tmp_path, **TINY_SYNTH, **{"spark.progress_seconds": 0.02})
    assert config.settings.spark.progress_seconds == 0.02
    import gap_spark.stages.synth as synth_module

    real = synth_module.run_synth

    def run_synth_then_linger(*args, **kwargs):  # the real stage; a warm tiny synth can end inside 0.02 s
        result = real(*args, **kwargs)
        time.sleep(0.2)
        return result

    monkeypatch.setattr(synth_module, "run_synth", run_synth_then_linger)
    STAGES["synth"].function()(None, config, paths)
    assert len(list((tmp_path / "raw").glob("*.csv"))) == 3  # the real synth ran
    assert _lines(caplog, "synth") and not _heartbeats()
