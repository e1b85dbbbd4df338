"""The explain stage's ops on small inline frames, against hand computations and numpy oracles."""
from __future__ import annotations

import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality

from gap_spark.ops import decompose, density, label_free, paired, realign
from gap_spark.ops.bootstrap import bootstrap_gap
from gap_spark.ops.explain_tables import ScoreBins, score_edges, scored_rows, set_tables

PRED_SCHEMA = "row_id long, label int, prediction int, confidence double, true_prob double, entropy double"


def predictions(spark, labels, right, confidence=None, first_id=0):
    """A prediction frame where row i is right when ``right[i]`` (else predicts the next class)."""
    n = len(labels)
    confidence = confidence if confidence is not None else [0.5 + 0.4 * (i % 7) / 7 for i in range(n)]
    rows = [(first_id + i, int(y), int(y if ok else y + 1), float(c), 0.5, float(1.0 - c))
            for i, (y, ok, c) in enumerate(zip(labels, right, confidence))]
    return spark.createDataFrame(rows, PRED_SCHEMA)


def tables(spark, val, v2, ratios=None, replicates=20, seed=11, bins=8, classes=2):
    val_rows, v2_rows = scored_rows(val, ratios), scored_rows(v2)
    edges = score_edges(val_rows, bins)
    return (set_tables(val_rows, edges, classes, replicates, seed, "val"),
            set_tables(v2_rows, edges, classes, replicates, seed, "v2"))


def test_label_mix_is_the_hand_computation(spark):
    # val: class 0 has 10 rows, 9 right; class 1 has 10 rows, 5 right. v2: 4 rows of class 0 (2 right),
    # 16 of class 1 (6 right). Weights 1 everywhere, so the importance-weighted accuracy is val's.
    val = predictions(spark, [0] * 10 + [1] * 10, [True] * 9 + [False] + [True] * 5 + [False] * 5)
    v2 = predictions(spark, [0] * 4 + [1] * 16, [True, True, False, False] + [True] * 6 + [False] * 10)
    ratios = spark.createDataFrame([(i, 1.0) for i in range(20)], "row_id long, ratio double")
    val_t, v2_t = tables(spark, val, v2, ratios)
    parts = decompose.gap_parts(val_t, v2_t)
    acc_val, acc_v2 = 14 / 20, 8 / 20
    reweighted = 0.2 * 0.9 + 0.8 * 0.5
    assert parts["val_accuracy"][0] == pytest.approx(acc_val)
    assert parts["v2_accuracy"][0] == pytest.approx(acc_v2)
    assert parts["label_mix"][0] == pytest.approx(acc_val - reweighted)
    assert parts["covariate"][0] == pytest.approx(reweighted - acc_val)
    assert parts["residual"][0] == pytest.approx(acc_val - acc_v2)
    # In every replicate the three parts add up to the gap.
    total = parts["label_mix"] + parts["covariate"] + parts["residual"]
    np.testing.assert_allclose(total, parts["gap"], atol=1e-12)


def test_a_class_missing_from_a_replicate_counts_with_its_overall_accuracy():
    n = np.array([[2.0, 0.0]])
    t = decompose.SetTables(n, np.array([[1.0, 0.0]]), n * 0, n * 0, {})
    np.testing.assert_allclose(decompose.class_accuracy(t), [[0.5, 0.5]])


def test_importance_weighted_accuracy_equals_numpy(spark):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 200)
    right = rng.random(200) < 0.7
    w = rng.lognormal(0.0, 0.8, 200)
    val = predictions(spark, labels, right)
    v2 = predictions(spark, labels[:50], right[:50])
    ratios = spark.createDataFrame([(i, float(x)) for i, x in enumerate(w)], "row_id long, ratio double")
    val_t, v2_t = tables(spark, val, v2, ratios, classes=3)
    parts = decompose.gap_parts(val_t, v2_t)
    assert parts["importance_weighted_accuracy"][0] == pytest.approx(np.average(right, weights=w), abs=1e-12)


