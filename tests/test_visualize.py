"""Tests of `gap-spark visualize`: the stratified sample, the embedding, each figure, and the stage."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.testing import assertDataFrameEqual

from gap_spark.contracts.paths import Paths
from gap_spark.contracts.run import VISUALIZE_FIGURES, RunDir
from gap_spark.contracts.run_outputs import parse_metrics, parse_shift
from gap_spark.core import fs
from gap_spark.core.config import load_config
from gap_spark.ops.embedding import choose_focus_classes, collect_sample, embed, sample_sets
from gap_spark.ops.frames import proportional_quotas, stratified_sample
from gap_spark.ops.generator import World
from gap_spark.present import plots_embedding, plots_results
from gap_spark.present.plots_base import size_px
from gap_spark.present.render import png_size
from gap_spark.stages.synth import synth_settings
from gap_spark.stages.visualize import FIGURE_KINDS, run_visualize
from tests.test_report import CONFUSED_CSV, METRICS, PER_CLASS_CSV, SHIFT, write_fake_run


def png_is_drawn(png: bytes, kind: str) -> None:
    """A PNG of the expected pixel size with real content (not one flat colour)."""
    from PIL import Image

    assert png_size(png) == size_px(kind)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def feature_frame(dataset_frame, labels, dim=4, seed=0):
    """A dataset frame (conftest factory) with random features, row ids 0, 1, ..."""
    x = np.random.default_rng(seed).standard_normal((len(labels), dim)).astype(np.float32)
    return dataset_frame(x, labels)


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------

def test_proportional_quotas_sum_exactly_and_never_exceed_counts():
    counts = {0: 50, 1: 30, 2: 20, 3: 1}
    quotas = proportional_quotas(counts, 10)
    assert sum(quotas.values()) == 10
    assert all(quotas[l] <= counts[l] for l in counts)
    assert quotas[0] >= quotas[1] >= quotas[2]
    assert proportional_quotas(counts, 1000) == counts


def visualize_sample(frame, counts, base, focus, seed):
    """The visualize stage's use of the shared sampler: a main and a per-class quota, no rank column."""
    return stratified_sample(frame, counts, {"in_base": base, "in_focus": focus}, seed).drop("rank")


def test_stratified_sample_takes_exact_quotas_whatever_the_layout(spark, dataset_frame):
    labels = [0] * 120 + [1] * 60 + [2] * 20
    frame = feature_frame(dataset_frame, labels)
    counts = {0: 120, 1: 60, 2: 20}
    base, focus = {0: 12, 1: 6, 2: 2}, {2: 15}
    sample = visualize_sample(frame, counts, base, focus, seed=5)
    from pyspark.sql import functions as F

    per_label = {r["label"]: (r["n"], r["base"], r["focus"]) for r in sample.groupBy("label").agg(
        F.count("*").alias("n"), F.sum(F.col("in_base").cast("int")).alias("base"),
        F.sum(F.col("in_focus").cast("int")).alias("focus")).collect()}
    assert {l: v[0] for l, v in per_label.items()} == {0: 12, 1: 6, 2: 15}
    assert per_label[2][1:] == (2, 15)
    assert per_label[0][2] == 0
    # The same rows come out of a differently partitioned copy of the data.
    again = visualize_sample(frame.repartition(3, "row_id"), counts, base, focus, seed=5)
    assertDataFrameEqual(again.select("row_id", "in_base", "in_focus"), sample.select("row_id", "in_base", "in_focus"))
    other_seed = visualize_sample(frame, counts, base, focus, seed=6)
    assert {r.row_id for r in other_seed.collect()} != {r.row_id for r in sample.collect()}
    # The very rows the pre-refactor sampler (visualize.stratified_sample) chose for this frame and seed.
    assert sorted((r.row_id, r.in_base, r.in_focus) for r in sample.collect()) == OLD_SAMPLER_ROWS


