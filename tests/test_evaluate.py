"""Evaluation: predictions, metrics against scikit-learn and numpy, the bootstrap gap, the per-class and
confused-pair frames (``ops.predictions``, ``ops.metrics``, ``ops.bootstrap``, ``ops.class_gap``), saved
models (``models.saved``), and the stage's outputs and refusals (``stages.evaluate``).

Models here are fitted in the test itself (SQLTransformer + VectorAssembler + LogisticRegression, all
JVM stages), so these tests do not depend on the training stage.
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from gap_spark.contracts.run import RunDir
from gap_spark.core import fs
from gap_spark.core.config import load_config
from gap_spark.core.errors import DatasetError, GapSparkError
from gap_spark.core.settings import SynthSettings
from gap_spark.models.saved import check_model_matches_dataset
from gap_spark.ops import bootstrap as bs
from gap_spark.ops import class_gap as cg
from gap_spark.ops import metrics as me
from gap_spark.ops import predictions as pr
from gap_spark.ops.generator import World, without_shift
from gap_spark.stages.evaluate import NAMED_PAIR_COLUMNS, NAMED_PER_CLASS_COLUMNS, run_evaluate
from gap_spark.stages.synth import synth_settings
from tests.conftest import config_and_paths

DIM, K = 16, 8
SPEC = synth_settings(train_rows=1600, val_rows=800, v2_rows=800, dim=DIM, classes=K, seed=21, superclass_size=4)


# ------------------------------------------------------------------------------------------------
# Helpers and fixtures
# ------------------------------------------------------------------------------------------------

def sample(world: World, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(world.spec.classes), -(-n // world.spec.classes))[:n]
    return world.sample(split, labels, rng), labels


def fit_model(spark, frame, dim: int = DIM, **lr_params):
    """Array column -> vector with JVM stages only, then multinomial LR."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import SQLTransformer, VectorAssembler

    select = ", ".join(f"features[{j}] AS f{j}" for j in range(dim))
    stages = [SQLTransformer(statement=f"SELECT *, {select} FROM __THIS__"),
              VectorAssembler(inputCols=[f"f{j}" for j in range(dim)], outputCol="vec"),
              LogisticRegression(featuresCol="vec", maxIter=lr_params.pop("maxIter", 60), **lr_params)]
    return Pipeline(stages=stages).fit(frame)


def lr_numpy_predict(model, x: np.ndarray) -> np.ndarray:
    """The fitted LR's argmax on numpy rows (no scaling stage in these test pipelines)."""
    lr = model.stages[-1]
    margins = x.astype(np.float64) @ lr.coefficientMatrix.toArray().T + lr.interceptVector.toArray()
    return margins.argmax(axis=1)


@pytest.fixture(scope="module")
def world():
    return World(SPEC)


@pytest.fixture(scope="module")
def model(spark, world, dataset_frame):
    x, y = sample(world, "train", 1600, seed=1)
    return fit_model(spark, dataset_frame(x, y), regParam=1e-3)


@pytest.fixture(scope="module")
def val_output(world, model, dataset_frame):
    """Model output (with probability vectors) on 800 val rows, cached."""
    x, y = sample(world, "val", 800, seed=2)
    return model.transform(dataset_frame(x, y)).cache()


@pytest.fixture(scope="module")
def val_local(val_output):
    """The same output as numpy arrays, for the reference computations."""
    rows = val_output.select("row_id", "label", "prediction", "probability").orderBy("row_id").collect()
    probs = np.array([r["probability"].toArray() for r in rows])
    return {"row_id": np.array([r["row_id"] for r in rows]), "label": np.array([r["label"] for r in rows]),
            "prediction": np.array([int(r["prediction"]) for r in rows]), "prob": probs}


@pytest.fixture(scope="module")
def val_pred(val_output):
    return pr.predictions_frame(val_output).cache()


