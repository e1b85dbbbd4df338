"""The train stage: the scikit-learn oracle, model round trips, K > 100 forests and every refusal."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from gap_spark.cli import main as cli_main
from gap_spark.contracts.dataset import MANIFEST, read_split
from gap_spark.contracts.paths import Paths
from gap_spark.core import fs
from gap_spark.core.config import load_config
from gap_spark.core.errors import ConfigError, DatasetError, GapSparkError
from gap_spark.features import fit_feature_model, output_column, with_label_metadata
from gap_spark.train import (
    FitProgress,
    auto_partitions,
    check_label_stats,
    describe_missing,
    lr_estimator,
    lr_params,
    rf_estimator,
    rf_params,
    run_train,
    selected_models,
    storage_level,
    table_csv,
    warm_start_params,
)

# --------------------------------------------------------------------------------------------------
# Helpers: small datasets written straight to the dataset layout (so they can be made inconsistent)
# --------------------------------------------------------------------------------------------------


def write_dataset(root, x: np.ndarray, labels: np.ndarray, dim: int | None = None, classes: int | None = None,
                  status: str = "complete", manifest: bool = True) -> str:
    """A dataset directory with one train split (plus tiny val/v2 copies) and a manifest."""
    data_dir = str(root / "dataset")
    n, d = x.shape
    for split, rows in (("train", slice(None)), ("val", slice(0, 20)), ("v2", slice(0, 20))):
        xs, ys = x[rows], labels[rows]
        features = pa.array([list(map(float, r)) for r in xs], type=pa.list_(pa.float32()))
        table = pa.table({"row_id": pa.array(np.arange(len(ys)), pa.int64()),
                          "path": pa.array([f"img/{i}.jpg" for i in range(len(ys))]),
                          "label": pa.array(ys.astype(np.int32)), "features": features})
        fs.makedirs(f"{data_dir}/split={split}")
        pq.write_table(table, f"{data_dir}/split={split}/part-00000.parquet")
    if manifest:
        fs.write_json(f"{data_dir}/{MANIFEST}", {
            "status": status, "dim": dim if dim is not None else d,
            "classes": classes if classes is not None else int(labels.max()) + 1, "fingerprint": "test",
            "splits": {s: {"rows_read": n, "rows_written": n, "rows_quarantined": 0} for s in ("train", "val", "v2")}})
    return data_dir


def config_for(tmp_path, data_dir: str, **sets):
    base = {"train.models": "[lr]", "train.lr.max_iter": 5, "train.progress_seconds": 5,
            "paths.data": data_dir, "paths.run": str(tmp_path / "run")}
    base.update(sets)
    config = load_config(sets=[f"{k}={v}" for k, v in base.items()])
    return config, Paths.from_config(config)


def blobs(n: int = 240, dim: int = 6, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(scale=3.0, size=(classes, dim))
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def test_config_to_mllib_params():
    cfg = load_config()
    lr = lr_params(cfg.section("train.lr"))
    assert set(lr) == {"regParam", "elasticNetParam", "maxIter", "tol", "maxBlockSizeInMB"}
    assert lr["regParam"] == cfg.get("train.lr.reg_param") and isinstance(lr["maxIter"], int)
    rf = rf_params(cfg.section("train.rf"))
    assert rf["numTrees"] == cfg.get("train.rf.num_trees") and rf["featureSubsetStrategy"] == "sqrt"
    bad = cfg.section("train.lr") | {"elastic_net_param": 1.5}
    with pytest.raises(ConfigError, match="elastic_net_param"):
        lr_params(bad)
    with pytest.raises(ConfigError, match="feature_subset_strategy"):
        rf_params(cfg.section("train.rf") | {"feature_subset_strategy": "most"})
    with pytest.raises(ConfigError, match="subsampling_rate"):
        rf_params(cfg.section("train.rf") | {"subsampling_rate": 0})
    assert rf_params(cfg.section("train.rf") | {"feature_subset_strategy": "0.25"})["featureSubsetStrategy"] == "0.25"


def test_warm_start_params():
    cfg = load_config().section("train.lr")
    assert set(warm_start_params(cfg)) == {"sample_rows", "max_iter", "seed"}
    for off in (None, 0):
        assert warm_start_params(cfg | {"warm_start": {**cfg["warm_start"], "sample_rows": off}}) is None
    with pytest.raises(ConfigError, match="sample_rows"):
        warm_start_params(cfg | {"warm_start": {**cfg["warm_start"], "sample_rows": -5}})
    with pytest.raises(ConfigError, match="max_iter"):
        warm_start_params(cfg | {"warm_start": {**cfg["warm_start"], "max_iter": 0}})
    with pytest.raises(ConfigError, match="mapping"):
        warm_start_params(cfg | {"warm_start": 500})


def test_selected_models_and_storage_levels():
    assert selected_models(["rf", "lr", "rf"]) == ["rf", "lr"]
    assert selected_models("lr, rf") == ["lr", "rf"]
    with pytest.raises(ConfigError, match="unknown model 'svm'"):
        selected_models(["svm"])
    with pytest.raises(ConfigError, match="empty"):
        selected_models([])
    assert storage_level("none") is None
    assert storage_level("DISK_ONLY").useDisk and not storage_level("DISK_ONLY").useMemory
    with pytest.raises(ConfigError, match="storage_level"):
        storage_level("MEMORY_SOMETIMES")


def test_auto_partitions_follow_size_and_cores():
    assert auto_partitions(20_000, 1024, 2) == 2
    assert auto_partitions(1_281_167, 1024, 2) == 40  # 5.25 GB / 128 MB = 39.1 -> 40, a multiple of 2
    assert auto_partitions(1_281_167, 1024, 16) == 48
    assert auto_partitions(10, 4, 8) == 8


def test_label_checks_and_missing_classes():
    stats = {"rows": 6, "counts": {0: 2, 2: 4}, "min_dim": 5, "max_dim": 5}
    assert check_label_stats(stats, dim=5, classes=4) == [1, 3]
    with pytest.raises(DatasetError, match="D=6"):
        check_label_stats(stats, dim=6, classes=4)
    with pytest.raises(DatasetError, match="label 2, outside \\[0, 2\\)"):
        check_label_stats(stats, dim=5, classes=2)
    text = describe_missing(list(range(30)), 1000)
    assert text.startswith("the train split has no rows for 30 of 1000 classes: 0, 1,") and "and 10 more" in text


def test_table_csv():
    assert table_csv([{"a": 1, "b": 0.5}, {"a": 2, "b": 0.25}]) == "a,b\n1,0.5\n2,0.25\n"


# --------------------------------------------------------------------------------------------------
# The oracle: MLlib LR against scikit-learn on the same rows
# --------------------------------------------------------------------------------------------------


def _xy(frame):
    rows = frame.select("row_id", "label", "features").orderBy("row_id").collect()
    return (np.array([r["features"] for r in rows], dtype=np.float64), np.array([r["label"] for r in rows]),
            np.array([r["row_id"] for r in rows]))


@pytest.mark.slow
def test_lr_matches_sklearn_oracle(spark, tiny_dataset, tmp_path):
    """MLlib's objective is mean log-loss + regParam/2 ||w||^2 on features standardised with the sample
    standard deviation; sklearn's is C * sum log-loss + 1/2 ||w||^2. Dividing MLlib's by regParam gives
    sklearn's with C = 1 / (regParam * n), on the same standardised features. Neither penalises the
    intercept. Both then minimise the same strictly convex function, so they agree to solver tolerance."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    reg = 0.01
    config, paths = config_for(tmp_path, tiny_dataset, **{"train.lr.reg_param": reg, "train.lr.max_iter": 300,
                                                          "train.lr.tol": 1e-10})
    summary = run_train(spark, config, paths)
    x_train, y_train, _ = _xy(read_split(spark, tiny_dataset, "train"))
    val = read_split(spark, tiny_dataset, "val")
    x_val, y_val, val_ids = _xy(val)
    n = len(y_train)
    assert summary["models"]["lr"]["rows"] == n

    model = PipelineModel.load(fs.to_spark_uri(paths.run_file("models", "lr")))
    pred = model.transform(val).select("row_id", "prediction", "probability").orderBy("row_id").collect()
    assert [r["row_id"] for r in pred] == list(val_ids)
    mllib_pred = np.array([r["prediction"] for r in pred])
    mllib_prob = np.array([r["probability"].toArray() for r in pred])

    mean, std = x_train.mean(axis=0), x_train.std(axis=0, ddof=1)  # Spark's StandardScaler: sample std

    def sklearn_probs(c: float):
        clf = SkLogisticRegression(C=c, solver="lbfgs", max_iter=5000, tol=1e-10)
        clf.fit((x_train - mean) / std, y_train)
        return clf.predict_proba((x_val - mean) / std)

    sk_prob = sklearn_probs(1.0 / (reg * n))
    mllib_acc, sk_acc = (mllib_pred == y_val).mean(), (sk_prob.argmax(axis=1) == y_val).mean()
    assert 0.5 < sk_acc < 0.99  # a real problem: neither trivial nor hopeless
    assert abs(mllib_acc - sk_acc) * 100 <= 0.5
    # The mapping itself, not just the accuracy: probabilities agree closely with C = 1/(lambda n) and
    # clearly less with the naive C = 1/lambda.
    right = np.abs(mllib_prob - sk_prob).max()
    wrong = np.abs(mllib_prob - sklearn_probs(1.0 / reg)).max()
    assert right < 1e-3 and wrong > 10 * right


