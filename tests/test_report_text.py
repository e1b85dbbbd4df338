"""The report's words against its tables: one sign convention (val minus v2) and the same numbers."""
from __future__ import annotations

import re

from gap_spark.contracts.run_outputs import parse_metrics
from gap_spark.present.content import SIGN_CONVENTION, headline_sentences
from gap_spark.present.tables import calibration_rows

_NUMBER = r"-?\d+\.\d+"


def _metrics(val_ece: float, v2_ece: float, ci: list[float]):
    def one(ece: float) -> dict:
        return {"rows": 100, "accuracy": 0.8, "ece": ece, "mean_confidence": 0.7}
    data = {"models": {"lr": {"val": one(val_ece), "v2": one(v2_ece),
                              "gap": {"accuracy": 0.05, "ci95": [0.01, 0.09], "ece": val_ece - v2_ece,
                                      "ece_ci95": ci}}}}
    problems: list[str] = []
    metrics = parse_metrics(data, "metrics.json", problems)
    assert problems == []
    return metrics


def _sentence_gap(metrics) -> tuple[float, tuple[float, float]]:
    sentence = next(s for s in headline_sentences(metrics) if "calibration error" in s)
    assert "val minus v2" in sentence and "v2 minus val" not in sentence
    found = re.search(rf"val minus v2, ({_NUMBER}), 95% CI \[({_NUMBER}), ({_NUMBER})\]", sentence)
    assert found, sentence
    return float(found[1]), (float(found[2]), float(found[3]))


def _table_gap(metrics) -> tuple[float, tuple[float, float]]:
    table = calibration_rows(metrics)
    assert "val minus v2" in table.caption
    cell = table.rows[0][table.headers.index("ECE gap [CI]")]
    found = re.fullmatch(rf"({_NUMBER}) \[({_NUMBER}), ({_NUMBER})\]", cell)
    assert found, cell
    return float(found[1]), (float(found[2]), float(found[3]))


def test_ece_sentence_and_table_agree_in_sign_and_numbers():
    # v2 is worse calibrated: the gap, val minus v2, is negative, and so is its interval.
    metrics = _metrics(0.0312, 0.0688, [-0.0581, -0.0174])
    sentence, table = _sentence_gap(metrics), _table_gap(metrics)
    assert sentence == table == (-0.038, (-0.058, -0.017))
    # v2 better calibrated: both turn positive together.
    metrics = _metrics(0.0700, 0.0400, [0.0100, 0.0500])
    assert _sentence_gap(metrics) == _table_gap(metrics) == (0.030, (0.010, 0.050))


def test_the_sign_convention_is_stated_once_in_the_report():
    from gap_spark.contracts.run import RunDir
    from gap_spark.contracts.run_artifacts import RunArtifacts
    from gap_spark.present.blocks import Paragraph
    from gap_spark.present.document import build_document

    assert "val minus v2" in SIGN_CONVENTION
    art = RunArtifacts(RunDir("/nowhere"), metrics=_metrics(0.03, 0.07, [-0.06, -0.02]), model="lr")
    blocks = build_document(art, [], [])
    stated = [b for b in blocks if isinstance(b, Paragraph) and b.text == SIGN_CONVENTION]
    assert len(stated) == 1


# ---------------------------------------------------------------------------------------------
# The selection record: val and v2 were never used for selection (issue 14)
# ---------------------------------------------------------------------------------------------

def _report_markdown(tmp_path, record: dict | None) -> str:
    from gap_spark.contracts.run import RunDir
    from gap_spark.core import fs
    from tests.test_model_choice import _train_summary
    from tests.test_report import report_texts, write_fake_run

    run = str(tmp_path / "run")
    write_fake_run(run, parts=("metrics",))
    fs.write_json(RunDir(run).train_summary, _train_summary({"lr": 0.8125, "rf": 0.775}, record))
    _, page, markdown = report_texts(run)
    assert ("val and v2 were never used for selection" in page) == ("never used for selection" in markdown)
    return markdown


def test_the_report_says_val_and_v2_were_never_used_for_selection(tmp_path):
    markdown = _report_markdown(tmp_path, {"split": "select", "source": "select", "rows": 1234, "fallback": None,
                                           "test_splits_read": False})
    lines = [line for line in markdown.splitlines() if "never used for selection" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "split=select (1,234 train rows)" in line and "lr 81.2%, rf 77.5%" in line
    assert line.rstrip().endswith("val and v2 were never used for selection.")
    # It stands with the headline numbers, before the shift section.
    assert markdown.index("never used for selection") < markdown.index("What shifts between val and v2")


def test_the_fallback_slice_is_named_as_such(tmp_path):
    markdown = _report_markdown(tmp_path, {"split": None, "source": "fallback", "rows": 321,
                                           "fallback": {"fraction": 0.02, "seed": 7}, "test_splits_read": False})
    line = next(line for line in markdown.splitlines() if "never used for selection" in line)
    assert "a hash-held-out 2.0% of train (321 rows; the dataset has no split=select)" in line


def test_no_claim_without_a_selection_record(tmp_path):
    from gap_spark.contracts.train_outputs import parse_train_summary
    from gap_spark.present.content import selection_sentence
    from tests.test_model_choice import _train_summary

    data = _train_summary({"lr": 0.8})
    del data["selection"]
    assert selection_sentence(parse_train_summary(data, "train_summary.json", [])) is None
    data["selection"] = {"split": "select", "source": "select", "rows": 10, "test_splits_read": True}
    text = selection_sentence(parse_train_summary(data, "train_summary.json", []))
    assert text is not None and "never" not in text and "read val or v2" in text
