"""MLflow tracking (the mlflow extra): a tracked pipeline run read back through ``mlflow.search_runs``,
a single tracked stage, the default store, the flattening, and the one-line message without the extra."""
from __future__ import annotations

import os
import sys

import mlflow  # the mlflow extra: `make install` installs .[test,mlflow], as CI does
import pytest

from gap_spark import cli, tracking
from gap_spark.core.errors import GapSparkError
from gap_spark.stages.report import run_report
from tests.conftest import IMAGENET_STAGES, config_and_paths
from tests.test_report import write_fake_run


def test_flattening_settings_and_outputs():
    assert tracking.flat_params({"train": {"models": ("lr", "rf"), "lr": {"max_iter": 3}, "pca_k": None},
                                 "spark": {"conf": {}}, "tune": {"enabled": False}}) == {
        "train.models": "lr,rf", "train.lr.max_iter": "3", "train.pca_k": "null", "spark.conf": "null",
        "tune.enabled": "false"}
    metrics = tracking.flat_metrics({"lr": {"gap": {"accuracy": 0.08, "ci95": [0.05, 0.11]}, "ok": True,
                                            "ece": float("nan"), "reliability": [{"count": 3}], "top5": [1, 2, 3]},
                                     "odd key!": 1})
    assert metrics == {"lr.gap.accuracy": 0.08, "lr.gap.ci95_low": 0.05, "lr.gap.ci95_high": 0.11, "odd key_": 1.0}


def test_default_store_is_a_sqlite_file_in_the_run_directory(tmp_path):
    config, paths = config_and_paths(tmp_path)
    uri, artifacts = tracking.tracking_uri(config, paths)
    assert uri == f"sqlite:///{tmp_path}/run/mlflow/mlflow.db"
    assert artifacts == f"file://{tmp_path}/run/mlflow/artifacts"
    config, paths = config_and_paths(tmp_path, **{"paths.run": "s3a://bucket/run"})
    with pytest.raises(GapSparkError, match="needs tracking.uri when the run directory is not local"):
        tracking.tracking_uri(config, paths)
    config, paths = config_and_paths(tmp_path, **{"tracking.uri": "http://127.0.0.1:5000"})
    assert tracking.tracking_uri(config, paths) == ("http://127.0.0.1:5000", None)


@pytest.mark.parametrize("argv", [["pipeline", "--mlflow"], ["evaluate", "--mlflow"],
                                  ["train", "--set", "tracking.mlflow=true"]])
def test_without_the_extra_the_flag_fails_at_start_with_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    where = ["--set", f"paths.raw={tmp_path}/raw", "--set", f"paths.data={tmp_path}/data", "--set",
             f"paths.run={tmp_path}/run"]
    assert cli.main([*argv, *where]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'gap-spark[mlflow]'" in err[0] and err[0].startswith(f"gap-spark {argv[0]}")
    assert not (tmp_path / "raw").exists() and not (tmp_path / "run").exists()  # nothing started


def test_a_single_stage_is_one_run_with_its_outputs(tmp_path):
    run = tmp_path / "run"
    write_fake_run(str(run))
    config, paths = config_and_paths(tmp_path, **{"tracking.mlflow": "true", "tracking.experiment": "single"})
    with tracking.stage_tracking(config, paths, "report"):
        run_report(None, config, paths)
    mlflow.set_tracking_uri(f"sqlite:///{run}/mlflow/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["single"])
    assert list(runs["tags.mlflow.runName"]) == ["report"] and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.report.top_rows"] == "15"
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.loc[0, "run_id"])}
    assert names == {"report.html", "report.md"}
    assert (run / "mlflow" / "artifacts").is_dir()  # the default store keeps its artifacts in the run


