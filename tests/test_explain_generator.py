"""The generator's pure covariate-shift knob (``synth.v2_selection``): off, it changes no byte; on, it selects
on the features only, deterministically, and moves p(x) the way its kind says (numpy only, no Spark)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gap_spark.ops.generator import World, chunk_csv, chunk_jobs, chunk_rng, generator_spec, without_shift
from gap_spark.stages.synth import synth_settings

SMALL = {"train_rows": 300, "val_rows": 200, "v2_rows": 200, "dim": 12, "classes": 6, "superclass_size": 3, "seed": 5}
# sha256 of the three splits' chunks for SMALL, written by the generator before the knob existed (at 78af573,
# after the paths took real ImageNet wnids; recompute there if the generator's output changes on purpose).
GOLDEN = "b44a2964bd2f09a9ad52b3301a0ef50f9e5e71424007004b68965c080e669cff"


def digest(world: World) -> str:
    h = hashlib.sha256()
    for split in ("train", "val", "v2"):
        for job in chunk_jobs(world, split, 64):
            h.update(chunk_csv(world, job))
    return h.hexdigest()


def nearest_centre_accuracy(world: World, labels: np.ndarray, x: np.ndarray) -> float:
    d = ((x[:, None, :] - world.means[None]) ** 2).sum(-1)
    return float((d.argmin(1) == labels).mean())


def test_off_the_files_are_byte_identical_to_the_generator_without_the_knob():
    for kind in ("linear", "margin"):
        assert digest(World(synth_settings(**SMALL, v2_selection=0.0, v2_selection_kind=kind))) == GOLDEN
    spec = generator_spec(synth_settings(**SMALL))
    assert "v2_selection" not in spec
    on = generator_spec(synth_settings(**SMALL, v2_selection=1.0, v2_selection_kind="margin"))
    assert on["v2_selection"] == 1.0 and on["v2_selection_kind"] == "margin"
    assert without_shift(synth_settings(**SMALL, v2_selection=1.0)).v2_selection == 0.0


def test_on_it_changes_only_v2_and_is_deterministic():
    base = World(synth_settings(**SMALL))
    world = World(synth_settings(**SMALL, v2_selection=2.0))
    for split in ("train", "val"):
        job = next(chunk_jobs(world, split, 64))
        assert chunk_csv(world, job) == chunk_csv(base, job)
    jobs = list(chunk_jobs(world, "v2", 64))
    again = World(synth_settings(**SMALL, v2_selection=2.0))
    assert [chunk_csv(world, j) for j in jobs] == [chunk_csv(again, j) for j in jobs]
    labels, x = world.rows("v2", jobs[-1][3], chunk_rng(5, "v2", jobs[-1][1]))
    assert len(labels) == len(jobs[-1][3]) == x.shape[0] and x.shape[1] == 12
    assert labels.min() >= 0 and labels.max() < 6


@pytest.mark.parametrize("kind", ["linear", "margin"])
def test_the_keep_probability_reads_the_features_only(kind):
    world = World(synth_settings(**SMALL, v2_selection=2.0, v2_selection_kind=kind))
    _, x = world.rows("val", np.random.default_rng(1).integers(0, 6, 500), np.random.default_rng(2))
    p = world.keep_probability(x)
    assert p.shape == (500,) and (p > 0).all() and (p < 1).all()
    # Same features, other labels: the same probability (p(y | x) cannot change).
    np.testing.assert_array_equal(world.keep_probability(x[::-1]), p[::-1])
    assert 0.05 < world.selection_rate < 0.6


def test_linear_selection_moves_the_projection_and_margin_selection_makes_v2_harder():
    knobs = {"dim": 24, "classes": 8, "superclass_size": 8, "seed": 3, "v2_extra_hardness": 0.0, "covariate_shift": 0.0}
    rng = np.random.default_rng(3)
    base = World(synth_settings(**knobs))
    labels, x = base.rows("val", rng.integers(0, 8, 3000), rng)
    acc_val = nearest_centre_accuracy(base, labels, x)
    linear = World(synth_settings(**knobs, v2_selection=2.0, v2_selection_kind="linear"))
    _, x_lin = linear.rows("v2", np.zeros(3000, int), rng)
    shift = (x_lin.mean(0) - x.mean(0)) @ linear.selection_direction
    assert shift > 0.5 * (x @ linear.selection_direction).std()
    margin = World(synth_settings(**knobs, v2_selection=1.5, v2_selection_kind="margin"))
    y_m, x_m = margin.rows("v2", np.zeros(3000, int), rng)
    assert nearest_centre_accuracy(margin, y_m, x_m) < acc_val - 0.08
