"""Tests of `gap-spark report`: numbers from metrics.json and shift.json, the typed loaders, escaping by the
templates, self-containment, graceful degradation, and (slow) a real render in headless Chromium."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest

from gap_spark.contracts.run import RunDir
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.present.plots_base import size_px
from gap_spark.present.plots_results import confused_pairs_figure
from gap_spark.present.render import md, png_size
from gap_spark.stages.report import run_report
from tests.conftest import config_and_paths

SCRIPT = '<script>alert("x")</script>'
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

# What the report says of a run that stopped before the explain stage (write_fake_run has no explain.json).
NO_EXPLAIN = "explain.json is missing (run `gap-spark explain`)"


# ---------------------------------------------------------------------------------------------
# Hand-made run outputs matching the contract in the shared design notes
# ---------------------------------------------------------------------------------------------

def _set_metrics(rows, accuracy, ece, confidence):
    bins = []
    for i in range(15):
        lo, hi = i / 15, (i + 1) / 15
        n = 0 if i < 3 else 10 * i
        bins.append({"bin_lower": lo, "bin_upper": hi, "count": n, "accuracy": min(1.0, lo + 0.6 * (hi - lo)),
                     "confidence": (lo + hi) / 2})
    return {"rows": rows, "accuracy": accuracy, "top5_accuracy": accuracy + 0.08, "macro_f1": accuracy - 0.012,
            "weighted_f1": accuracy - 0.006, "log_loss": 0.7734, "ece": ece, "mean_confidence": confidence,
            "confident_fraction": 0.8125, "confident_accuracy": 0.9031, "unconfident_accuracy": 0.4417,
            "reliability": bins}


METRICS = {
    "models": {
        "lr": {"val": _set_metrics(800, 0.8437, 0.0312, 0.8213), "v2": _set_metrics(800, 0.7362, 0.0688, 0.7954),
               "gap": {"accuracy": 0.1075, "ci95": [0.0712, 0.1438], "macro_f1": 0.1021,
                       "macro_f1_ci95": [0.0655, 0.1389], "ece": -0.0376, "ece_ci95": [-0.0581, -0.0174]}},
        "rf": {"val": _set_metrics(800, 0.7716, 0.0533, 0.6121), "v2": _set_metrics(800, 0.6827, 0.0811, 0.5903),
               "gap": {"accuracy": 0.0889, "ci95": [0.0521, 0.1257], "macro_f1": 0.0843,
                       "macro_f1_ci95": [0.0466, 0.1201], "ece": -0.0278, "ece_ci95": [-0.0502, -0.0061]}},
    },
    "dataset": {"dim": 16, "classes": 8, "fingerprint": "f00dcafe",
                "splits": {"train": {"rows": 1600, "quarantined": 0}, "val": {"rows": 800, "quarantined": 0},
                           "v2": {"rows": 800, "quarantined": 0}}},
    "bootstrap_replicates": 200,
    "seconds": 12.5,
}


def _feature_block(n_shifted, smds):
    top = [{"feature": f, "mean_a": 0.1 * i, "mean_b": 0.1 * i + smd, "std_a": 1.02, "std_b": 0.98, "smd": smd,
            "ks": abs(smd) / 2.5, "wasserstein": abs(smd) * 0.9} for i, (f, smd) in enumerate(smds)]
    return {"n_features": 16, "threshold": 0.2, "n_shifted": n_shifted, "top": top}


SHIFT = {
    "features": {"val_v2": _feature_block(3, [(5, 0.6173), (11, -0.4821), (2, 0.2544), (7, 0.0913)]),
                 "train_val": _feature_block(0, [(5, 0.0412), (3, -0.0331)])},
    "domain_classifier": {
        "val_v2": {"auc": 0.6137, "ci95": [0.5912, 0.6358], "auc_pca": 0.6024, "ci95_pca": [0.5801, 0.6247],
                   "rows_per_set": 800, "top_features": [{"feature": 5, "importance": 0.31},
                                                         {"feature": 11, "importance": 0.22}]},
        "train_val": {"auc": 0.5031, "ci95": [0.4802, 0.5263], "auc_pca": 0.4988, "ci95_pca": [0.4751, 0.5219],
                      "rows_per_set": 800, "top_features": [{"feature": 3, "importance": 0.09}]},
    },
    "labels": {"val_v2": {"rows_a": 800, "rows_b": 800, "classes_a": 8, "classes_b": 8, "tvd": 0.0421,
                          "chi2": 3.52, "dof": 7, "p_value": 0.8331},
               "train_val": {"rows_a": 1600, "rows_b": 800, "classes_a": 8, "classes_b": 8, "tvd": 0.0187,
                             "chi2": 1.1, "dof": 7, "p_value": 0.9931}},
    "confidence": {"lr": {"val": {"rows": 800, "mean": 0.8213, "std": 0.2, "q05": 0.3512, "q25": 0.71,
                                  "median": 0.9034, "q75": 0.97, "q95": 0.99},
                          "v2": {"rows": 800, "mean": 0.7954, "std": 0.22, "q05": 0.3011, "q25": 0.66,
                                 "median": 0.8702, "q75": 0.96, "q95": 0.99},
                          "mean_difference": -0.0259, "ks": 0.0877, "ks_error_bound": 0.001,
                          "wasserstein": 0.0266, "wasserstein_error_bound": 0.001}},
    "seconds": 30.1,
}

PER_CLASS_CSV = "label,val_n,val_correct,val_accuracy,v2_n,v2_correct,v2_accuracy,drop\n" + "\n".join(
    f"{c},100,{90 - 3 * c},{(90 - 3 * c) / 100},100,{80 - 5 * c},{(80 - 5 * c) / 100},{(10 + 2 * c) / 100}"
    for c in range(8)) + "\n"
CONFUSED_CSV = ("true_label,predicted_label,val_count,val_rate,v2_count,v2_rate,growth\n"
                "3,1,4,0.04,12,0.12,0.08\n6,7,2,0.02,7,0.07,0.05\n0,2,5,0.05,6,0.06,0.01\n")


def tiny_png(kind: str = "pairs") -> bytes:
    """A real PNG from the plotting module (so sizes and headers are genuine)."""
    import pandas as pd

    return confused_pairs_figure(pd.read_csv(__import__("io").StringIO(CONFUSED_CSV)), "lr").png


def write_fake_run(run_dir: str, parts=("metrics", "shift", "per_class", "confused", "figures"),
                   figure_title: str = "Top confused pairs (lr)") -> None:
    """A run directory holding the chosen hand-made outputs."""
    fs.makedirs(run_dir)
    rd = RunDir(str(run_dir))
    if "metrics" in parts:
        fs.write_json(rd.metrics, METRICS)
    if "shift" in parts:
        fs.write_json(rd.shift, SHIFT)
    if "per_class" in parts:
        fs.write_text(rd.per_class_csv("lr"), PER_CLASS_CSV)
    if "confused" in parts:
        fs.write_text(rd.confused_pairs_csv("lr"), CONFUSED_CSV)
    if "figures" in parts:
        fs.write_bytes(rd.figure("confused_pairs.png"), tiny_png())
        fs.write_json(rd.figures_index,
                      [{"file": "confused_pairs.png", "title": figure_title, "caption": "pairs & rates"}])


def config_for(run_dir, *extra):
    """A config whose run directory is ``run_dir``, with ``key=value`` overrides."""
    sets = dict(item.split("=", 1) for item in extra)
    return config_and_paths(fs.join(str(run_dir), ".."), **{"paths.run": str(run_dir)}, **sets)


def report_texts(run_dir, *extra):
    config, paths = config_for(run_dir, *extra)
    summary = run_report(None, config, paths)
    return summary, fs.read_text(summary["html"]), fs.read_text(summary["markdown"])


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

def test_report_holds_the_numbers_of_metrics_and_shift(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run)
    summary, page, markdown = report_texts(run)
    assert summary["missing"] == [NO_EXPLAIN]  # the fake run stops before explain; nothing else is missing
    assert summary["figures"] == 1
    assert summary["model"] == "lr"  # best val accuracy of the two
    expected = []
    for _name, m in METRICS["models"].items():
        gap = m["gap"]
        expected += [f"{m['val']['accuracy'] * 100:.1f}%", f"{m['v2']['accuracy'] * 100:.1f}%",
                     f"{gap['accuracy'] * 100:.1f}", f"[{gap['ci95'][0] * 100:.1f}, {gap['ci95'][1] * 100:.1f}]",
                     f"{m['val']['ece']:.3f}", f"{m['v2']['ece']:.3f}", f"{m['val']['macro_f1']:.3f}"]
    for pair in ("val_v2", "train_val"):
        dc = SHIFT["domain_classifier"][pair]
        expected += [f"AUC {dc['auc']:.3f} [{dc['ci95'][0]:.3f}, {dc['ci95'][1]:.3f}]", f"{dc['auc_pca']:.3f}"]
    fv = SHIFT["features"]["val_v2"]
    expected += [f"{fv['n_shifted']} of {fv['n_features']} features",
                 f"against {SHIFT['features']['train_val']['n_shifted']} between train and val",
                 f"{fv['top'][0]['smd']:.3f}", f"{fv['top'][1]['wasserstein']:.3f}",
                 f"total variation distance of {SHIFT['labels']['val_v2']['tvd']:.3f}",
                 f"p = {SHIFT['labels']['val_v2']['p_value']:.3f}", f"{SHIFT['labels']['train_val']['tvd']:.3f}",
                 f"from {SHIFT['confidence']['lr']['val']['mean']:.3f} on val to "
                 f"{SHIFT['confidence']['lr']['v2']['mean']:.3f} on v2",
                 f"{SHIFT['confidence']['lr']['ks']:.3f}", f"{SHIFT['confidence']['lr']['v2']['median']:.3f}"]
    for text in expected:
        assert text in page, f"{text!r} missing from report.html"
        assert text in markdown, f"{text!r} missing from report.md"
    # The plain-language verdict follows from the interval, not from a fixed sentence.
    assert "Its interval lies above 0.5" in page


def test_report_findings_follow_the_numbers(tmp_path):
    """An interval containing 0.5 must be reported as 'cannot be told apart'."""
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("shift",))
    shift = json.loads(json.dumps(SHIFT))
    shift["domain_classifier"]["val_v2"].update(auc=0.5071, ci95=[0.4833, 0.5302])
    fs.write_json(RunDir(run).shift, shift)
    _, page, markdown = report_texts(run)
    assert "AUC 0.507 [0.483, 0.530]" in page
    assert "cannot be told apart" in page and "cannot be told apart" in markdown
    assert "lies above 0.5" not in page


def test_report_is_self_contained(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run)
    _, page, _ = report_texts(run)
    assert "<script" not in page.lower()
    assert not re.search(r"https?://", page)
    assert not re.search(r"<link\b", page, re.I)
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 1 and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = base64.b64decode(sources[0].split(",", 1)[1])
    assert embedded == fs.read_bytes(RunDir(run).figure("confused_pairs.png"))
    assert png_size(embedded) == size_px("pairs")


def test_values_from_data_are_escaped(tmp_path):
    run = str(tmp_path / SCRIPT.replace("/", "_") / "x</script>y")  # a directory name cannot hold "/"
    write_fake_run(run, figure_title=f"pairs {SCRIPT}")
    _, page, markdown = report_texts(run, f"report.title=Gap {SCRIPT}")
    for text in (page, markdown):
        assert "<script" not in text.lower()
        assert "</script" not in text.lower()
        assert "&lt;script" in text
    assert "&lt;script&gt;" in page
    assert "x&lt;/script&gt;y" in page


def test_markdown_escape_blocks_links_and_html():
    assert md("[a](javascript:alert(1))") == "[a]\\(javascript:alert(1))"
    assert md("<b>|x_y*") == "&lt;b>\\|x\\_y\\*"
    assert md("&amp; & >") == "&amp;amp; & >"
    assert md("> quote") == "\\> quote"


@pytest.mark.parametrize("parts, missing_word, present", [
    (("shift",), "metrics.json is missing", "AUC 0.614"),
    (("metrics",), "shift.json is missing", "84.4%"),
    (("metrics", "shift"), "figures/_figures.json is missing", "AUC 0.614"),
])
def test_report_says_what_is_missing(tmp_path, parts, missing_word, present):
    run = str(tmp_path / "run")
    write_fake_run(run, parts=parts)
    summary, page, markdown = report_texts(run)
    assert any(missing_word in p for p in summary["missing"])
    assert missing_word in page and md(missing_word) in markdown
    assert present in page


def test_report_notes_unreadable_and_listed_but_absent_figures(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run)
    fs.write_text(RunDir(run).shift, "{not json")
    fs.write_json(RunDir(run).figures_index,
                  [{"file": "gone.png", "title": "t", "caption": "c"},
                   {"file": "../metrics.json", "title": "t", "caption": "c"}])
    summary, page, _ = report_texts(run)
    assert summary["figures"] == 0
    text = " ".join(summary["missing"])
    assert "shift.json could not be read" in text
    assert "gone.png is listed but missing" in text
    assert "not a plain file name" in text
    assert "could not be read" in page


def test_report_refuses_an_empty_or_absent_run(tmp_path):
    config, paths = config_for(tmp_path / "nowhere")
    with pytest.raises(GapSparkError, match="run directory not found"):
        run_report(None, config, paths)
    (tmp_path / "empty").mkdir()
    config, paths = config_for(tmp_path / "empty")
    with pytest.raises(GapSparkError, match="nothing to report"):
        run_report(None, config, paths)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed to check the report renders: install Debian's `chromium` package "
                "(apt-get install -y chromium)")


def screenshot(html_path: str, png_path, profile_dir, width: int = 1280, height: int = 2000) -> bytes:
    """Render a page in headless Chromium and return the screenshot's bytes."""
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--screenshot={png_path}",
               f"--window-size={width},{height}", "file://" + fs.local_path(html_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return png_path.read_bytes()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    import numpy as np
    from PIL import Image

    run = str(tmp_path / "run")
    write_fake_run(run)
    summary, _, _ = report_texts(run)
    shot = screenshot(summary["html"], tmp_path / "shot.png", tmp_path / "profile")
    assert png_size(shot) == (1280, 2000)
    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    # Not blank: many distinct colours (text, cards, tables) and a good share of non-background pixels.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    background = np.all(pixels >= 240, axis=2)
    assert 0.02 < 1 - background.mean() < 0.9


def test_unknown_label_and_confidence_layouts_fall_back_to_a_key_value_table(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("shift",))
    shift = json.loads(json.dumps(SHIFT))
    shift["labels"] = {"js_divergence": 0.01234}
    shift["confidence"] = {"lr": {"median_drop": 0.04321}}
    fs.write_json(RunDir(run).shift, shift)
    _, page, _markdown = report_texts(run)
    assert "js_divergence" in page and "0.0123" in page
    assert "lr.median_drop" in page and "0.0432" in page


def test_numbers_are_formatted_without_negative_zero_and_absent_sections_leave_no_empty_table(tmp_path):
    from gap_spark.present.format import fmt

    assert fmt(-0.0001) == "0.000" and fmt(-0.0021) == "-0.002" and fmt(None) == "n/a" and fmt(float("nan")) == "n/a"
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("shift",))
    shift = json.loads(json.dumps(SHIFT))
    del shift["confidence"]
    fs.write_json(RunDir(run).shift, shift)
    _, page, _ = report_texts(run)
    assert ">None<" not in page and "Confidence of each model" not in page


