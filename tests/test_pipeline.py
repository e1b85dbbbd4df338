"""The README's first command end to end at a tiny size, and the pipeline's resume behaviour."""
from __future__ import annotations

import pytest

from gap_spark import cli
from gap_spark.contracts.paths import Paths
from gap_spark.core.config import load_config
from gap_spark.pipeline import StageFailed, run_pipeline
from gap_spark.stages import PIPELINE_STAGES as STAGES
from tests.cluster import REPO
from tests.conftest import tiny_pipeline_sets


def tiny_sets(root) -> list[str]:
    return tiny_pipeline_sets(root)


@pytest.mark.slow
def test_readme_first_command_end_to_end_then_resume(spark, tiny_pipeline):
    # `make demo` runs exactly `gap-spark pipeline --config conf/demo.yaml`; here at a tiny size (the
    # session's run, which the Spark Connect test compares with).
    tmp_path = tiny_pipeline.root
    assert tiny_pipeline.code == 0
    # The printed summary: one "key: value" line each (nested keys dotted), not the stage's JSON.
    printed = dict(line.split(": ", 1) for line in tiny_pipeline.printed.strip().splitlines())
    assert printed["report"].endswith("report.html")
    assert all(printed[f"stages.{s}.status"] == "done" for s in STAGES)

    run = tmp_path / "runs" / "latest"
    manifest = tiny_pipeline.manifest
    assert manifest["splits"]["v2"]["rows_written"] == 800 and manifest["classes"] == 8
    metrics = tiny_pipeline.metrics
    for model in ("lr", "rf"):
        assert (run / "models" / model).is_dir()
        assert 0 <= metrics["models"][model]["val"]["accuracy"] <= 1
    lr = metrics["models"]["lr"]
    assert lr["val"]["accuracy"] > lr["v2"]["accuracy"]  # the generated shift shows
    assert (run / "shift.json").exists() and (run / "explain.json").exists() and (run / "report.md").exists()
    assert len(list((run / "figures").glob("*.png"))) >= 5
    html = (run / "report.html").read_text()
    assert f"{lr['val']['accuracy'] * 100:.1f}" in html

    # A re-run with the same inputs skips every stage.
    config = load_config(str(REPO / "conf" / "demo.yaml"), sets=tiny_sets(tmp_path))
    paths = Paths.from_config(config)
    again = run_pipeline(spark, config, paths)
    assert {s["status"] for s in again["stages"].values()} == {"skipped"}

    # A changed evaluation setting re-runs evaluate and what reads it, nothing upstream.
    changed = config.with_overrides(sets=["evaluate.bootstrap_replicates=20"])
    partial = run_pipeline(spark, changed, paths)
    status = {s: v["status"] for s, v in partial["stages"].items()}
    assert status == {"synth": "skipped", "ingest": "skipped", "train": "skipped", "evaluate": "done",
                      "shift": "done", "explain": "done", "visualize": "done", "report": "done"}


def test_failed_stage_is_named_and_exits_non_zero(spark, tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    argv = ["pipeline", "--no-synth", "--set", f"paths.raw={tmp_path}/raw", "--set", f"paths.data={tmp_path}/ds",
            "--set", f"paths.run={tmp_path}/run"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "stage 'ingest' failed" in err and "train CSV not found" in err

    config = load_config(sets=[f"paths.raw={tmp_path}/raw", f"paths.data={tmp_path}/ds",
                               f"paths.run={tmp_path}/run"])
    with pytest.raises(StageFailed) as info:
        run_pipeline(spark, config, Paths.from_config(config), synth=False, stages=("train",))
    assert info.value.stage == "train" and "dataset not found" in str(info.value)


def test_run_id_names_the_run_directory(tmp_path):
    args = cli.build_parser().parse_args(["pipeline", "--run", f"{tmp_path}/runs/latest", "--run-id", "2026-11-28"])
    _, paths = cli.config_from_args(args)
    assert paths.run == f"{tmp_path}/runs/2026-11-28"