def test_gap_interval_is_evaluates_for_the_same_seed(spark, prediction_frame):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 120)
    right = rng.random(120) < 0.8
    val, v2 = predictions(spark, labels, right), predictions(spark, labels[:90], right[:90] & (labels[:90] > 0))
    val_t, v2_t = tables(spark, val, v2, replicates=40, seed=3, classes=4)
    ours = decompose.summary(decompose.gap_parts(val_t, v2_t)["gap"])["ci95"]
    theirs = bootstrap_gap(val, v2, 40, 3)["accuracy"]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_ratio_clipping_and_weight_diagnostics_equal_numpy(spark):
    rng = np.random.default_rng(6)
    logits = rng.normal(0.0, 1.5, 250)
    frame = spark.createDataFrame([(i, 0.0, float(v)) for i, v in enumerate(logits)] + [(1000, 1.0, 0.0)],
                                  "row_id long, domain double, logit double")
    ratios, threshold = density.ratio_frame(frame, 250, 50, 0.95)
    w_raw = np.exp(logits) * 250 / 50
    assert threshold == pytest.approx(np.percentile(w_raw, 95), rel=1e-12)
    w = np.minimum(w_raw, threshold)
    diag = density.weight_diagnostics(ratios, threshold)
    assert diag["rows"] == 250 and diag["clipped_rows"] == int((w_raw > threshold).sum())
    assert diag["ess"] == pytest.approx(w.sum() ** 2 / (w ** 2).sum(), rel=1e-12)
    top = np.sort(w)[::-1][: math.ceil(250 * 0.01)]
    assert diag["top1_share"] == pytest.approx(top.sum() / w.sum(), rel=1e-12)
    assert diag["ess_warning"] is False


def test_folds_are_hashed_by_set_and_row(spark, dataset_frame):
    x = np.zeros((300, 2))
    a, b = dataset_frame(x, [0] * 300), dataset_frame(x, [1] * 300)
    rows = density.domain_rows(a, b, 3, 7).select("row_id", "domain", "fold").collect()
    again = density.domain_rows(a, b, 3, 7).select("row_id", "domain", "fold").collect()
    assert sorted(rows) == sorted(again)
    counts = np.bincount([r["fold"] for r in rows], minlength=3)
    assert counts.sum() == 600 and counts.min() > 150
    # The same row id in the two sets is not tied to one fold.
    by_key = {(r["row_id"], r["domain"]): r["fold"] for r in rows}
    assert sum(by_key[(i, 0.0)] != by_key[(i, 1.0)] for i in range(300)) > 100


def test_atc_on_the_grid_matches_the_exact_threshold():
    rng = np.random.default_rng(7)
    s_val, s_v2 = rng.beta(5, 1, 4000), rng.beta(4, 1, 4000)
    right = rng.random(4000) < s_val
    edges = np.quantile(s_val, np.arange(1, 200) / 200)

    def bins(s, r):
        b = np.searchsorted(edges, s, side="right")
        return ScoreBins(np.bincount(b, minlength=200)[None].astype(float),
                         np.bincount(b, weights=r, minlength=200)[None], np.zeros((1, 200)))

    got = label_free.atc_estimate(bins(s_val, right), bins(s_v2, np.zeros(4000)), np.array([right.mean()]))[0]
    exact = (s_v2 > np.quantile(s_val, 1 - right.mean())).mean()
    assert got == pytest.approx(exact, abs=2e-3)


def test_calibrated_estimate_is_histogram_binning():
    # Four fine bins merged into two groups: val's accuracy 1/2 and 3/4 there; v2 holds 1 and 3 rows.
    val = ScoreBins(np.array([[1.0, 1.0, 2.0, 2.0]]), np.array([[0.0, 1.0, 1.0, 2.0]]), np.zeros((1, 4)))
    v2 = ScoreBins(np.array([[1.0, 0.0, 1.0, 2.0]]), np.zeros((1, 4)), np.zeros((1, 4)))
    got = label_free.calibrated_estimate(val, v2, 2)[0]
    assert got == pytest.approx(0.25 * 0.5 + 0.75 * 0.75)