# ------------------------------------------------------------------------------------------------
# Predictions
# ------------------------------------------------------------------------------------------------

def test_predictions_frame_has_contract_schema(val_pred):
    assert [(f.name, f.dataType.simpleString()) for f in val_pred.schema.fields] == [
        ("row_id", "bigint"), ("label", "int"), ("prediction", "int"), ("top5", "array<int>"),
        ("confidence", "double"), ("true_prob", "double"), ("entropy", "double")]


def test_top5_confidence_and_true_prob_equal_numpy(val_pred, val_local):
    rows = val_pred.orderBy("row_id").collect()
    probs = val_local["prob"]
    expected_top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    assert np.array_equal(np.array([r["top5"] for r in rows]), expected_top5)
    assert np.allclose([r["confidence"] for r in rows], probs.max(axis=1), rtol=0, atol=1e-15)
    assert np.allclose([r["true_prob"] for r in rows], probs[np.arange(len(probs)), val_local["label"]],
                       rtol=0, atol=1e-15)
    assert np.array_equal([r["prediction"] for r in rows], val_local["prediction"])
    logs = np.log(probs, out=np.zeros_like(probs), where=probs > 0)
    assert np.allclose([r["entropy"] for r in rows], -(probs * logs).sum(axis=1), rtol=0, atol=1e-12)


def test_top_k_indices_breaks_ties_like_a_stable_argsort(spark):
    arrays = [[0.1, 0.3, 0.3, 0.2, 0.1, 0.0], [0.5, 0.5], [0.0] * 7, [0.2, 0.1, 0.2, 0.1, 0.2, 0.1, 0.1]]
    frame = spark.createDataFrame([(i, a) for i, a in enumerate(arrays)], "id int, p array<double>")
    got = {r["id"]: r["top"] for r in pr.top_k_indices(frame, "p", 5, "top").collect()}
    for i, a in enumerate(arrays):
        assert got[i] == list(np.argsort(-np.array(a), kind="stable")[:5]), a


def test_predictions_frame_on_an_inline_model_output(spark):
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import DoubleType, IntegerType, LongType, StructField, StructType

    schema = StructType([StructField("row_id", IntegerType()), StructField("label", LongType()),
                         StructField("prediction", DoubleType()), StructField("probability", VectorUDT())])
    output = spark.createDataFrame([
        (7, 2, 1.0, Vectors.dense([0.1, 0.6, 0.3])),
        (8, 0, 0.0, Vectors.dense([0.5, 0.5, 0.0])),      # a tie goes to the lower index
        (9, 5, 2.0, Vectors.dense([0.2, 0.1, 0.7])),      # a label outside the vector: true_prob 0
    ], schema)
    def h(*p: float) -> float:  # entropy in nats, 0 log 0 = 0
        return float(-sum(q * np.log(q) for q in p if q > 0))

    expected = spark.createDataFrame([
        (7, 2, 1, [1, 2, 0], 0.6, 0.3, h(0.1, 0.6, 0.3)),
        (8, 0, 0, [0, 1, 2], 0.5, 0.5, h(0.5, 0.5)),
        (9, 5, 2, [2, 0, 1], 0.7, 0.0, h(0.2, 0.1, 0.7)),
    ], "row_id long, label int, prediction int, top5 array<int>, confidence double, true_prob double, "
       "entropy double")
    assert_approx_df_equality(pr.predictions_frame(output), expected, precision=1e-12, ignore_nullable=True)
    top2 = pr.predictions_frame(output, top_k=2).select("row_id", "top5")
    assert_df_equality(top2, spark.createDataFrame([(7, [1, 2]), (8, [0, 1]), (9, [2, 0])],
                                                   "row_id long, top5 array<int>"), ignore_nullable=True)


# ------------------------------------------------------------------------------------------------
# Metrics of one set
# ------------------------------------------------------------------------------------------------