# --------------------------------------------------------------------------------------------------
# Round trips and K > 100
# --------------------------------------------------------------------------------------------------


def test_save_load_predict_round_trip(spark, tmp_path):
    x, labels = blobs(n=200, dim=5, classes=4, seed=1)
    rows = [(i, int(y), [float(v) for v in r]) for i, (r, y) in enumerate(zip(x, labels))]
    frame = spark.createDataFrame(rows, "row_id long, label int, features array<float>")
    features = fit_feature_model(frame)
    with FitProgress(spark, "lr", heartbeat_s=60, track_lbfgs=True) as progress:
        classifier = lr_estimator({"regParam": 0.01, "maxIter": 20}, output_column(None)).fit(
            with_label_metadata(features.transform(frame), 4))
    # Each iteration's loss was seen while the fit ran, and they are the objective history's values.
    history = classifier.summary.objectiveHistory
    assert len(progress.losses) == len(history) - 1 >= 5
    assert progress.losses == pytest.approx(history[1:], rel=1e-5)
    assert progress.iteration_times == sorted(progress.iteration_times)
    model = PipelineModel(stages=[*features.stages, classifier])
    path = fs.to_spark_uri(str(tmp_path / "lr"))
    model.write().save(path)
    loaded = PipelineModel.load(path)
    cols = ["row_id", "rawPrediction", "probability", "prediction"]
    before = model.transform(frame).select(cols)
    after = loaded.transform(frame).select(cols)
    assertDataFrameEqual(after, before, checkRowOrder=False, rtol=0, atol=0)
    assert after.filter(F.col("prediction") == F.col("label")).count() > 150  # and it did learn