# (row_id, in_base, in_focus) of the pre-refactor visualize.stratified_sample on the frame above, seed 5.
OLD_SAMPLER_ROWS = [(i, True, False) for i in (3, 13, 38, 43, 45, 47, 53, 57, 59, 65, 84, 108, 127, 133, 135, 160,
                                               173, 179)] + [
    (180, False, True), (182, False, True), (183, False, True), (184, False, True), (186, False, True),
    (187, False, True), (189, False, True), (190, False, True), (191, True, True), (193, False, True),
    (194, False, True), (195, False, True), (196, False, True), (197, True, True), (198, False, True)]


def test_sample_sets_is_each_sets_stratified_sample_tagged_by_set(spark, dataset_frame):
    from pyspark.sql import functions as F

    frames = {"val": feature_frame(dataset_frame, [0] * 30 + [1] * 10, seed=1),
              "v2": feature_frame(dataset_frame, [0] * 8 + [1] * 12, seed=2)}
    counts = {"val": {0: 30, 1: 10}, "v2": {0: 8, 1: 12}}
    result = sample_sets(frames, counts, per_set=10, focus=[1], focus_points=5, seed=3)
    quotas = {"val": ({0: 8, 1: 2}, {1: 5}), "v2": ({0: 4, 1: 6}, {1: 5})}
    assert proportional_quotas(counts["val"], 10) == quotas["val"][0]
    assert proportional_quotas(counts["v2"], 10) == quotas["v2"][0]
    columns = ["set", "row_id", "label", "in_base", "in_focus", "features"]
    expected = None
    for name in ("val", "v2"):
        part = visualize_sample(frames[name], counts[name], *quotas[name], seed=3).withColumn("set", F.lit(name))
        expected = part.select(*columns) if expected is None else expected.unionByName(part.select(*columns))
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)
    per_set = {r["set"]: r["n"] for r in result.where("in_base").groupBy("set").agg(F.count("*").alias("n")).collect()}
    assert per_set == {"val": 10, "v2": 10}


def test_collect_sample_keeps_features_and_labels(spark, dataset_frame):
    frame = feature_frame(dataset_frame, [0, 1, 1, 2, 2, 2], dim=5, seed=1)
    expected = {r.row_id: np.array(r.features, dtype=np.float32) for r in frame.collect()}
    quotas = {0: 1, 1: 2, 2: 3}
    sampled = sample_sets({"v2": frame}, {"v2": quotas}, per_set=6, focus=[], focus_points=1, seed=0)
    sample = collect_sample(sampled)
    assert sample.features.shape == (6, 5) and sample.features.dtype == np.float32
    assert list(sample.labels) == [0, 1, 1, 2, 2, 2]
    for row_id, vector in zip(sample.row_ids, sample.features):
        np.testing.assert_array_equal(vector, expected[row_id])
    assert sample.in_base.all() and not sample.in_focus.any() and set(sample.sets) == {"v2"}


def test_focus_classes_are_the_largest_drops_or_seeded_random():
    table = pd.read_csv(io.StringIO(PER_CLASS_CSV))  # drop grows with the label
    classes, source = choose_focus_classes(table, range(8), 3, seed=1)
    assert classes == [7, 6, 5] and "drop" in source
    classes, _ = choose_focus_classes(table, [0, 1, 2, 3], 3, seed=1)  # only classes in both sets
    assert classes == [3, 2, 1]
    random_a, source = choose_focus_classes(None, range(100), 5, seed=4)
    assert random_a == choose_focus_classes(None, range(100), 5, seed=4)[0]
    assert len(set(random_a)) == 5 and set(random_a) <= set(range(100)) and "random" in source
    assert random_a != choose_focus_classes(None, range(100), 5, seed=5)[0]


# --------------------------------------------------------------------------------------------------
# Embedding and figures
# --------------------------------------------------------------------------------------------------

def synthetic_points(n=300, dim=32, classes=6, seed=0):
    spec = synth_settings(train_rows=1, val_rows=n, v2_rows=n, dim=dim, classes=classes, superclass_size=3, seed=seed)
    world, rng = World(spec), np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    half = n // 2
    x = np.vstack([world.sample("val", labels[:half], rng), world.sample("v2", labels[half:], rng)])
    sets = np.array(["val"] * half + ["v2"] * (n - half), dtype=object)
    return np.ascontiguousarray(x), sets, labels


