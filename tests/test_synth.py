"""The synth stage: files in the pandas-visible format, byte-identical for a seed, and checked settings."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from gap_spark.contracts.dataset import RAW_FILE_NAMES, synth_marker_path
from gap_spark.core.errors import ConfigError
from gap_spark.core.settings import SynthSettings
from gap_spark.ops.generator import generator_spec
from gap_spark.stages.synth import generate, synth_settings


def small_spec(**kw) -> SynthSettings:
    base = {"train_rows": 600, "val_rows": 200, "v2_rows": 100, "dim": 12, "classes": 6, "superclass_size": 3,
            "seed": 5, "chunk_rows": 64, "workers": 1}
    base.update(kw)
    return synth_settings(**base)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_read_by_pandas_like_the_real_ones(tmp_path):
    spec = small_spec()
    summary = generate(spec, str(tmp_path))
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
    marker = json.loads((tmp_path / "_synth.json").read_text())
    assert synth_marker_path(str(tmp_path)) == str(tmp_path / "_synth.json")
    assert marker["spec"] == summary["spec"] == generator_spec(spec)
    assert {s: f["rows"] for s, f in marker["files"].items()} == {"train": 600, "val": 200, "v2": 100}


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    generate(small_spec(chunk_rows=50), str(tmp_path / "a"))
    generate(small_spec(chunk_rows=50, workers=2), str(tmp_path / "b"))
    generate(small_spec(chunk_rows=50, seed=6), str(tmp_path / "c"))
    for name in RAW_FILE_NAMES.values():
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
        assert digest(tmp_path / "a" / name) != digest(tmp_path / "c" / name)


@pytest.mark.parametrize("bad", [{"dim": 0}, {"classes": 1}, {"hardness": -0.1}, {"covariate_fraction": 2.0}])
def test_invalid_specs_are_refused(bad):
    with pytest.raises(ConfigError, match=f"synth.{next(iter(bad))}"):
        small_spec(**bad)