@pytest.mark.slow
def test_random_forest_trains_on_150_classes_thanks_to_metadata(spark, tmp_path):
    classes = 150
    x, labels = blobs(n=2 * classes, dim=4, classes=classes, seed=2)
    rows = [(int(y), [float(v) for v in r]) for r, y in zip(x, labels)]
    frame = spark.createDataFrame(rows, "label int, features array<float>")
    features = fit_feature_model(frame)
    data = features.transform(frame).withColumn("label", F.col("label").cast("double"))
    params = rf_params(load_config().section("train.rf") | {"num_trees": 2, "max_depth": 3})
    with pytest.raises(Exception, match=r"Labels MUST be in \[0, 100\)"):  # MLlib refuses without metadata
        rf_estimator(params, output_column(None)).fit(data)
    model = rf_estimator(params, output_column(None)).fit(with_label_metadata(data, classes))
    assert model.numClasses == classes
    out = model.transform(data).select("probability").first()[0]
    assert out.size == classes
    pipeline = PipelineModel(stages=[*features.stages, model])
    path = fs.to_spark_uri(str(tmp_path / "rf"))
    pipeline.write().save(path)
    reloaded = PipelineModel.load(path).transform(frame).select("prediction")
    assertDataFrameEqual(reloaded, pipeline.transform(frame).select("prediction"), checkRowOrder=True)


