"""The whole pipeline over Spark Connect (``--remote``), against a local Spark Connect server this module
starts, compared with the classic local run of the same tiny pipeline (the session's ``tiny_pipeline``).

The server comes from the pip ``pyspark`` package (``spark-submit --class ...SparkConnectServer``), on
127.0.0.1 and a free port, with the same partitioning settings as the classic test session. Its Python
workers import this checkout's ``gap_spark`` through PYTHONPATH (the ``mapInArrow`` functions are pickled
by reference). The client runs as its own process through the CLI: a Connect session marks the whole
Python process as Connect (``SPARK_CONNECT_MODE_ENABLED``), which the classic tests in this one must not see.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gap_spark import cli
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.core.session import CONNECT_INSTALL, CONNECT_MODULES, check_remote
from tests.cluster import REPO, SPARK_HOME, SPARK_SUBMIT, free_port
from tests.conftest import tiny_pipeline_sets

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# Partitioning as the classic `spark` fixture's, so that both runs split the same rows the same way.
SERVER_CONF = {
    "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true", "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1", "spark.connect.grpc.binding.address": "127.0.0.1",
}
# LR's only difference: classic fits 30 iterations in rounds of 10 (train.lr.check_every), each round
# continuing the last through the JVM's setInitialModel, which restarts L-BFGS's curvature memory; Connect
# has no setInitialModel and fits the 30 in one go. Both stop short of convergence at max_iter 30, so their
# predictions may differ on a few borderline rows: 2 points of accuracy is 16 of 800 rows.
LR_TOLERANCE = 0.02


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _env(conf_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_GATEWAY_PORT", "SPARK_REMOTE", "SPARK_CONF_DIR")}
    env.update(SPARK_HOME=str(SPARK_HOME), PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
               OPENBLAS_NUM_THREADS="1", SPARK_LOCAL_IP="127.0.0.1")
    if conf_dir is not None:
        env["SPARK_CONF_DIR"] = str(conf_dir)
    return env


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """``url`` (``sc://127.0.0.1:PORT``) and ``log`` of a Spark Connect server running for this module;
    killed afterwards."""
    missing = [m for m in CONNECT_MODULES if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        pytest.fail(f"the Spark Connect test needs {', '.join(missing)}: {CONNECT_INSTALL}; "
                    "`make install` installs the connect extra", pytrace=False)
    work = tmp_path_factory.mktemp("connect-server")
    conf_dir = work / "conf"  # log4j2.properties only: the server logs warnings, not 20k INFO lines
    conf_dir.mkdir()
    shutil.copy(REPO / "conf" / "log4j2.properties", conf_dir / "log4j2.properties")
    port, log_path = free_port(), work / "server.log"
    confs = [a for k, v in {**SERVER_CONF, "spark.connect.grpc.binding.port": str(port),
                            "spark.checkpoint.dir": (work / "checkpoints").as_uri()}.items()
             for a in ("--conf", f"{k}={v}")]
    with open(log_path, "wb") as log:
        server = subprocess.Popen([SPARK_SUBMIT, "--class", SERVER_CLASS, "--name", "gap-spark connect test",
                                   "--master", "local[2]", "--driver-memory", "2g", *confs], env=_env(conf_dir),
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"the Spark Connect server exited ({server.returncode}):\n{_tail(log_path)}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline:
                pytest.fail(f"the Spark Connect server did not listen within 180 s:\n{_tail(log_path)}")
            time.sleep(0.3)
        yield SimpleNamespace(url=f"sc://127.0.0.1:{port}", log=log_path)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def test_remote_urls_are_checked_before_any_work(tmp_path, capsys):
    assert check_remote("sc://localhost:15002") == ("localhost", 15002)
    assert check_remote("sc://10.0.0.5") == ("10.0.0.5", 15002)
    assert check_remote("sc://[::1]:443/;use_ssl=true;token=abc") == ("::1", 443)
    for bad in ("localhost:15002", "http://localhost:15002", "sc://", "sc://host:99999", "sc://host:port",
                "sc://a b:1"):
        with pytest.raises(GapSparkError, match="must look like sc://HOST:PORT"):
            check_remote(bad)
    # The CLI refuses a bad URL in one line, before the locks or Spark (no run directory is made).
    argv = ["train", "--remote", "localhost:15002", "--set", f"paths.data={tmp_path}/d",
            "--set", f"paths.run={tmp_path}/run"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must look like sc://HOST:PORT" in err and not (tmp_path / "run").exists()
    # Every subcommand that starts Spark takes --remote; synth (no Spark) does not.
    parser = cli.build_parser()
    for command in ("ingest", "train", "evaluate", "shift", "explain", "visualize", "pipeline"):
        assert parser.parse_args([command, "--remote", "sc://h:1"]).remote == "sc://h:1"
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--remote", "sc://h:1"])


@pytest.mark.slow
def test_pipeline_over_spark_connect_matches_the_classic_run(connect_server, tiny_pipeline, tmp_path):
    assert tiny_pipeline.code == 0, "the classic tiny pipeline failed"
    # The classic run's CSVs (no second synth; ingest.classes is then synth's K, as the pipeline sets it
    # after its own synth), everything else under tmp_path.
    # No UMAP/t-SNE: numba's first compile in a fresh process is most of a tiny run, and the embedding
    # runs on the driver, the same in both modes.
    sets = [*tiny_pipeline_sets(tmp_path), f"paths.raw={tiny_pipeline.root}/raw", "ingest.classes=8",
            "visualize.methods=[]"]
    argv = [sys.executable, "-m", "gap_spark.cli", "pipeline", "--no-synth", "--remote", connect_server.url,
            "--config", str(REPO / "conf" / "demo.yaml"), *[a for s in sets for a in ("--set", s)]]
    started = time.time()
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    seconds = time.time() - started
    (tmp_path / "client.log").write_text(proc.stderr)
    assert proc.returncode == 0, (f"`gap-spark pipeline --remote` exited {proc.returncode} after {seconds:.0f} s:\n"
                                  f"{proc.stderr[-6000:]}\n--- server log ---\n{_tail(connect_server.log)}")
    log = proc.stderr
    assert "Traceback" not in log
    assert "Spark Connect: session on sc://127.0.0.1:" in log

    # Each thing Connect cannot do is said once, as a warning.
    for said in ("Spark Connect: LR fits its whole budget", "Spark Connect: L-BFGS losses are logged after each fit",
                 "explain: the refit mitigations are not measured"):
        assert log.count(said) == 1, f"{said!r} logged {log.count(said)} times:\n{log[-4000:]}"

    # The same rows in every split.
    manifest = fs.read_json(str(tmp_path / "dataset" / "_manifest.json"))
    classic = tiny_pipeline.manifest
    assert (manifest["dim"], manifest["classes"]) == (classic["dim"], classic["classes"])
    for split, counts in classic["splits"].items():
        for key in ("rows_read", "rows_written", "rows_quarantined"):
            assert manifest["splits"][split][key] == counts[key], (split, key)

    # The same accuracies: RF exactly (same rows, partitions and seeds), LR within LR_TOLERANCE.
    metrics = fs.read_json(str(tmp_path / "runs" / "latest" / "metrics.json"))
    for model, tolerance in (("rf", 0.0), ("lr", LR_TOLERANCE)):
        for split in ("val", "v2"):
            ours, theirs = (m["models"][model][split]["accuracy"] for m in (metrics, tiny_pipeline.metrics))
            assert abs(ours - theirs) <= tolerance, (model, split, ours, theirs)

    run = tmp_path / "runs" / "latest"
    assert (run / "report.html").exists() and (run / "shift.json").exists()
    explain = fs.read_json(str(run / "explain.json"))
    assert "Spark Connect" in str(explain)  # the refits say why they were not measured
    print(f"pipeline over Spark Connect: {seconds:.1f} s")