@pytest.mark.slow
def test_pipeline_run_with_a_nested_run_per_stage_reads_back(imagenet_run, spark, tmp_path):
    from pyspark.ml import PipelineModel

    config, _, _, _ = imagenet_run
    assert config.settings.tracking.mlflow
    mlflow.set_tracking_uri(config.settings.tracking.uri)
    runs = mlflow.search_runs(experiment_names=["gap-spark-tests"])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    parent_id = parent.iloc[0]["run_id"]
    # Params: every setting, flattened.
    assert parent.iloc[0]["params.train.lr.max_iter"] == "10" and parent.iloc[0]["params.synth.classes"] == "1000"
    # Headline metrics on the pipeline's run: accuracies and the gap with its interval bounds.
    gap = parent.iloc[0]["metrics.models.lr.gap.accuracy"]
    low, high = parent.iloc[0]["metrics.models.lr.gap.ci95_low"], parent.iloc[0]["metrics.models.lr.gap.ci95_high"]
    assert low <= gap <= high
    # One nested run per stage, each with its stage's params and status.
    nested = runs[runs["tags.mlflow.parentRunId"] == parent_id].set_index("tags.mlflow.runName")
    assert sorted(nested.index) == sorted(IMAGENET_STAGES)
    assert (nested["tags.gap_spark.status"] == "done").all()
    assert nested.loc["evaluate", "metrics.models.lr.val.accuracy"] == pytest.approx(
        parent.iloc[0]["metrics.models.lr.val.accuracy"])
    assert nested.loc["evaluate", "params.evaluate.bootstrap_replicates"] == "20"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(nested.loc["train", "run_id"], "lr.objective")
    assert len(history) >= 2 and history[-1].value < history[0].value
    # Artifacts: the report on the pipeline's run, the model in MLlib format (loads back), tables, figures.
    assert "report.html" in {a.path for a in client.list_artifacts(parent_id)}
    assert {a.path for a in client.list_artifacts(nested.loc["evaluate", "run_id"])} >= {
        "metrics.json", "per_class", "confused_pairs"}
    assert any(a.path.endswith(".png") for a in client.list_artifacts(nested.loc["visualize", "run_id"], "figures"))
    local = mlflow.artifacts.download_artifacts(run_id=nested.loc["train", "run_id"], artifact_path="models/lr",
                                                dst_path=str(tmp_path))
    model = PipelineModel.load(local)
    assert model.stages[-1].numClasses == 1000


@pytest.mark.slow
def test_explain_stage_alone_logs_its_parts_estimators_and_figures(explained):
    """`gap-spark explain --mlflow` (the shared fixture): one run with explain's params, per model the gap's
    parts with interval bounds and the label-free estimators' errors, explain.json and its figures."""
    _, paths, _, doc = explained
    mlflow.set_tracking_uri(f"sqlite:///{os.path.dirname(paths.run)}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["gap-spark-explain"])
    assert list(runs["tags.mlflow.runName"]) == ["explain"] and runs.loc[0, "status"] == "FINISHED"
    run = runs.iloc[0]
    assert run["params.explain.bootstrap_replicates"] == "50" and run["params.explain.refit_max_iter"] == "3"
    for part, block in doc["models"]["lr"]["parts"].items():
        assert run[f"metrics.models.lr.parts.{part}.value"] == pytest.approx(block["value"])
        low, high = run[f"metrics.models.lr.parts.{part}.ci95_low"], run[f"metrics.models.lr.parts.{part}.ci95_high"]
        assert (low, high) == pytest.approx(tuple(block["ci95"]))
    for name, estimator in doc["models"]["lr"]["estimators"].items():
        assert run[f"metrics.models.lr.estimators.{name}.error"] == pytest.approx(estimator["error"])
        assert run[f"metrics.models.lr.estimators.{name}.abs_error"] == pytest.approx(estimator["abs_error"])
    assert 0 < run["metrics.models.lr.weights.auc"] <= 1
    assert not any(".per_class." in c or ".rows" in c for c in runs.columns)  # the table rows are an artifact
    client = mlflow.MlflowClient()
    assert "explain.json" in {a.path for a in client.list_artifacts(run["run_id"])}
    figures = {a.path for a in client.list_artifacts(run["run_id"], "figures")}
    assert figures == {"figures/explain_waterfall.png", "figures/explain_mitigations.png"}
