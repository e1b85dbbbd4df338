"""Which model the per-class views show: chosen on the selection slice, never on val or v2 (issue 14)."""
from __future__ import annotations

from gap_spark.contracts.run import RunDir
from gap_spark.contracts.run_artifacts import load_run_artifacts
from gap_spark.core import fs
from tests.test_report import METRICS, report_texts, write_fake_run


def _train_summary(selection: dict[str, float | None], record: dict | None = None) -> dict:
    """train_summary.json as train writes it: models in train order, each with its selection-slice score."""
    models = {name: {"params": {}, "rows": 1000, "iterations": 10, "objective_history": [1.0, 0.5],
                     "seconds": {"fit": 1.0},
                     "selection": {"rows": 40, "accuracy": acc, "log_loss": None if acc is None else 0.5}}
              for name, acc in selection.items()}
    summary = {"models": models, "seconds": 3.0}
    summary["selection"] = record if record is not None else {
        "split": "select", "source": "select", "rows": 40, "fallback": None, "test_splits_read": False}
    return summary


def _run(tmp_path, selection: dict[str, float | None] | None) -> RunDir:
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("metrics", "per_class", "confused"))
    if selection is not None:
        fs.write_json(RunDir(run).train_summary, _train_summary(selection))
    return RunDir(run)


def test_metrics_favour_lr_on_val_but_the_selection_slice_picks_rf(tmp_path):
    # The fixture's lr is better on val (84.4% against 77.2%): that must not matter.
    assert METRICS["models"]["lr"]["val"]["accuracy"] > METRICS["models"]["rf"]["val"]["accuracy"]
    run_dir = _run(tmp_path, {"lr": 0.71, "rf": 0.74})
    assert load_run_artifacts(run_dir, None, ("lr", "rf")).model == "rf"
    assert load_run_artifacts(run_dir, "lr", ("lr", "rf")).model == "lr"  # visualize.model wins when set
    summary, *_ = report_texts(run_dir.root)  # the report stage chooses the same way
    assert summary["model"] == "rf"


def test_ties_and_missing_scores_fall_back_to_train_order(tmp_path):
    assert load_run_artifacts(_run(tmp_path / "a", {"rf": 0.7, "lr": 0.7}), None, ("lr", "rf")).model == "rf"
    assert load_run_artifacts(_run(tmp_path / "b", {"rf": None, "lr": None}), None, ("lr", "rf")).model == "rf"
    # No train summary at all (an older run): the first of train.models, whatever val says.
    assert load_run_artifacts(_run(tmp_path / "c", None), None, ("rf", "lr")).model == "rf"


def test_a_trained_model_that_was_not_evaluated_is_passed_over(tmp_path):
    run_dir = _run(tmp_path, {"mlp": 0.9, "lr": 0.6, "rf": 0.65})
    assert "mlp" not in METRICS["models"]
    assert load_run_artifacts(run_dir, None, ("lr", "rf")).model == "rf"


def test_the_defaults_no_longer_cite_val_accuracy_for_the_choice():
    import importlib.resources

    text = importlib.resources.files("gap_spark").joinpath("defaults.yaml").read_text()
    block = text[text.index("\nvisualize:"):text.index("\nreport:")]
    assert "best val accuracy" not in block and "selection slice" in block