def test_metrics_equal_sklearn_and_numpy(val_pred, val_local):
    from sklearn.metrics import accuracy_score, f1_score, log_loss, top_k_accuracy_score

    y, yhat, probs = val_local["label"], val_local["prediction"], val_local["prob"]
    m = me.accuracy_metrics(val_pred, confidence_threshold=0.6)
    assert m["rows"] == len(y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat), abs=1e-6)
    assert m["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro"), abs=1e-6)
    assert m["weighted_f1"] == pytest.approx(f1_score(y, yhat, average="weighted"), abs=1e-6)
    assert m["log_loss"] == pytest.approx(log_loss(y, probs, labels=list(range(K))), abs=1e-6)
    assert m["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y, probs, k=5, labels=list(range(K))), abs=1e-12)
    conf = probs.max(axis=1)
    confident = conf >= 0.6
    assert m["mean_confidence"] == pytest.approx(conf.mean(), abs=1e-12)
    assert m["confident_fraction"] == pytest.approx(confident.mean(), abs=1e-12)
    assert m["confident_accuracy"] == pytest.approx((y == yhat)[confident].mean(), abs=1e-12)
    assert m["unconfident_accuracy"] == pytest.approx((y == yhat)[~confident].mean(), abs=1e-12)
    # The data are hard enough for the metrics to be informative, not trivially 0 or 1.
    assert 0.5 < m["accuracy"] < 0.99 and 0.0 < m["confident_fraction"] < 1.0


def test_macro_f1_counts_classes_that_are_only_predicted(prediction_frame):
    from sklearn.metrics import f1_score

    labels, preds = [0, 0, 1, 1, 2, 2, 2, 5], [0, 3, 1, 1, 0, 2, 2, 5]
    frame = prediction_frame(labels, preds)
    assert me.macro_f1(me.class_counts(frame)) == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-12)
    counts = {r["label"]: (r["n"], r["correct"], r["predicted"]) for r in me.class_counts(frame).collect()}
    assert counts == {0: (2, 1, 2), 1: (2, 2, 2), 2: (3, 2, 2), 3: (0, 0, 1), 5: (1, 1, 1)}


def test_class_counts_frame(spark, prediction_frame):
    frame = prediction_frame([0, 0, 1, 2, 2], [0, 1, 1, 2, 3])
    expected = spark.createDataFrame([(0, 2, 1, 1), (1, 1, 1, 2), (2, 2, 1, 1), (3, 0, 0, 1)],
                                     "label int, n long, correct long, predicted long")
    assert_df_equality(me.class_counts(frame), expected, ignore_nullable=True, ignore_row_order=True)


def test_calibration_bins_frame(spark, prediction_frame):
    frame = prediction_frame([0, 0, 0, 1], [0, 1, 0, 1], confidences=[0.05, 0.25, 0.3, 1.0])
    expected = spark.createDataFrame([(0, 1, 1, 0.05), (1, 2, 1, 0.55), (3, 1, 1, 1.0)],
                                     "bin int, count long, correct long, confidence_sum double")
    assert_approx_df_equality(me.calibration_bins(frame, 4), expected, precision=1e-12, ignore_nullable=True,
                              ignore_row_order=True)