# --------------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------------


def test_refuses_missing_dataset_and_missing_or_incomplete_manifest(spark, tmp_path):
    config, paths = config_for(tmp_path, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="dataset not found"):
        run_train(spark, config, paths)
    x, labels = blobs()
    data_dir = write_dataset(tmp_path, x, labels, manifest=False)
    config, paths = config_for(tmp_path, data_dir)
    with pytest.raises(DatasetError, match="no _manifest.json"):
        run_train(spark, config, paths)
    write_dataset(tmp_path, x, labels, status="writing")
    with pytest.raises(DatasetError, match="does not mark a complete dataset"):
        run_train(spark, config, paths)


def test_refuses_d_disagreeing_with_the_manifest(spark, tmp_path):
    x, labels = blobs(dim=6)
    config, paths = config_for(tmp_path, write_dataset(tmp_path, x, labels, dim=8))
    with pytest.raises(DatasetError, match="hold 6 values but the manifest says D=8"):
        run_train(spark, config, paths)


def test_refuses_a_late_row_that_breaks_k(spark, tmp_path):
    x, labels = blobs(n=240, classes=4)
    labels = labels.copy()
    labels[-1] = 7  # far beyond the rows the quick check looks at: only the full pass sees it
    config, paths = config_for(tmp_path, write_dataset(tmp_path, x, labels, classes=4))
    with pytest.raises(DatasetError, match="label 7, outside \\[0, 4\\)"):
        run_train(spark, config, paths)
    assert not fs.exists(paths.run_file("models", "lr"))


def test_warm_start_starts_the_full_fit_from_the_sample_model(spark, tmp_path):
    """Cold, L-BFGS starts from the class priors (loss log K on balanced classes); warm, its first loss is
    the sample model's loss on all rows, far lower. Both final fits see every row."""
    x, labels = blobs(n=1600, dim=8, classes=4, seed=3)
    data_dir = write_dataset(tmp_path / "d", x, labels)
    first_loss, summaries = {}, {}
    for mode, sample_rows in (("cold", "null"), ("warm", 300)):
        config, paths = config_for(tmp_path / mode, data_dir, **{"train.lr.max_iter": 2,
                                                                   "train.lr.warm_start.sample_rows": sample_rows,
                                                                   "train.lr.warm_start.max_iter": 25})
        summary = run_train(spark, config, paths)["models"]["lr"]
        assert summary["rows"] == 1600 and summary["iterations"] <= 2
        first_loss[mode], summaries[mode] = summary["objective_history"][0], summary
    assert summaries["cold"]["warm_start"] is None and "warm_start" not in summaries["cold"]["seconds"]
    warm = summaries["warm"]["warm_start"]
    assert 200 <= warm["sample_rows"] <= 420 and warm["iterations"] > 2
    assert len(warm["objective_history"]) == warm["iterations"] + 1
    assert 0 < summaries["warm"]["seconds"]["warm_start"] <= summaries["warm"]["seconds"]["fit"]
    assert first_loss["cold"] == pytest.approx(np.log(4), abs=0.01)
    assert first_loss["warm"] < 0.5 * first_loss["cold"]