# ---------------------------------------------------------------------------------------------
# The typed loaders
# ---------------------------------------------------------------------------------------------

def test_typed_loaders_read_the_numbers_of_the_contract(tmp_path):
    from gap_spark.contracts.run_artifacts import load_run_artifacts

    run = str(tmp_path / "run")
    write_fake_run(run)
    art = load_run_artifacts(RunDir(run))
    assert art.problems == [NO_EXPLAIN] and art.model == "lr"
    lr = art.metrics.models["lr"]
    assert (lr.val.accuracy, lr.v2.ece, lr.gap.ci95) == (0.8437, 0.0688, (0.0712, 0.1438))
    assert len(lr.val.reliability) == 15 and lr.val.reliability[3].count == 30
    assert art.metrics.dataset.dim == 16 and art.metrics.dataset.split_rows["v2"] == 800
    top = art.shift.features["val_v2"].top
    assert [(t.feature, t.smd) for t in top[:2]] == [(5, 0.6173), (11, -0.4821)]
    dc = art.shift.domain_classifier["val_v2"]
    assert (dc.auc, dc.ci95_pca, dc.rows_per_set) == (0.6137, (0.5801, 0.6247), 800)
    assert [f.feature for f in dc.top_features] == [5, 11]
    assert art.shift.labels["train_val"].p_value == 0.9931
    assert art.shift.confidence["lr"].v2.median == 0.8702
    assert [e.file for e in art.figures] == ["confused_pairs.png"]
    assert list(art.per_class["label"]) == list(range(8))


