"""The benchmark harness: its memory sampler, and a 1% smoke run that must produce a sane table."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.memwatch import run_watched
from tests.cluster import REPO


def test_memory_watch_sees_a_child_that_holds_memory():
    hold = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    result = run_watched([sys.executable, "-c", hold], interval=0.2)
    assert result["returncode"] == 0
    assert 300 <= result["peak_rss_mb"]["python"] < 600
    assert result["peak_rss_mb"]["java"] == 0


def test_memory_watch_reports_a_failing_command():
    result = run_watched([sys.executable, "-c", "raise SystemExit(3)"], interval=0.2)
    assert result["returncode"] == 3


# The real shape (D=1024, K=1000) at 1% of the rows; the models, the bootstrap and the domain classifier
# are cut short (each LR iteration of the domain classifier is a Spark job) so CI stays quick.
SMOKE_SETS = ["spark.conf.spark.driver.memory=2g", "train.lr.max_iter=3", "train.rf.num_trees=2",
              "train.rf.max_depth=5", "visualize.methods=[tsne]",
              "evaluate.bootstrap_replicates=20", "shift.domain_folds=2", "shift.domain_max_iter=10",
              "explain.domain_folds=2", "explain.domain_max_iter=10", "explain.bootstrap_replicates=20",
              "explain.refit_sample_rows=800", "explain.refit_max_iter=2"]


# Every stage of the pipeline, each timed as its own process (the harness must not leave one out).
STAGES = ("ingest", "train", "evaluate", "shift", "explain", "visualize", "report")


@pytest.mark.slow
def test_harness_at_one_percent_writes_a_sane_table(tmp_path):
    work = tmp_path / "bench"
    command = [sys.executable, "-m", "benchmarks.harness", "--scale", "0.01", "--work", str(work)]
    for item in SMOKE_SETS:
        command += ["--set", item]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((work / "benchmark.json").read_text())
    stages = {row["stage"]: row for row in result["stages"]}
    for stage in STAGES:
        row = stages[stage]
        assert row["gap_spark_s"] > 0 and row["tree_peak_mb"] > 0
        assert row["tree_peak_mb"] >= row["driver_jvm_peak_mb"]
        if stage != "report":  # the report reads JSON and PNG files: no Spark
            assert row["driver_jvm_peak_mb"] > 100, f"{stage}: no Spark JVM was measured"
    for stage in ("ingest", "train"):
        row = stages[stage]
        assert row["baseline_s"] > 0 and row["baseline_peak_mb"] > 0
        assert row["ratio"] == pytest.approx(row["gap_spark_s"] / row["baseline_s"], abs=0.006)
    assert stages["total"]["gap_spark_s"] == pytest.approx(
        sum(stages[s]["gap_spark_s"] for s in STAGES),
        abs=0.2)

    manifest = json.loads((work / "dataset" / "_manifest.json").read_text())
    # The baselines read every good row of each CSV; ingest sets the train CSV's select rows apart.
    good = {split: manifest["splits"][split]["rows_written"] + manifest["splits"][split]["rows_selected"]
            for split in ("train", "val", "v2")}
    assert result["baselines"]["pyarrow"]["rows"] == good
    prototype = result["baselines"]["prototype"]
    assert prototype["train_rows"] == good["train"] == 12812
    assert 0 < prototype["lr_rows"] <= prototype["train_rows"]

    models = {row["model"]: row for row in result["accuracy"]}
    assert set(models) == {"gap-spark lr", "gap-spark rf", "baseline A: SGD partial_fit", "baseline A: sklearn LR"}
    for name, row in models.items():
        assert 0 <= row["v2"] <= 1 and 0 <= row["val"] <= 1
        assert row["gap"] == pytest.approx(row["val"] - row["v2"])
        # 1000 classes: chance is 0.001; every model must have learned something (10x chance).
        assert row["val"] > 0.01, name
    assert models["gap-spark lr"]["val"] > 0.5
    lo, hi = models["gap-spark lr"]["gap_ci95"]
    assert lo <= models["gap-spark lr"]["gap"] <= hi

    text = (work / "benchmark.md").read_text()
    assert "| stage |" in text and "| model |" in text and "--scale 0.01" in text
