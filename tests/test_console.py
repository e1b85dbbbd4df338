"""Console output a person can read: numbers in log lines formatted as the report formats them, Spark's
progress bar only on a terminal, the JVM warnings nobody can act on silenced by conf/log4j2.properties,
and --quiet / --verbose on every subcommand."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from gap_spark import cli
from tests.cluster import REPO
from tests.test_report import write_fake_run

# A float printed with Python's full precision (0.7995457061800878) instead of the report's format.
RAW_FLOAT = re.compile(r"\d\.\d{5,}")


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gap_spark.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(REPO))


def test_every_subcommand_takes_quiet_and_verbose_but_not_both():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them nowhere else
    assert set(commands) >= {"synth", "ingest", "train", "evaluate", "shift", "visualize", "report", "pipeline"}
    for name in commands:
        assert parser.parse_args([name, "--quiet"]).quiet and parser.parse_args([name, "--verbose"]).verbose
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--quiet", "--verbose"])


def test_quiet_prints_nothing_on_success_and_verbose_shows_debug(tmp_path):
    run = tmp_path / "run"
    write_fake_run(str(run))
    quiet = _run_cli("report", "--run", str(run), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    normal = _run_cli("report", "--run", str(run))
    assert normal.returncode == 0 and "html:" in normal.stdout and " DEBUG " not in normal.stderr
    assert " INFO gap_spark.stages.report: report: " in normal.stderr
    verbose = _run_cli("report", "--run", str(run), "--verbose")
    assert verbose.returncode == 0 and " DEBUG gap_spark: gap-spark report: raw " in verbose.stderr


@pytest.mark.slow
def test_log_lines_format_numbers_as_the_report_does(imagenet_run):
    *_, lines = imagenet_run
    evaluate = [line for line in lines if "gap_spark.stages.evaluate" in line]
    assert any(re.search(r"lr on val: [\d,]+ rows, accuracy \d+\.\d%, top-5 \d+\.\d%, ECE \d\.\d{3} ", line)
               for line in evaluate)
    assert any(re.search(r"lr gap \(val - v2\): -?\d+\.\d points, 95% CI \[-?\d+\.\d, -?\d+\.\d\]", line)
               for line in evaluate)
    assert any("largest superclass drop" in line for line in evaluate)
    # No stage line prints a number at full precision (the optimiser's own trace keeps its digits).
    stage_lines = [line for line in lines if ".stages." in line or ".pipeline" in line]
    assert stage_lines and not [line for line in stage_lines if RAW_FLOAT.search(line)]


@pytest.mark.slow
def test_jvm_noise_is_silenced_and_the_progress_bar_needs_a_terminal(tmp_path):
    """A real session built by get_spark (SPARK_CONF_DIR = conf/): the warnings conf/log4j2.properties denies
    do not reach stderr, other warnings still do, and stderr being a pipe turns the progress bar off."""
    script = textwrap.dedent("""
        from gap_spark.core.config import load_config
        from gap_spark.core.session import get_spark
        config = load_config(overrides={"spark": {"master": "local[1]", "conf": {"spark.ui.enabled": "false"}}})
        spark = get_spark(config)
        manager = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager
        dag = manager.getLogger("org.apache.spark.scheduler.DAGScheduler")
        dag.warn("Broadcasting large task binary with size 15.9 MiB")
        dag.warn("Broadcasting large task binary with size 1714.1 KiB")
        dag.warn("Broadcasting large task binary with size 1.2 GiB")
        dag.warn("another DAGScheduler warning")
        manager.getLogger("org.apache.spark.util.SparkStringUtils").warn(
            "Truncated the string representation of a plan since it was too large.")
        print("progress", spark.conf.get("spark.ui.showConsoleProgress"))
        spark.stop()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", "PYSPARK_GATEWAY_PORT")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "progress false" in done.stdout
    assert "size 1.2 GiB" in done.stderr and "another DAGScheduler warning" in done.stderr
    assert "MiB" not in done.stderr and "KiB" not in done.stderr and "Truncated the string" not in done.stderr


def test_progress_bar_follows_whether_stderr_is_a_terminal(monkeypatch):
    from gap_spark.core import session

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert session.console_progress() is True
    monkeypatch.setattr(sys, "stderr", None)  # no stderr at all (a daemon)
    assert session.console_progress() is False