def test_malformed_parts_become_notes_not_crashes(tmp_path):
    from gap_spark.contracts.run_artifacts import load_run_artifacts

    run = str(tmp_path / "run")
    write_fake_run(run)
    metrics = json.loads(json.dumps(METRICS))
    metrics["models"]["lr"] = "not an object"
    metrics["models"]["rf"]["val"]["accuracy"] = "high"  # not a number: shown as n/a
    metrics["models"]["rf"]["gap"] = [1, 2]
    fs.write_json(RunDir(run).metrics, metrics)
    shift = json.loads(json.dumps(SHIFT))
    shift["features"] = [1, 2]
    shift["domain_classifier"]["train_val"] = 0.5
    fs.write_json(RunDir(run).shift, shift)
    fs.write_text(RunDir(run).train_summary, '{"models": {"lr": {"params": 3}}, "dataset": 7}')
    art = load_run_artifacts(RunDir(run))
    notes = " ".join(art.problems)
    assert "models.lr is not a JSON object" in notes
    assert "gap is not a JSON object" in notes
    assert "features is not a JSON object" in notes
    assert "domain_classifier.train_val is not a JSON object" in notes
    assert "params is not a JSON object" in notes
    assert list(art.metrics.models) == ["rf"] and art.metrics.models["rf"].val.accuracy is None
    assert art.shift.features == {} and list(art.shift.domain_classifier) == ["val_v2"]
    assert art.train_summary.dataset is None
    summary, page, markdown = report_texts(run)
    assert "models.lr is not a JSON object" in page and "features is not a JSON object" in page
    assert "n/a top-1 accuracy" in page and "n/a top-1 accuracy" in markdown
    assert f"{METRICS['models']['rf']['v2']['accuracy'] * 100:.1f}%" in page
    assert "AUC 0.614" in page
    assert any("not a JSON object" in p for p in summary["missing"])


