"""The generator's model (pure numpy): class counts, allocation, the shift knobs and the CSV chunks."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from gap_spark.core.settings import FULL_ROWS
from gap_spark.ops.generator import (
    World,
    allocate,
    chunk_csv,
    chunk_jobs,
    csv_header,
    generator_spec,
    split_labels,
    without_shift,
)
from gap_spark.stages.synth import synth_settings
from tests.test_synth import small_spec


def test_train_counts_are_uneven_like_imagenet_and_test_sets_balanced():
    world = World(synth_settings(train_rows=FULL_ROWS["train"], val_rows=50_000, v2_rows=10_000))
    base = world.train_base_counts
    assert base.sum() == FULL_ROWS["train"]
    assert base.min() >= 732 and base.max() == 1300 and base.min() < 1000
    assert np.bincount(split_labels(world, "val"), minlength=1000).tolist() == [50] * 1000
    assert np.bincount(split_labels(world, "v2"), minlength=1000).tolist() == [10] * 1000
    # Scaled down, the proportions hold and the total is exact.
    scaled = World(synth_settings(train_rows=12_812, val_rows=500, v2_rows=100))
    counts = np.bincount(split_labels(scaled, "train"), minlength=1000)
    assert counts.sum() == 12_812 and counts.max() - counts.min() <= 6


def test_allocate_is_exact_and_proportional():
    counts = allocate(10, np.array([1.0, 1.0, 2.0]))
    assert counts.sum() == 10 and counts[2] >= counts[0]


def nearest_mean_accuracy(world: World, split: str, n: int, seed: int) -> tuple[float, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, world.spec.classes, n)
    x = world.sample(split, labels, rng)
    dist = ((x[:, None, :] - world.means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == labels).mean()), x


def test_shift_knobs_at_zero_make_v2_a_fresh_sample_of_val():
    world = World(without_shift(small_spec(dim=32, classes=20, superclass_size=4)))
    assert world.hardness("v2") == world.hardness("val")
    assert not world.v2_offset.any()
    acc_val, x_val = nearest_mean_accuracy(world, "val", 4000, 1)
    acc_v2, x_v2 = nearest_mean_accuracy(world, "v2", 4000, 2)
    assert abs(acc_val - acc_v2) < 0.03
    pooled_sd = np.sqrt((x_val.var(0) + x_v2.var(0)) / 2)
    assert np.abs((x_val.mean(0) - x_v2.mean(0)) / pooled_sd).max() < 0.12


def test_default_knobs_make_v2_harder_and_move_some_features():
    world = World(small_spec(dim=200, classes=20, superclass_size=4))
    acc_val, x_val = nearest_mean_accuracy(world, "val", 4000, 1)
    acc_v2, x_v2 = nearest_mean_accuracy(world, "v2", 4000, 2)
    assert acc_val - acc_v2 > 0.04
    smd = np.abs((x_v2.mean(0) - x_val.mean(0)) / np.sqrt((x_val.var(0) + x_v2.var(0)) / 2))
    shifted = world.shifted_features
    assert len(shifted) == 10
    assert smd[shifted].mean() > 3 * np.delete(smd, shifted).mean()


def test_spec_records_the_resolved_rows_and_the_model_knobs_only():
    spec = generator_spec(synth_settings(scale=0.001, val_rows=7, dim=12, classes=6, seed=5, workers=3))
    assert spec == {"train_rows": 1281, "val_rows": 7, "v2_rows": 10, "dim": 12, "classes": 6, "seed": 5,
                    "superclass_size": 10, "hardness": 0.3, "v2_extra_hardness": 0.065, "covariate_shift": 0.5,
                    "covariate_fraction": 0.05}


def test_chunks_cover_the_split_in_order_and_parse_back_to_the_sampled_rows():
    world = World(small_spec())
    jobs = list(chunk_jobs(world, "val", 64))
    assert [(j[1], j[2], len(j[3])) for j in jobs] == [(0, 0, 64), (1, 64, 64), (2, 128, 64), (3, 192, 8)]
    np.testing.assert_array_equal(np.concatenate([j[3] for j in jobs]), split_labels(world, "val"))
    text = csv_header(world.spec.dim) + b"".join(chunk_csv(world, job) for job in jobs).decode()
    frame = pd.read_csv(io.StringIO(text))
    assert frame["Unnamed: 0"].tolist() == list(range(200))
    # The chunk's rows are the World's samples for its labels, from the chunk's own seed.
    second = world.sample("val", jobs[1][3], np.random.default_rng([world.spec.seed, 2, 2]))
    np.testing.assert_array_equal(frame.iloc[64:128, 3:].to_numpy(np.float32), second)