def test_tsne_embedding_is_seeded_and_separates_classes():
    x, _, labels = synthetic_points()
    first = embed(x, methods=("tsne",), pca_dims=10, seed=3, threads=2)
    second = embed(x, methods=("tsne",), pca_dims=10, seed=3, threads=2)
    assert first.pca_dims == 10 and 0 < first.pca_explained <= 1
    assert first.coords["tsne"].shape == (300, 2)
    np.testing.assert_allclose(first.coords["tsne"], second.coords["tsne"])
    # Points sit nearer their own class's centre than the average point does: the map keeps structure.
    xy = first.coords["tsne"]
    centres = np.array([xy[labels == c].mean(axis=0) for c in range(6)])
    own = np.linalg.norm(xy - centres[labels], axis=1).mean()
    overall = np.linalg.norm(xy[:, None, :] - centres[None], axis=2).mean()
    assert own < 0.6 * overall


@pytest.mark.slow
def test_umap_embedding_is_seeded_even_when_the_neighbour_graph_falls_apart():
    # 50 well separated classes in 1,500 points: the neighbour graph has several components, the case where
    # umap-learn's default spectral start differs from run to run with this seed.
    x, _, _labels = synthetic_points(n=1500, dim=128, classes=50, seed=17)
    first = embed(x, methods=("umap",), pca_dims=50, seed=17, threads=2)
    second = embed(x, methods=("umap",), pca_dims=50, seed=17, threads=2)
    assert first.coords["umap"].shape == (1500, 2)
    np.testing.assert_allclose(first.coords["umap"], second.coords["umap"])


def test_density_difference_sums_to_zero_and_points_the_right_way():
    rng = np.random.default_rng(0)
    xy = np.vstack([rng.normal(-2, 0.3, (200, 2)), rng.normal(2, 0.3, (100, 2))])
    sets = np.array(["val"] * 200 + ["v2"] * 100, dtype=object)
    diff = plots_embedding.density_difference(xy, sets, bins=40)
    assert abs(diff.sum()) < 1e-9  # both densities sum to one whatever the set sizes
    assert diff[:20, :20].sum() < -0.9 and diff[20:, 20:].sum() > 0.9


def test_every_figure_is_a_png_of_the_expected_size():
    _x, sets, labels = synthetic_points(n=120)
    rng = np.random.default_rng(1)
    coords = {"umap": rng.standard_normal((120, 2)), "tsne": rng.standard_normal((120, 2))}
    focus = np.isin(labels, [0, 1, 2])
    per_class = pd.read_csv(io.StringIO(PER_CLASS_CSV))
    pairs = pd.read_csv(io.StringIO(CONFUSED_CSV))
    shift = parse_shift(SHIFT, "shift", [])
    fv = shift.features["val_v2"]
    drawn = {
        "by_set": plots_embedding.embedding_by_set_figure(coords, sets),
        "by_class": plots_embedding.embedding_by_class_figure(coords, sets, labels, focus, [0, 1, 2],
                                                              class_source="test"),
        "density": plots_embedding.density_difference_figure(coords, sets, bins=30),
        "features": plots_results.feature_shifts_figure(fv.top, fv.threshold, {"5": 0.04},
                                                        shift.domain_classifier["val_v2"].top_features),
        "per_class": plots_results.per_class_figure(per_class, "lr"),
        "reliability": plots_results.reliability_figure(parse_metrics(METRICS, "metrics", []).models),
        "pairs": plots_results.confused_pairs_figure(pairs, "lr"),
    }
    assert set(drawn) == set(VISUALIZE_FIGURES)
    for name, figure in drawn.items():
        png_is_drawn(figure.png, FIGURE_KINDS[name])
        assert figure.title and len(figure.caption) > 40


# --------------------------------------------------------------------------------------------------
# The stage on the tiny generated dataset
# --------------------------------------------------------------------------------------------------