def test_estimator_summary_scores_against_the_truth():
    estimate, truth = np.array([0.8, 0.79, 0.81, 0.82, 0.78]), np.array([0.75, 0.74, 0.76, 0.75, 0.77])
    out = label_free.estimator_summary(estimate, truth)
    assert out["error"] == pytest.approx(0.05) and out["abs_error"] == pytest.approx(0.05)
    assert out["covers_truth"] is False and out["error_ci95"][0] > 0


def test_adabn_and_coral_match_the_target_moments():
    rng = np.random.default_rng(8)
    mean_m, std_m = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 1.0])
    mixing = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 1.0]])
    source = rng.normal(size=(20000, 3)) @ mixing * std_m + mean_m
    target = rng.normal(size=(20000, 3)) @ (mixing * [[1.5], [0.7], [1.0]]) * std_m + mean_m + 3.0

    def moments(x):
        return realign.Moments(x.mean(0), x.std(0, ddof=1), np.cov(x, rowvar=False), len(x))

    ada = realign.adabn_map(mean_m, std_m, moments(target))(target)
    np.testing.assert_allclose(ada.mean(0), mean_m, atol=1e-9)
    np.testing.assert_allclose(ada.std(0, ddof=1), std_m, rtol=1e-9)
    coral = realign.coral_map(mean_m, std_m, moments(source), moments(target), 0.0)(target)
    np.testing.assert_allclose(coral.mean(0), source.mean(0), atol=1e-9)
    np.testing.assert_allclose(np.cov(coral, rowvar=False), np.cov(source, rowvar=False), rtol=1e-6, atol=1e-9)


def test_apply_affine_in_spark_equals_numpy(spark, dataset_frame):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    affine = realign.Affine(shift=np.arange(4.0), matrix=rng.normal(size=(4, 4)))
    got = realign.apply_affine(dataset_frame(x, [1] * 30), affine)
    expected = dataset_frame(affine(x.astype(np.float64)), [1] * 30).select("row_id", "label", "features")
    assert_approx_df_equality(got.orderBy("row_id"), expected.orderBy("row_id"), precision=1e-5,
                              ignore_nullable=True)


def test_feature_moments_equal_numpy(spark, dataset_frame):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 3)).astype(np.float32) * [1.0, 2.0, 0.0] + [0.0, 1.0, 5.0]
    m = realign.feature_moments(dataset_frame(x, [0] * 200), covariance=True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(m.mean, x64.mean(0), atol=1e-6)
    np.testing.assert_allclose(m.std, x64.std(0, ddof=1), atol=1e-6)
    expected = np.cov(x64, rowvar=False)
    np.testing.assert_allclose(m.cov, expected, atol=1e-5)  # the constant feature's row and column are 0


def test_paired_before_after_and_the_verdicts(spark):
    before = spark.createDataFrame([(i, i % 2) for i in range(400)], "row_id long, before int")
    unchanged = before.withColumn("after", before["before"])
    better = before.withColumn("after", (before["row_id"] % 4 != 3).cast("int"))  # half the wrong rows fixed
    same = paired.before_after(paired.paired_sums({"val": unchanged, "v2": unchanged}, 30, 1))
    assert same["v2"]["change"]["value"] == 0 and same["v2_verdict"] == "no measurable change"
    assert same["helps"] is False
    up = paired.before_after(paired.paired_sums({"val": unchanged, "v2": better}, 30, 1))
    assert up["v2"]["after"]["value"] == pytest.approx(0.75) and up["v2"]["change"]["value"] == pytest.approx(0.25)
    assert up["v2_verdict"] == "better" and up["gap_verdict"] == "better" and up["helps"] is True
    assert up["gap_points"]["change"]["value"] == pytest.approx(-25.0)


def test_class_balanced_weights(spark):
    from gap_spark.ops.refit import class_balanced_weights

    sample = spark.createDataFrame([(i, 0 if i < 6 else 1) for i in range(8)], "row_id long, label int")
    got = {r["row_id"]: r["weight"] for r in class_balanced_weights(sample).collect()}
    assert got[0] == pytest.approx(8 / (2 * 6)) and got[7] == pytest.approx(8 / (2 * 2))
    assert sum(got.values()) == pytest.approx(8.0)
