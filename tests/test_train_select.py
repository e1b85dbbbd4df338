"""Honest training: selection on split=select only, a default LR that converges, and the fallback slice."""
from __future__ import annotations

import logging
import os
import shutil
import warnings

import numpy as np
import pytest
from chispa import assert_df_equality

from gap_spark.contracts.dataset import read_manifest, read_split, split_path
from gap_spark.core import fs
from gap_spark.ops.frames import hash_uniform
from gap_spark.ops.train_split import hash_holdout, selection_metrics
from gap_spark.stages.train import run_train
from tests.conftest import config_and_paths, write_dataset_dir


def generated(train_rows: int, select_rows: int, dim: int, classes: int, seed: int = 0, test_rows: int = 200):
    """Rows of the synth generator: ``select_rows`` held out of the generated train rows, stratified by
    class (as ingest's split=select), and small val and v2 splits."""
    from gap_spark.ops.generator import World, split_labels
    from gap_spark.stages.synth import synth_settings

    world = World(synth_settings(train_rows=train_rows + select_rows, val_rows=test_rows, v2_rows=test_rows,
                                 dim=dim, classes=classes, seed=seed))
    rng = np.random.default_rng(seed)
    splits = {s: (world.sample(s, y, rng), y) for s, y in ((s, split_labels(world, s)) for s in ("train", "val", "v2"))}
    x, y = splits["train"]
    share = select_rows * np.bincount(y, minlength=classes) / len(y)
    quota = np.floor(share).astype(int)
    quota[np.argsort(quota - share, kind="stable")[:select_rows - quota.sum()]] += 1  # largest remainder: exact
    pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:quota[c]] for c in range(classes)])
    keep = np.setdiff1d(np.arange(len(y)), pick)
    splits["select"], splits["train"] = (x[pick], y[pick]), (x[keep], y[keep])
    return splits


def make_unreadable(data_dir: str) -> None:
    """val removed from disk and v2's part file replaced by garbage; the manifest still lists both."""
    shutil.rmtree(fs.local_path(split_path(data_dir, "val")))
    v2 = fs.local_path(split_path(data_dir, "v2"))
    for name in os.listdir(v2):
        with open(os.path.join(v2, name), "wb") as f:
            f.write(b"not parquet at all")
    assert {"val", "v2"} <= set(read_manifest(data_dir)["splits"])


# --------------------------------------------------------------------------------------------------
# Pure pieces: the metrics on the slice and the fallback hold-out
# --------------------------------------------------------------------------------------------------


def test_selection_metrics_match_numpy(spark):
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    labels, preds = [0, 1, 1, 0], probs.argmax(axis=1)
    frame = spark.createDataFrame([(float(y), float(p), Vectors.dense(row)) for y, p, row in zip(labels, preds, probs)],
                                  T.StructType([T.StructField("label", T.DoubleType()),
                                                T.StructField("prediction", T.DoubleType()),
                                                T.StructField("probability", VectorUDT())]))
    got = selection_metrics(frame)
    p_true = np.maximum(probs[np.arange(4), labels], 1e-15)
    assert got["rows"] == 4 and got["accuracy"] == pytest.approx(0.5)
    assert got["log_loss"] == pytest.approx(float(-np.log(p_true).mean()))
    assert selection_metrics(frame.drop("probability"), probability_col="probability")["log_loss"] is None
    assert selection_metrics(frame.limit(0))["accuracy"] is None


def test_hash_holdout_is_disjoint_deterministic_and_about_the_fraction(spark):
    from pyspark.sql import functions as F

    frame = spark.range(4000).withColumnRenamed("id", "row_id").repartition(3)
    kept, held = hash_holdout(frame, 0.05, seed=19)
    kept_ids, held_ids = {r[0] for r in kept.collect()}, {r[0] for r in held.collect()}
    assert not kept_ids & held_ids and len(kept_ids | held_ids) == 4000
    assert 120 <= len(held_ids) <= 280
    # The same rows whatever the partitioning: the hash of (row_id, seed), nothing else.
    again = hash_holdout(frame.coalesce(1), 0.05, seed=19)[1]
    assert_df_equality(again, held, ignore_row_order=True)
    expected = frame.filter(hash_uniform(F.col("row_id"), F.lit(19)) < 0.05)
    assert_df_equality(held, expected, ignore_row_order=True)
    assert {r[0] for r in hash_holdout(frame, 0.05, seed=20)[1].collect()} != held_ids


# --------------------------------------------------------------------------------------------------
# The stage: never val or v2; the fallback
# --------------------------------------------------------------------------------------------------

NEVER_READS_SETS = {
    "train.models": "[lr, rf, mlp]", "train.progress_seconds": 30, "train.lr.max_iter": 10,
    "train.lr.check_every": 5, "train.mlp.max_iter": 10, "train.mlp.check_every": 5,
    "train.rf.num_trees": 3, "train.rf.max_depth": 3, "train.rf.pca_k": 4, "train.mlp.hidden": 8,
    "train.tune.enabled": "true", "train.tune.fraction": 1.0, "train.tune.lr_reg_param": "[0.001, 0.1]",
    "train.tune.lr_elastic_net_param": "[0.0]", "train.tune.rf_max_depth": "[3]", "train.tune.rf_num_trees": "[3]",
    "train.tune.mlp_hidden": "[4, 8]",
}