def stage_config(tiny_root, run_dir, *sets):
    from tests.conftest import tiny_config

    base = tiny_config(tiny_root)
    config = base.with_overrides(sets=[f"paths.run={run_dir}", "visualize.sample_size=400",
                                       "visualize.classes=3", "visualize.focus_points_per_class=40",
                                       "visualize.pca_dims=8", *sets])
    return config, Paths.from_config(config)


def test_visualize_without_run_outputs_draws_the_embedding_figures_only(spark, tiny_dataset, tiny_root, tmp_path):
    config, paths = stage_config(tiny_root, tmp_path / "run", "visualize.methods=[tsne]")
    summary = run_visualize(spark, config, paths)
    assert summary["figures"] == [VISUALIZE_FIGURES[k] for k in ("by_set", "by_class", "density")]
    assert set(summary["skipped"]) == {"features", "per_class", "reliability", "pairs"}
    assert summary["sample"]["val"] == summary["sample"]["v2"] == 200
    assert "random" in summary["sample"]["focus_source"] and len(summary["sample"]["focus_classes"]) == 3
    index = fs.read_json(paths.run_dir.figures_index)
    assert [e["file"] for e in index] == summary["figures"]
    for entry in index:
        png_is_drawn(fs.read_bytes(paths.run_dir.figure(entry["file"])), "embedding")
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(fs.read_bytes(paths.run_dir.embedding)))
    assert {"set", "row_id", "label", "tsne_x", "tsne_y"} <= set(table.column_names)


@pytest.mark.slow
def test_visualize_draws_every_figure_from_a_full_run(spark, tiny_dataset, tiny_root, tmp_path):
    run = str(tmp_path / "run")
    write_fake_run(run, parts=("metrics", "shift", "per_class", "confused"))
    fs.write_bytes(RunDir(run).figure(VISUALIZE_FIGURES["pairs"]), b"stale")
    config, paths = stage_config(tiny_root, run)
    summary = run_visualize(spark, config, paths)
    assert summary["skipped"] == {}
    assert summary["sample"]["focus_classes"] == [7, 6, 5]  # largest drops in per_class/lr.csv
    index = fs.read_json(paths.run_dir.figures_index)
    assert sorted(e["file"] for e in index) == sorted(VISUALIZE_FIGURES.values())
    kind_of = {VISUALIZE_FIGURES[k]: FIGURE_KINDS[k] for k in VISUALIZE_FIGURES}
    for entry in index:
        assert entry["title"] and entry["caption"]
        png_is_drawn(fs.read_bytes(paths.run_dir.figure(entry["file"])), kind_of[entry["file"]])


@pytest.mark.parametrize("setting, message", [
    # The settings checker refuses these when the config is loaded, before the stage runs.
    ("visualize.methods=[umap, pca]", r"visualize\.methods\[1\]' must be one of umap, tsne"),
    ("visualize.sample_size=0", r"visualize\.sample_size' must be >= 8"),
    ("visualize.tsne_perplexity=-1", r"visualize\.tsne_perplexity' must be >= 0"),
])
def test_bad_settings_are_config_errors(tmp_path, setting, message):
    from gap_spark.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config = load_config(sets=[f"paths.data={tmp_path}/data", f"paths.run={tmp_path}/run", setting])
        run_visualize(None, config, Paths.from_config(config))


def test_missing_dataset_is_a_dataset_error(tmp_path):
    from gap_spark.core.errors import DatasetError

    config = load_config(sets=[f"paths.data={tmp_path}/nothing", f"paths.run={tmp_path}/run"])
    with pytest.raises(DatasetError, match="not found"):
        run_visualize(None, config, Paths.from_config(config))


def test_numba_gets_a_writable_cache_and_at_most_the_threads_asked_for(monkeypatch, tmp_path):
    import os

    import numba

    from gap_spark.ops.embedding import prepare_numba

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    prepare_numba(1)
    cache = os.environ["NUMBA_CACHE_DIR"]
    assert cache.startswith(str(tmp_path)) and os.access(cache, os.W_OK)
    assert cache == numba.config.CACHE_DIR
    assert numba.get_num_threads() == 1
    prepare_numba(2)
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