def ece_numpy(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    index = np.minimum(np.floor(conf * bins), bins - 1).astype(int)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_ece_and_reliability_equal_numpy(val_pred, val_local):
    conf = val_local["prob"].max(axis=1)
    correct = (val_local["label"] == val_local["prediction"]).astype(float)
    m = me.set_metrics(val_pred, bins=15, confidence_threshold=0.5)
    assert m["ece"] == pytest.approx(ece_numpy(conf, correct, 15), abs=1e-12)
    assert list(m) == list(me.METRIC_KEYS)
    assert len(m["reliability"]) == 15
    assert sum(b["count"] for b in m["reliability"]) == len(conf)
    index = np.minimum(np.floor(conf * 15), 14).astype(int)
    for b, row in enumerate(m["reliability"]):
        assert row["bin_lower"] == pytest.approx(b / 15) and row["bin_upper"] == pytest.approx((b + 1) / 15)
        assert row["count"] == int((index == b).sum())
        if row["count"]:
            assert row["accuracy"] == pytest.approx(correct[index == b].mean(), abs=1e-12)
            assert row["confidence"] == pytest.approx(conf[index == b].mean(), abs=1e-12)
        else:
            assert row["accuracy"] is None and row["confidence"] is None


def test_ece_bin_edges(prediction_frame):
    # 0 and exact edges go to the bin they open; 1.0 goes to the last bin.
    conf = [0.0, 1 / 15, 0.5, 14 / 15, 1.0, 0.999]
    frame = prediction_frame([0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0], confidences=conf)
    bins = {r["bin"]: r["count"] for r in me.calibration_bins(frame, 15).collect()}
    expected = np.minimum(np.floor(np.array(conf) * 15), 14).astype(int)
    assert bins == {int(b): int((expected == b).sum()) for b in np.unique(expected)}
    assert bins[14] == 3 and bins[0] == 1


# ------------------------------------------------------------------------------------------------
# Bootstrap
# ------------------------------------------------------------------------------------------------

def test_poisson_weights_are_poisson_one_and_deterministic(prediction_frame):
    n, b = 2000, 25
    frame = prediction_frame([0] * n, [0] * n)
    weights = bs.bootstrap_weights(frame, b, seed=5, stream=1)
    counts = {r["w"]: r["count"] for r in weights.groupBy("w").count().collect()}
    counts[0] = n * b - sum(counts.values())  # zero weights are dropped from the frame
    total = n * b
    mean = sum(w * c for w, c in counts.items()) / total
    var = sum((w - mean) ** 2 * c for w, c in counts.items()) / total
    assert mean == pytest.approx(1.0, abs=0.02)
    assert var == pytest.approx(1.0, abs=0.03)
    for w in range(4):
        assert counts.get(w, 0) / total == pytest.approx(math.exp(-1) / math.factorial(w), abs=0.01)
    # The weights depend only on (seed, stream, row_id, rep): not on partitioning or order.
    keys = ["row_id", "rep", "w"]
    again = bs.bootstrap_weights(frame.repartition(3).orderBy(F.desc("row_id")), b, seed=5, stream=1).select(keys)
    assert again.exceptAll(weights.select(keys)).count() == 0
    assert weights.select(keys).exceptAll(again).count() == 0
    other = bs.bootstrap_weights(frame, b, seed=5, stream=2).select(keys)
    assert other.exceptAll(weights.select(keys)).count() > n * b * 0.3


def test_bootstrap_replicates_equal_numpy_on_the_same_weights(prediction_frame):
    rng = np.random.default_rng(4)
    n, b, bins = 300, 6, 15
    labels = rng.integers(0, 5, n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 6, n))
    conf = rng.random(n)
    frame = prediction_frame(labels, preds, confidences=conf)
    got = {r["rep"]: r for r in bs.bootstrap_replicates(frame, b, seed=3, stream=1, bins=bins).collect()}
    w = np.zeros((b, n))
    for r in bs.bootstrap_weights(frame, b, seed=3, stream=1).select("rep", "row_id", "w").collect():
        w[r["rep"], r["row_id"]] = r["w"]
    correct = (labels == preds).astype(float)
    index = np.minimum(np.floor(conf * bins), bins - 1).astype(int)
    assert sorted(got) == list(range(b))
    for rep in range(b):
        wr = w[rep]
        acc = (wr * correct).sum() / wr.sum()
        f1s = []
        for c in range(6):
            t, p = wr[labels == c].sum(), wr[preds == c].sum()
            tp = wr[(labels == c) & (preds == c)].sum()
            if t + p > 0:
                f1s.append(2 * tp / (t + p))
        ece = sum(abs((wr * correct)[index == k].sum() - (wr * conf)[index == k].sum()) for k in range(bins)) / wr.sum()
        assert got[rep]["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert got[rep]["macro_f1"] == pytest.approx(np.mean(f1s), abs=1e-12)
        assert got[rep]["ece"] == pytest.approx(ece, abs=1e-12)


def shifted_pair(dataset_frame, model, spec: SynthSettings, n: int, seed: int):
    world = World(spec)
    xv, yv = sample(world, "val", n, seed)
    xs, ys = sample(world, "v2", n, seed + 10_000)
    val = pr.predictions_frame(model.transform(dataset_frame(xv, yv)))
    v2 = pr.predictions_frame(model.transform(dataset_frame(xs, ys)))
    return val.cache(), v2.cache()


def population_gap(model, spec: SynthSettings, n: int = 200_000) -> float:
    """The model's accuracy difference on a very large fresh sample of each set (numpy)."""
    world = World(spec)
    accuracy = {}
    for split in ("val", "v2"):
        x, y = sample(world, split, n, seed=987 if split == "val" else 988)
        accuracy[split] = float((lr_numpy_predict(model, x) == y).mean())
    return accuracy["val"] - accuracy["v2"]


def test_bootstrap_interval_matches_the_normal_approximation(dataset_frame, model):
    n = 1500
    val, v2 = shifted_pair(dataset_frame, model, SPEC, n, seed=30)
    acc = {name: f.agg(F.avg((F.col("label") == F.col("prediction")).cast("double"))).first()[0]
           for name, f in (("val", val), ("v2", v2))}
    gap = bs.bootstrap_gap(val, v2, replicates=400, seed=9)
    se = math.sqrt(acc["val"] * (1 - acc["val"]) / n + acc["v2"] * (1 - acc["v2"]) / n)
    d = acc["val"] - acc["v2"]
    lo, hi = gap["accuracy"]
    assert lo == pytest.approx(d - 1.96 * se, abs=0.35 * se)
    assert hi == pytest.approx(d + 1.96 * se, abs=0.35 * se)
    for metric in ("macro_f1", "ece"):
        assert gap[metric][0] < gap[metric][1]
    val.unpersist()
    v2.unpersist()


def trial_sets(dataset_frame, model, spec: SynthSettings, trials: int, n: int):
    """``trials`` independent draws of val and v2 (n rows each) in two frames, with a ``trial`` column."""
    world = World(spec)
    frames = {}
    for split, offset in (("val", 0), ("v2", 50_000)):
        draws = [sample(world, split, n, seed=offset + 100 + t) for t in range(trials)]
        x = np.concatenate([d[0] for d in draws])
        y = np.concatenate([d[1] for d in draws])
        pred = pr.predictions_frame(model.transform(dataset_frame(x, y)))
        frames[split] = pred.withColumn("trial", (F.col("row_id") / n).cast("int")).cache()
    return frames["val"], frames["v2"]


@pytest.mark.slow
@pytest.mark.parametrize("shifted", [True, False], ids=["default-shift", "no-shift"])
def test_bootstrap_interval_covers_the_true_gap(dataset_frame, model, shifted):
    """Across independent draws of val and v2, the 95% interval covers the population gap.

    With the default shift knobs the true gap is the model's accuracy difference on 200k fresh rows
    per set; with the knobs at zero V2 is drawn from val's distribution, so the gap is exactly 0.
    A single draw misses 5% of the time by design, so the statement checked is about coverage: at
    least 10 of 12 draws (P(fewer) < 2% at 95% coverage; a zero-width, too narrow or off-centre
    interval fails it). All 12 draws are bootstrapped in one Spark job, grouped by ``trial``.
    """
    spec = SPEC if shifted else without_shift(SPEC)
    truth = population_gap(model, spec)
    if shifted:
        assert truth > 0.02  # the default knobs do make V2 harder for this model
    else:
        assert abs(truth) < 0.01  # same distribution: the sampled estimate of 0 is near 0 ...
        truth = 0.0  # ... and the exact value is 0
    trials = 12
    val, v2 = trial_sets(dataset_frame, model, spec, trials, n=600)
    table = bs.bootstrap_gap_table(val, v2, replicates=200, seed=3, by=["trial"]).collect()
    val.unpersist()
    v2.unpersist()
    assert sorted(r["trial"] for r in table) == list(range(trials))
    covered = sum(r["accuracy"][0] <= truth <= r["accuracy"][1] for r in table)
    assert covered >= 10, f"{covered}/{trials} intervals covered the true gap {truth:.4f}"


# ------------------------------------------------------------------------------------------------
# Where the gap comes from
# ------------------------------------------------------------------------------------------------

def test_per_class_accuracy_frame(spark, prediction_frame):
    val = prediction_frame([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2])
    v2 = prediction_frame([0, 0, 1, 1, 3], [1, 0, 1, 1, 3], first_id=100)
    expected = spark.createDataFrame([
        (0, 3, 2, 2 / 3, 2, 1, 0.5, 2 / 3 - 0.5),
        (1, 2, 1, 0.5, 2, 2, 1.0, -0.5),
        (2, 1, 1, 1.0, 0, 0, None, None),
        (3, 0, 0, None, 1, 1, 1.0, None),
    ], "label int, val_n long, val_correct long, val_accuracy double, v2_n long, v2_correct long, "
       "v2_accuracy double, drop double")
    table = cg.per_class_accuracy_frame(val, v2)
    assert table.columns == list(cg.PER_CLASS_ACCURACY_COLUMNS)
    assert_approx_df_equality(table, expected, precision=1e-12, ignore_nullable=True)


def test_confused_pair_frame_and_top_pairs(spark, prediction_frame):
    val = prediction_frame([0, 0, 0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 1, 2, 2])
    v2 = prediction_frame([0, 0, 1, 1, 1, 2, 2, 2], [1, 0, 2, 2, 1, 0, 0, 2], first_id=100)
    pairs = cg.confused_pair_frame(val, v2)
    expected = spark.createDataFrame([
        (0, 1, 2, 0.5, 1, 0.5, 0.0),
        (1, 0, 1, 0.5, 0, 0.0, -0.5),
        (1, 2, 0, 0.0, 2, 2 / 3, 2 / 3),
        (2, 0, 0, 0.0, 2, 2 / 3, 2 / 3),
    ], "true_label int, predicted_label int, val_count long, val_rate double, v2_count long, v2_rate double, "
       "growth double")
    assert_approx_df_equality(pairs, expected, precision=1e-12, ignore_nullable=True, ignore_row_order=True)
    top = cg.top_confused_pairs(pairs, top_n=1)
    # Top by val count: (0,1); by v2 count: (1,2) (tie with (2,0), lower labels first); by growth: (1,2).
    assert [(r["true_label"], r["predicted_label"]) for r in top] == [(1, 2), (0, 1)]
    top_all = cg.top_confused_pairs(pairs, top_n=10)
    assert [(r["true_label"], r["predicted_label"]) for r in top_all] == [(1, 2), (2, 0), (0, 1), (1, 0)]


def test_holdout_slice_is_deterministic_and_about_the_right_size(prediction_frame):
    frame = prediction_frame([0] * 5000, [0] * 5000)
    first = pr.holdout_slice(frame, 0.2, seed=4)
    assert 900 < first.count() < 1100
    assert_df_equality(pr.holdout_slice(frame.repartition(3), 0.2, seed=4).select("row_id"), first.select("row_id"),
                       ignore_row_order=True)


# ------------------------------------------------------------------------------------------------
# The stage: outputs and refusals
# ------------------------------------------------------------------------------------------------

def save_model(model, run_dir: str, name: str) -> None:
    model.write().overwrite().save(fs.to_spark_uri(RunDir(run_dir).model(name)))


def evaluate_config(data: str, run: str, **sets):
    return config_and_paths(run, **{"paths.data": data, "paths.run": run, "evaluate.bootstrap_replicates": 50,
                                    **sets})


def read_csv(path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(fs.read_text(path))))