@pytest.mark.slow
def test_train_and_tune_never_read_val_or_v2(spark, tmp_path):
    splits = generated(600, 200, dim=8, classes=4, seed=1)
    data_dir = write_dataset_dir(tmp_path / "dataset", splits)
    make_unreadable(data_dir)
    with pytest.raises(Exception):  # noqa: B017 - what an accidental read would hit
        read_split(spark, data_dir, "val").count()
    with pytest.raises(Exception):  # noqa: B017
        read_split(spark, data_dir, "v2").count()
    config, paths = config_and_paths(tmp_path, **{"paths.data": data_dir, **NEVER_READS_SETS})
    summary = run_train(spark, config, paths)
    n_train, n_select = len(splits["train"][1]), len(splits["select"][1])
    assert summary["selection"] == {"split": "select", "source": "select", "rows": n_select, "fallback": None,
                                    "test_splits_read": False}
    for name in ("lr", "rf", "mlp"):
        entry = summary["models"][name]
        assert entry["rows"] == n_train and entry["selection"]["rows"] == n_select
        assert entry["selection"]["accuracy"] > 0.5 and entry["selection"]["log_loss"] > 0
        assert entry["tuning"]["scored_on"] == "select" and entry["tuning"]["grid_points"] == (1 if name == "rf" else 2)
        table = fs.read_text(paths.run_dir.tuning_table(name)).splitlines()
        assert "select_accuracy" in table[0] and "validation" not in table[0]
    assert summary["models"]["lr"]["params"]["regParam"] in (0.001, 0.1)
    assert summary["models"]["mlp"]["params"]["layers"][1] in (4, 8)


def test_a_dataset_without_select_falls_back_to_a_hash_slice_of_train(spark, tmp_path, caplog):
    rng = np.random.default_rng(4)
    y = np.arange(900) % 3
    x = (rng.normal(scale=3.0, size=(3, 6))[y] + rng.normal(size=(900, 6))).astype(np.float32)
    data_dir = write_dataset_dir(tmp_path / "dataset", {"train": (x, y), "val": (x[:9], y[:9]), "v2": (x[:9], y[:9])})
    make_unreadable(data_dir)
    config, paths = config_and_paths(tmp_path, **{"paths.data": data_dir, "train.models": "[lr]"})
    with caplog.at_level(logging.WARNING, logger="gap_spark.stages.train"):
        summary = run_train(spark, config, paths)
    warned = [r.getMessage() for r in caplog.records if "no selection split" in r.getMessage()]
    assert len(warned) == 1 and "fallback_fraction" in warned[0]
    selection = summary["selection"]
    assert selection["source"] == "fallback" and selection["fallback"] == {"fraction": 0.02, "seed": 19}
    held = hash_holdout(read_split(spark, data_dir, "train"), 0.02, 19)[1].count()
    assert selection["rows"] == held > 0
    assert summary["models"]["lr"]["rows"] == 900 - held  # held out of the fit, not just scored


# --------------------------------------------------------------------------------------------------
# The default LR against scikit-learn's converged fit (the oracle), scored on the selection slice
# --------------------------------------------------------------------------------------------------


def sklearn_converged(x_train, y_train, reg: float):
    """scikit-learn's multinomial LR to convergence on MLlib's objective: C = 1 / (regParam n) on features
    standardised with the sample standard deviation (as Spark's StandardScaler)."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x_train.mean(axis=0), x_train.std(axis=0, ddof=1)
    clf = LogisticRegression(C=1.0 / (reg * len(y_train)), solver="lbfgs", tol=1e-6, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not converging would make it no oracle
        clf.fit((x_train - mean) / std, y_train)
    return lambda x: clf.predict((x - mean) / std)


@pytest.mark.slow
def test_default_lr_lands_within_half_a_point_of_the_converged_oracle(spark, tmp_path):
    """8,000 x 32 x 20 from the generator, the default config (no max_iter override): MLlib's accuracy on
    the selection slice (2,000 rows held out of the train CSV) lies within 0.5 points of scikit-learn's
    converged fit on the same train rows. Yesterday's defaults (max_iter 3, the warm start skipped because
    the sample would be the whole split) scored about 2 points under it; setting ``train.lr.max_iter=3``
    here fails this test."""
    splits = generated(8000, 2000, dim=32, classes=20, seed=0)
    data_dir = write_dataset_dir(tmp_path / "dataset", splits)
    config, paths = config_and_paths(tmp_path, **{"paths.data": data_dir, "train.models": "[lr]",
                                                  **_extra_sets()})
    summary = run_train(spark, config, paths)
    entry = summary["models"]["lr"]
    assert entry["rows"] == 8000 and summary["selection"]["rows"] == 2000
    x_select, y_select = splits["select"]
    oracle = sklearn_converged(*splits["train"], config.settings.train.lr.reg_param)
    sk_acc = float((oracle(x_select) == y_select).mean())
    assert 0.6 < sk_acc < 0.95  # a real problem: neither trivial nor hopeless
    mllib_acc = entry["selection"]["accuracy"]
    assert abs(mllib_acc - sk_acc) * 100 <= 0.5, (mllib_acc, sk_acc, entry["iterations"], entry["stopped"])
    assert entry["stopped"] in ("objective", "converged")  # the rule stopped it, not the budget


def _extra_sets() -> dict:
    """``GAP_SPARK_ORACLE_SETS="train.lr.max_iter=3"`` shows the test failing on yesterday's defaults."""
    extra = os.environ.get("GAP_SPARK_ORACLE_SETS", "")
    return dict(kv.split("=", 1) for kv in extra.split(",") if kv)