def test_refuses_existing_model_unless_overwrite(spark, tmp_path):
    x, labels = blobs()
    data_dir = write_dataset(tmp_path, x, labels)
    config, paths = config_for(tmp_path, data_dir)
    fs.makedirs(paths.run_file("models", "lr"))
    fs.write_text(paths.run_file("models", "lr", "keep.txt"), "an earlier model")
    with pytest.raises(GapSparkError, match="already exists .* --overwrite"):
        run_train(spark, config, paths)
    assert fs.exists(paths.run_file("models", "lr", "keep.txt"))
    config, paths = config_for(tmp_path, data_dir, **{"train.overwrite": "true"})
    summary = run_train(spark, config, paths)
    assert not fs.exists(paths.run_file("models", "lr", "keep.txt"))
    # The summary contract.
    written = fs.read_json(paths.run_file("train_summary.json"))
    assert written == summary
    entry = written["models"]["lr"]
    assert {"params", "rows", "iterations", "objective_history", "seconds"} <= set(entry)
    assert entry["rows"] == 240 and 1 <= entry["iterations"] <= 5
    assert len(entry["objective_history"]) == entry["iterations"] + 1
    assert entry["objective_history"][-1] < entry["objective_history"][0]
    assert {"features", "fit", "save"} <= set(entry["seconds"])
    assert entry["params"]["regParam"] == config.get("train.lr.reg_param")
    assert written["dim"] == 6 and written["classes"] == 4
    assert written["dataset"]["splits"]["train"]["rows"] == 240


def test_missing_classes_warn_by_name_or_stop(spark, tmp_path, caplog):
    x, labels = blobs(classes=4)
    data_dir = write_dataset(tmp_path, x, labels, classes=6)  # classes 4 and 5 have no rows
    config, paths = config_for(tmp_path, data_dir, **{"train.missing_classes": "error"})
    with pytest.raises(DatasetError, match="no rows for 2 of 6 classes: 4, 5"):
        run_train(spark, config, paths)
    config, paths = config_for(tmp_path, data_dir, **{"train.lr.max_iter": 2})
    with caplog.at_level(logging.WARNING, logger="gap_spark.train"):
        summary = run_train(spark, config, paths)
    assert any("no rows for 2 of 6 classes: 4, 5" in r.getMessage() for r in caplog.records)
    assert summary["missing_classes"] == [4, 5]
    # The label metadata makes the model's outputs cover all K classes even so.
    model = PipelineModel.load(fs.to_spark_uri(paths.run_file("models", "lr")))
    assert model.stages[-1].numClasses == 6


def test_cli_prints_one_line_and_exits_2(spark, tmp_path, capsys):
    code = cli_main(["train", "--data", str(tmp_path / "nowhere"), "--run", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("gap-spark train: error: dataset not found")


# --------------------------------------------------------------------------------------------------
# Grid search
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_search_feeds_the_best_params_into_the_final_fit(spark, tmp_path):
    x, labels = blobs(n=320, classes=4, seed=5)
    data_dir = write_dataset(tmp_path, x, labels)
    # The configured params (pure L1 with lambda = 10: every coefficient zero) are the worst point of the
    # grid, so the final fit only gets good params if tuning feeds them in.
    config, paths = config_for(tmp_path, data_dir, **{
        "train.tune.enabled": "true", "train.tune.fraction": 1.0, "train.tune.lr_reg_param": "[0.0001, 10.0]",
        "train.tune.lr_elastic_net_param": "[0.0, 1.0]", "train.lr.reg_param": 10.0,
        "train.lr.elastic_net_param": 1.0, "train.lr.max_iter": 10})
    summary = run_train(spark, config, paths)
    table = fs.read_text(paths.run_file("tuning", "lr.csv")).splitlines()
    assert table[0] == "regParam,elasticNetParam,validation_accuracy" and len(table) == 5
    rows = [tuple(float(v) for v in line.split(",")) for line in table[1:]]
    assert rows == sorted(rows, key=lambda r: -r[2])  # best first
    worst = {(r[0], r[1]): r[2] for r in rows}[(10.0, 1.0)]
    assert worst < 0.5 < rows[0][2]
    entry = summary["models"]["lr"]
    assert (entry["params"]["regParam"], entry["params"]["elasticNetParam"]) == rows[0][:2]
    assert entry["tuning"]["best"] == {"regParam": rows[0][0], "elasticNetParam": rows[0][1]}