@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "does not hold a JSON dict"),
    ("", "could not be read"),
    ('{"models": 5}', "models is not a JSON object"),
])
def test_a_malformed_metrics_file_is_a_note(tmp_path, content, problem):
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("shift",))
    fs.write_text(RunDir(run).metrics, content)
    summary, page, _ = report_texts(run)
    assert any(problem in p for p in summary["missing"])
    assert problem in page and "AUC 0.614" in page


# ---------------------------------------------------------------------------------------------
# Escaping by construction (Jinja2 autoescape and the Markdown finalize)
# ---------------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>\'"&<img src=x onerror=alert(1)>'


def test_hostile_model_names_class_labels_and_captions_are_escaped(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run)
    rd = RunDir(run)
    metrics = json.loads(json.dumps(METRICS))
    metrics["models"] = {HOSTILE: metrics["models"]["lr"]}
    fs.write_json(rd.metrics, metrics)
    fs.write_text(rd.per_class_csv(HOSTILE.replace("/", "_")), PER_CLASS_CSV.replace("\n7,", f'\n"{HOSTILE}",'))
    fs.write_json(rd.figures_index, [{"file": "confused_pairs.png", "title": f'" onload="{HOSTILE}',
                                      "caption": HOSTILE}])
    summary, page, markdown = report_texts(run, f"report.model={HOSTILE.replace('/', '_')}")
    # Only the embedded figure is an element with a source; no script, no injected attribute or element.
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert len(re.findall(r"<img\b", page)) == summary["figures"] == 1
    assert 'onload="' not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;&#34;&amp;" in page
    for text in (page, markdown):
        assert "Logistic regression" not in text  # the only model is the hostile one
    assert "<" not in markdown.replace("&lt;", "")