@pytest.fixture(scope="module")
def dataset_models(spark, tiny_dataset):
    """An LR and a small random forest fitted on the tiny dataset's train split."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import SQLTransformer, VectorAssembler

    from gap_spark.contracts.dataset import read_split

    train = read_split(spark, tiny_dataset, "train").cache()
    lr = fit_model(spark, train, regParam=1e-3)
    select = ", ".join(f"features[{j}] AS f{j}" for j in range(DIM))
    rf = Pipeline(stages=[SQLTransformer(statement=f"SELECT *, {select} FROM __THIS__"),
                          VectorAssembler(inputCols=[f"f{j}" for j in range(DIM)], outputCol="vec"),
                          RandomForestClassifier(featuresCol="vec", numTrees=5, maxDepth=4, seed=1)]).fit(train)
    train.unpersist()
    return {"lr": lr, "rf": rf}


@pytest.mark.slow
def test_run_evaluate_writes_the_contract(spark, tiny_dataset, dataset_models, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score

    run = str(tmp_path / "run")
    for name, m in dataset_models.items():
        save_model(m, run, name)
    config, paths = evaluate_config(tiny_dataset, run, **{"evaluate.holdout_fraction": 0.25})
    summary = run_evaluate(spark, config, paths)

    metrics = fs.read_json(paths.run_dir.metrics)
    assert set(metrics) == {"models", "dataset", "bootstrap_replicates", "classes", "seconds"}
    # The generated paths carry ImageNet's first K WordNet ids, so ImageNet's names apply; the superclasses
    # are blocks of synth.superclass_size = 10 labels (the default here), so K = 8 makes one.
    assert metrics["classes"]["source"] == "imagenet" and metrics["classes"]["superclasses"] == 1
    assert metrics["bootstrap_replicates"] == 50 and metrics["dataset"]["classes"] == K
    assert set(metrics["models"]) == {"lr", "rf"}
    for name, block in metrics["models"].items():
        assert set(block) == {"val", "v2", "gap", "train_holdout"}
        for split in ("val", "v2", "train_holdout"):
            assert list(block[split]) == list(me.METRIC_KEYS)
            assert len(block[split]["reliability"]) == 15
        assert block["val"]["rows"] == 800 and block["v2"]["rows"] == 800
        assert 250 < block["train_holdout"]["rows"] < 550
        gap = block["gap"]
        assert set(gap) == {"accuracy", "ci95", "macro_f1", "macro_f1_ci95", "ece", "ece_ci95"}
        assert gap["accuracy"] == pytest.approx(block["val"]["accuracy"] - block["v2"]["accuracy"], abs=1e-12)
        assert gap["ci95"][0] < gap["accuracy"] < gap["ci95"][1]

        # Saved predictions: contract schema, and they reproduce the metrics.
        pred = spark.read.parquet(fs.to_spark_uri(paths.run_dir.predictions(name, "v2")))
        assert pred.columns == list(pr.PREDICTION_COLUMNS)
        local = pred.select("label", "prediction").collect()
        y, yhat = [r["label"] for r in local], [r["prediction"] for r in local]
        assert block["v2"]["accuracy"] == pytest.approx(accuracy_score(y, yhat), abs=1e-9)
        assert block["v2"]["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro"), abs=1e-9)

        per_class = spark.read.parquet(fs.to_spark_uri(paths.run_dir.per_class_parquet(name)))
        assert per_class.columns == list(NAMED_PER_CLASS_COLUMNS) and per_class.count() == K
        assert NAMED_PER_CLASS_COLUMNS[:len(cg.PER_CLASS_ACCURACY_COLUMNS)] == cg.PER_CLASS_ACCURACY_COLUMNS
        rows = read_csv(paths.run_dir.per_class_csv(name))
        assert list(rows[0]) == list(NAMED_PER_CLASS_COLUMNS) and len(rows) == K
        assert (rows[0]["name"], rows[0]["wnid"], rows[0]["superclass"]) == ("tench", "n01440764", "0")
        assert sum(int(r["v2_correct"]) for r in rows) == sum(a == b for a, b in zip(y, yhat))
        pairs = read_csv(paths.run_dir.confused_pairs_csv(name))
        assert pairs and list(pairs[0]) == list(NAMED_PAIR_COLUMNS)
        assert NAMED_PAIR_COLUMNS[:len(cg.CONFUSED_PAIR_COLUMNS)] == cg.CONFUSED_PAIR_COLUMNS
        assert all(r["true_label"] != r["predicted_label"] for r in pairs)
    assert summary["models"] == metrics["models"] and set(summary["timings"]) == {"lr", "rf"}


def test_refuses_a_run_without_models(spark, tiny_dataset, tmp_path):
    from gap_spark.cli import main

    config, paths = evaluate_config(tiny_dataset, str(tmp_path / "empty-run"))
    with pytest.raises(GapSparkError, match="no models"):
        run_evaluate(spark, config, paths)
    assert main(["evaluate", "--data", tiny_dataset, "--run", str(tmp_path / "empty-run"), "--quiet"]) == 2


def test_refuses_a_dataset_without_manifest(spark, model, tmp_path):
    run = str(tmp_path / "run")
    save_model(model, run, "lr")
    (tmp_path / "data" / "split=val").mkdir(parents=True)
    config, paths = evaluate_config(str(tmp_path / "data"), run)
    with pytest.raises(DatasetError, match="_manifest.json"):
        run_evaluate(spark, config, paths)


def test_refuses_a_model_whose_dimension_differs(spark, tiny_dataset, tmp_path):
    from gap_spark.contracts.dataset import read_split

    narrow = fit_model(spark, read_split(spark, tiny_dataset, "train"), dim=12, maxIter=5)
    run = str(tmp_path / "run")
    save_model(narrow, run, "lr")
    config, paths = evaluate_config(tiny_dataset, run)
    with pytest.raises(GapSparkError, match="D=12 features but the dataset has D=16"):
        run_evaluate(spark, config, paths)


def test_list_models_skips_what_is_not_a_saved_model(model, tmp_path):
    from gap_spark.models.saved import list_models

    run = RunDir(str(tmp_path / "run"))
    assert list_models(run) == []
    save_model(model, run.root, "lr")
    for junk in ("half-written", "_tmp", ".hidden"):
        fs.makedirs(run.model(junk))
    assert list_models(run) == ["lr"]


def test_refuses_a_model_whose_classes_differ(model):
    manifest = {"dim": DIM, "classes": K}
    assert check_model_matches_dataset("lr", model, manifest) == (K, DIM)
    with pytest.raises(GapSparkError, match="K=8 classes but the dataset has K=10"):
        check_model_matches_dataset("lr", model, {**manifest, "classes": 10})
    with pytest.raises(GapSparkError, match="D=16 features but the dataset has D=1024"):
        check_model_matches_dataset("lr", model, {**manifest, "dim": 1024})


def test_settings_are_checked():
    from gap_spark.core.errors import ConfigError

    ok = load_config().settings.evaluate
    assert ok.ece_bins == 15 and ok.bootstrap_replicates >= 1
    for bad in ("evaluate.bootstrap_replicates=0", "evaluate.confidence_threshold=1.5",
                "evaluate.holdout_fraction=1.0", "evaluate.ece_bins=x"):
        with pytest.raises(ConfigError):
            _ = load_config(sets=[bad]).settings.evaluate
