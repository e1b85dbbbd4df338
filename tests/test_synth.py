"""The generator: the pandas-visible format, determinism, class counts, and the shift knobs."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from gap_spark.contracts.dataset import RAW_FILE_NAMES
from gap_spark.synth import FULL_ROWS, SynthSpec, World, allocate, generate, split_labels


def small_spec(**kw) -> SynthSpec:
    base = {"train_rows": 600, "val_rows": 200, "v2_rows": 100, "dim": 12, "classes": 6, "superclass_size": 3,
            "seed": 5}
    base.update(kw)
    return SynthSpec(**base)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_read_by_pandas_like_the_real_ones(tmp_path):
    spec = small_spec()
    generate(spec, str(tmp_path), chunk_rows=64, workers=1)
    for split, name in RAW_FILE_NAMES.items():
        frame = pd.read_csv(tmp_path / name)
        # pandas names the empty index header 'Unnamed: 0', exactly as for the real files.
        assert list(frame.columns) == ["Unnamed: 0", "path", "label"] + [str(j) for j in range(spec.dim)]
        assert len(frame) == spec.rows(split)
        assert frame["Unnamed: 0"].tolist() == list(range(spec.rows(split)))
        assert frame["label"].dtype == np.int64 and frame["label"].between(0, spec.classes - 1).all()
        assert all(frame[str(j)].dtype == np.float64 for j in range(spec.dim))
        assert frame["path"].is_unique
    header = (tmp_path / RAW_FILE_NAMES["val"]).read_text().splitlines()[0]
    assert header == ",path,label," + ",".join(str(j) for j in range(spec.dim))
    train_paths = pd.read_csv(tmp_path / RAW_FILE_NAMES["train"])["path"]
    assert train_paths.str.match(r"^imagenet/train/n\d{8}/n\d{8}_\d+\.JPEG$").all()
    v2 = pd.read_csv(tmp_path / RAW_FILE_NAMES["v2"])
    # ImageNetV2 keeps one folder per class index.
    assert (v2["path"].str.split("/").str[1].astype(int) == v2["label"]).all()


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    spec = small_spec()
    generate(spec, str(tmp_path / "a"), chunk_rows=50, workers=1)
    generate(spec, str(tmp_path / "b"), chunk_rows=50, workers=2)
    generate(small_spec(seed=6), str(tmp_path / "c"), chunk_rows=50, workers=1)
    for name in RAW_FILE_NAMES.values():
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
        assert digest(tmp_path / "a" / name) != digest(tmp_path / "c" / name)


def test_train_counts_are_uneven_like_imagenet_and_test_sets_balanced():
    world = World(SynthSpec(train_rows=FULL_ROWS["train"], val_rows=50_000, v2_rows=10_000))
    base = world.train_base_counts
    assert base.sum() == FULL_ROWS["train"]
    assert base.min() >= 732 and base.max() == 1300 and base.min() < 1000
    assert np.bincount(split_labels(world, "val"), minlength=1000).tolist() == [50] * 1000
    assert np.bincount(split_labels(world, "v2"), minlength=1000).tolist() == [10] * 1000
    # Scaled down, the proportions hold and the total is exact.
    scaled = World(SynthSpec(train_rows=12_812, val_rows=500, v2_rows=100))
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
    world = World(small_spec(dim=32, classes=20, superclass_size=4).without_shift())
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


@pytest.mark.parametrize("bad", [{"dim": 0}, {"classes": 1}, {"hardness": -0.1}, {"covariate_fraction": 2.0}])
def test_invalid_specs_are_refused(bad):
    from gap_spark.core.errors import ConfigError

    with pytest.raises(ConfigError):
        small_spec(**bad).validate()