def test_templates_escape_every_position():
    from gap_spark.present.blocks import Bullets, Cards, FigureBlock, Heading, Note, Paragraph, Table, TableGrid
    from gap_spark.present.render import render_html, render_markdown

    png = tiny_png()
    table = Table(HOSTILE, [HOSTILE, "n"], [[HOSTILE, "1"]], [False, True])
    blocks = [Heading(HOSTILE, f'a" id="{HOSTILE}'), Paragraph(HOSTILE), Bullets([HOSTILE]), Note(HOSTILE, [HOSTILE]),
              Cards([(HOSTILE, HOSTILE, HOSTILE)]), table, TableGrid([table]),
              FigureBlock(1, HOSTILE, HOSTILE, "f.png", png, "figures/f.png")]
    page = render_html(HOSTILE, [HOSTILE], blocks, HOSTILE)
    assert "<script" not in page.lower() and "<img src=x" not in page and '" id="' not in page
    # Every hostile string is there, escaped: title (twice), subtitle, nav, heading and each block's texts.
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;&#34;&amp;&lt;img src=x onerror=alert(1)&gt;"
    assert page.count(escaped) >= 20
    markdown = render_markdown(HOSTILE, [HOSTILE], blocks, HOSTILE)
    assert "<" not in markdown.replace("&lt;", "")
    assert "![" in markdown and "](figures/f.png)" in markdown
    assert markdown.count(md(HOSTILE)) >= 15


def test_markdown_figure_links_are_percent_encoded(tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run)
    name = "a b)(x](y.png"
    fs.write_bytes(RunDir(run).figure(name), tiny_png())
    fs.write_json(RunDir(run).figures_index, [{"file": name, "title": "t", "caption": "c"}])
    summary, _, markdown = report_texts(run)
    assert summary["figures"] == 1
    assert "![t](figures/a%20b%29%28x%5D%28y.png)" in markdown
