"""Ground truth from the generator: the explain analysis on sets whose shift is known by construction.

The sets come straight from :class:`gap_spark.ops.generator.World` (8 confusable classes, D = 24, 3000 rows
per set), and the model is the World's own nearest-centre classifier with a softmax temperature fitted on
train rows (so it is calibrated on val's process). Its confidence is a function of the same margin the
``margin`` selection reads, which makes that selection representable by the density ratio on the
features and the model's scores, as the ``linear`` one is by the features alone (which in this world moves
accuracy too little to test against: see the generator's docstring).
"""
from __future__ import annotations

import numpy as np
import pytest

from gap_spark.core.config import load_config
from gap_spark.ops.explain import explain_model, fit_feature_ratio, model_ratio
from gap_spark.ops.generator import World
from gap_spark.stages.synth import synth_settings

CLASSES, DIM, ROWS, SEED = 8, 24, 3000, 7
BASE = {"dim": DIM, "classes": CLASSES, "superclass_size": CLASSES, "seed": 3, "v2_extra_hardness": 0.0,
        "covariate_shift": 0.0}


def nearest_centre_model(world: World, rng: np.random.Generator):
    """Softmax of minus the squared distances to the class centres over a temperature fitted on train rows."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    means = world.means.astype(float)

    def scores(x: np.ndarray) -> np.ndarray:
        return -((x ** 2).sum(1)[:, None] - 2 * x @ means.T + (means ** 2).sum(1)[None, :])

    labels, x = world.rows("train", rng.integers(0, CLASSES, 4000), rng)
    s = scores(x)
    fitted = minimize_scalar(lambda t: -log_softmax(s / np.exp(t), axis=1)[np.arange(len(labels)), labels].mean(),
                             bounds=(-5.0, 10.0), method="bounded")
    return lambda rows: np.exp(log_softmax(scores(rows) / np.exp(fitted.x), axis=1))


def world_sets(spark, dataset_frame, **knobs):
    """val and v2 from the World with ``knobs``: dataset frames and the model's prediction frames."""
    world = World(synth_settings(**{**BASE, **knobs}))
    rng = np.random.default_rng(SEED)
    model = nearest_centre_model(world, rng)
    out = {}
    for split in ("val", "v2"):
        labels, x = world.rows(split, rng.integers(0, CLASSES, ROWS), rng)
        p = model(x.astype(float))
        entropy = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
        rows = [(i, int(labels[i]), int(p[i].argmax()), float(p[i].max()), float(p[i, labels[i]]), float(entropy[i]))
                for i in range(ROWS)]
        predictions = spark.createDataFrame(rows, "row_id long, label int, prediction int, confidence double, "
                                                  "true_prob double, entropy double")
        out[split] = (dataset_frame(x, labels), predictions)
    return out


def analyse(spark, dataset_frame, **knobs):
    settings = load_config(overrides={"explain": {"bootstrap_replicates": 100, "domain_max_iter": 30}}).settings.explain
    sets = world_sets(spark, dataset_frame, **knobs)
    features = fit_feature_ratio(sets["val"][0], sets["v2"][0], settings)
    ratios, weights = model_ratio(features, sets["val"][1], sets["v2"][1], settings)
    result = explain_model(sets["val"][1], sets["v2"][1], ratios, CLASSES, settings)
    return result, weights


def contains(ci, value: float) -> bool:
    return ci[0] <= value <= ci[1]


@pytest.mark.slow
def test_without_shift_nothing_is_found_and_every_estimate_holds_the_truth(spark, dataset_frame):
    result, weights = analyse(spark, dataset_frame)
    parts = result["parts"]
    assert contains(parts["gap"]["ci95"], 0.0)
    assert contains(parts["covariate"]["ci95"], 0.0) and contains(parts["residual"]["ci95"], 0.0)
    assert weights["auc"] < 0.55 and weights["ess_fraction"] > 0.9
    truth = result["accuracy"]["v2"]["value"]
    for name, e in result["estimators"].items():
        # The paired interval of (estimate - truth) holds 0: the estimate agrees with v2's own accuracy.
        assert contains(e["error_ci95"], 0.0), (name, e)
        assert e["truth"] == pytest.approx(truth)


@pytest.mark.slow
def test_pure_covariate_selection_is_explained_by_the_covariate_part(spark, dataset_frame):
    result, weights = analyse(spark, dataset_frame, v2_selection=1.5, v2_selection_kind="margin")
    parts = {k: v["value"] for k, v in result["parts"].items()}
    assert parts["gap"] > 8  # the selection keeps ambiguous rows: v2 is much harder
    assert parts["covariate"] >= 0.8 * parts["gap"]
    assert contains(result["parts"]["residual"]["ci95"], 0.0)
    assert weights["inputs"] == "features+scores" and weights["auc"] > 0.65


@pytest.mark.slow
def test_harder_rows_are_left_to_the_residual(spark, dataset_frame):
    result, _ = analyse(spark, dataset_frame, v2_extra_hardness=0.1)
    parts = {k: v["value"] for k, v in result["parts"].items()}
    assert parts["gap"] > 5
    assert parts["covariate"] < parts["gap"] / 3
    assert parts["residual"] > 0.6 * parts["gap"] and result["parts"]["residual"]["ci95"][0] > 0
    # Every part adds up to the gap.
    assert parts["label_mix"] + parts["covariate"] + parts["residual"] == pytest.approx(parts["gap"], abs=1e-9)
