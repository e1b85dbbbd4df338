"""The train stage: the scikit-learn oracle, model round trips, K > 100 forests and every refusal."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from gap_spark.cli import main as cli_main
from gap_spark.contracts.dataset import read_manifest, read_split
from gap_spark.contracts.tables import table_csv
from gap_spark.core import fs
from gap_spark.core.config import load_config
from gap_spark.core.errors import ConfigError, DatasetError, GapSparkError
from gap_spark.core.progress import FitProgress
from gap_spark.models import MODEL_MODULES, model_spec, model_title, registered_models, selected_models
from gap_spark.models.base import FitContext, ModelSpec
from gap_spark.models.lr import lr_estimator, lr_params, warm_start_params
from gap_spark.models.rf import rf_estimator, rf_params
from gap_spark.ops.features import fit_feature_model, output_column, with_label_metadata
from gap_spark.ops.train_split import (
    auto_partitions,
    check_label_stats,
    check_sample_rows,
    describe_missing,
    hash_holdout,
    label_stats,
    storage_level,
)
from gap_spark.stages.train import run_train
from tests.conftest import config_and_paths, write_dataset_dir

# --------------------------------------------------------------------------------------------------
# Helpers: small datasets written straight to the dataset layout (so they can be made inconsistent)
# --------------------------------------------------------------------------------------------------

TRAIN_SETS = {"train.models": "[lr]", "train.lr.max_iter": 5, "train.progress_seconds": 5}


def write_dataset(root, x: np.ndarray, labels: np.ndarray, **manifest) -> str:
    """``root/dataset`` with the whole train split and 20-row select, val and v2 copies (conftest's writer)."""
    return write_dataset_dir(root / "dataset", {"train": (x, labels), "select": (x[:20], labels[:20]),
                                                 "val": (x[:20], labels[:20]), "v2": (x[:20], labels[:20])},
                             **manifest)


def config_for(root, data_dir: str, **sets):
    """A train config over ``data_dir`` writing to ``root/run`` (LR only, 5 iterations) and its Paths."""
    return config_and_paths(root, **{**TRAIN_SETS, "paths.data": data_dir, **sets})


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
    lr = lr_params(cfg.settings.train.lr)
    assert set(lr) == {"regParam", "elasticNetParam", "maxIter", "tol", "maxBlockSizeInMB"}
    assert lr["regParam"] == cfg.get("train.lr.reg_param") and isinstance(lr["maxIter"], int)
    rf = rf_params(cfg.settings.train.rf)
    assert rf["numTrees"] == cfg.get("train.rf.num_trees") and rf["featureSubsetStrategy"] == "sqrt"
    # Bad values are refused when the config is loaded, naming the key.
    with pytest.raises(ConfigError, match="elastic_net_param"):
        load_config(sets=["train.lr.elastic_net_param=1.5"])
    with pytest.raises(ConfigError, match="feature_subset_strategy"):
        load_config(sets=["train.rf.feature_subset_strategy=most"])
    with pytest.raises(ConfigError, match="subsampling_rate"):
        load_config(sets=["train.rf.subsampling_rate=0"])
    fraction = load_config(sets=["train.rf.feature_subset_strategy='0.25'"]).settings.train.rf
    assert rf_params(fraction)["featureSubsetStrategy"] == "0.25"
    assert rf_params(load_config(sets=["train.rf.checkpoint_interval=null"]).settings.train.rf)[
        "checkpointInterval"] == -1


def test_warm_start_params():
    lr = load_config().settings.train.lr
    assert set(warm_start_params(lr)) == {"sample_rows", "max_iter", "seed"}
    for off in ("null", 0):
        lr = load_config(sets=[f"train.lr.warm_start.sample_rows={off}"]).settings.train.lr
        assert warm_start_params(lr) is None
    with pytest.raises(ConfigError, match="sample_rows"):
        load_config(sets=["train.lr.warm_start.sample_rows=-5"])
    with pytest.raises(ConfigError, match="max_iter"):
        load_config(sets=["train.lr.warm_start.max_iter=0"])
    with pytest.raises(ConfigError, match="mapping"):
        load_config(sets=["train.lr.warm_start=500"])


def test_selected_models_and_storage_levels():
    assert load_config(sets=["train.models=[rf, lr, rf]"]).settings.train.models == ("rf", "lr")
    assert load_config(sets=["train.models=lr, rf"]).settings.train.models == ("lr", "rf")
    assert [spec.name for spec in selected_models(("rf", "lr"))] == ["rf", "lr"]
    with pytest.raises(ConfigError, match="unknown model 'svm' \\(choose from lr, rf, mlp\\)"):
        selected_models(load_config(sets=["train.models=[svm]"]).settings.train.models)
    with pytest.raises(ConfigError, match="empty"):
        load_config(sets=["train.models=[]"])
    assert storage_level("none") is None
    assert storage_level("DISK_ONLY").useDisk and not storage_level("DISK_ONLY").useMemory
    assert load_config(sets=["train.storage_level=none"]).settings.train.storage_level == "NONE"
    with pytest.raises(ConfigError, match="storage_level"):
        load_config(sets=["train.storage_level=MEMORY_SOMETIMES"])


def test_the_registry_names_every_model_once():
    specs = registered_models()
    assert list(specs) == list(MODEL_MODULES) == ["lr", "rf", "mlp"]
    assert all(isinstance(spec, ModelSpec) for spec in specs.values())
    assert model_spec("rf").iteration_unit == "trees" and model_spec("lr").iteration_unit == "iterations"
    assert model_title("lr") == "logistic regression" and model_title("svm") == "svm"
    settings = load_config(sets=["train.pca_k=32"]).settings.train
    assert model_spec("lr").pca_k(settings) == 32 and model_spec("rf").pca_k(settings) == settings.rf.pca_k
    assert model_spec("lr").params(settings) == lr_params(settings.lr)
    assert model_spec("rf").params(settings) == rf_params(settings.rf)
    with pytest.raises(TypeError):
        ModelSpec(name="x", title="x")  # abstract: a model must say how it trains


def test_grids_come_from_the_tune_settings(spark):
    tune = load_config(sets=["train.tune.lr_reg_param=[0.1, 1.0]", "train.tune.rf_num_trees=[3]"]).settings.train.tune
    for name, expected in (("lr", {("regParam", "elasticNetParam")}), ("rf", {("maxDepth", "numTrees")})):
        spec = model_spec(name)
        grid = spec.grid(spec.estimator(spec.params(load_config().settings.train), "f"), tune)
        assert {tuple(p.name for p in point) for point in grid} == expected
        values = {tuple(point.values()) for point in grid}
        if name == "lr":
            assert values == {(r, e) for r in (0.1, 1.0) for e in tune.lr_elastic_net_param}
        else:
            assert values == {(d, 3) for d in tune.rf_max_depth}


def test_the_forest_trains_on_few_partitions(spark):
    frame = spark.range(40).repartition(5)
    settings = load_config().settings.train
    ctx = FitContext(spark=spark, settings=settings, rows=40, checkpoint_dir="file:///tmp/unused")
    assert model_spec("rf").prepare(frame, ctx).rdd.getNumPartitions() == spark.sparkContext.defaultParallelism
    assert model_spec("lr").prepare(frame, ctx).rdd.getNumPartitions() == 5
    ctx = FitContext(spark=spark, settings=load_config(sets=["train.rf.partitions=3"]).settings.train, rows=40,
                     checkpoint_dir="file:///tmp/unused")
    assert model_spec("rf").prepare(frame, ctx).rdd.getNumPartitions() == 3


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


def test_label_stats_and_sample_checks_on_inline_frames(spark):
    frame = spark.createDataFrame([(0, [1.0, 2.0]), (0, [0.0, 1.0]), (2, [3.0, 4.0])],
                                  "label int, features array<float>")
    assert label_stats(frame) == {"rows": 3, "counts": {0: 2, 2: 1}, "min_dim": 2, "max_dim": 2}
    check_sample_rows(frame, dim=2, classes=3)
    with pytest.raises(DatasetError, match="hold 2 values but the manifest says D=3"):
        check_sample_rows(frame, dim=3, classes=3)
    with pytest.raises(DatasetError, match="label 2 lies outside \\[0, 2\\)"):
        check_sample_rows(frame, dim=2, classes=2)
    with pytest.raises(DatasetError, match="no rows"):
        check_sample_rows(frame.limit(0), dim=2, classes=3)


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
    intercept. Both then minimise the same strictly convex function, so they agree to solver tolerance.
    Compared on the selection slice (the train rows the stage held out), never on val or v2."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    reg = 0.01
    config, paths = config_for(tmp_path, tiny_dataset, **{"train.lr.reg_param": reg, "train.lr.max_iter": 300,
                                                          "train.lr.tol": 1e-10, "train.lr.check_every": 300})
    summary = run_train(spark, config, paths)
    train, select = _fit_and_select_rows(spark, tiny_dataset, config)
    x_train, y_train, _ = _xy(train)
    x_sel, y_sel, sel_ids = _xy(select)
    n = len(y_train)
    assert summary["models"]["lr"]["rows"] == n and summary["selection"]["rows"] == len(y_sel) > 0

    model = PipelineModel.load(fs.to_spark_uri(paths.run_dir.model("lr")))
    pred = model.transform(select).select("row_id", "prediction", "probability").orderBy("row_id").collect()
    assert [r["row_id"] for r in pred] == list(sel_ids)
    mllib_pred = np.array([r["prediction"] for r in pred])
    mllib_prob = np.array([r["probability"].toArray() for r in pred])

    mean, std = x_train.mean(axis=0), x_train.std(axis=0, ddof=1)  # Spark's StandardScaler: sample std

    def sklearn_probs(c: float):
        clf = SkLogisticRegression(C=c, solver="lbfgs", max_iter=5000, tol=1e-10)
        clf.fit((x_train - mean) / std, y_train)
        return clf.predict_proba((x_sel - mean) / std)

    sk_prob = sklearn_probs(1.0 / (reg * n))
    mllib_acc, sk_acc = (mllib_pred == y_sel).mean(), (sk_prob.argmax(axis=1) == y_sel).mean()
    assert 0.5 < sk_acc < 0.99  # a real problem: neither trivial nor hopeless
    assert abs(mllib_acc - sk_acc) * 100 <= 0.5
    assert summary["models"]["lr"]["selection"]["accuracy"] == pytest.approx(mllib_acc)
    # The mapping itself, not just the accuracy: probabilities agree closely with C = 1/(lambda n) and
    # clearly less with the naive C = 1/lambda.
    right = np.abs(mllib_prob - sk_prob).max()
    wrong = np.abs(mllib_prob - sklearn_probs(1.0 / reg)).max()
    assert right < 1e-3 and wrong > 10 * right


def _fit_and_select_rows(spark, data_dir: str, config):
    """The rows the stage fitted and the slice it chose on: split=select, or the fallback held out of train."""
    manifest = read_manifest(data_dir)
    train = read_split(spark, data_dir, "train", manifest)
    if "select" in manifest["splits"]:
        return train, read_split(spark, data_dir, "select", manifest)
    fallback = config.settings.train.select
    return hash_holdout(train, fallback.fallback_fraction, fallback.fallback_seed)


# --------------------------------------------------------------------------------------------------
# Round trips and K > 100
# --------------------------------------------------------------------------------------------------


def test_save_load_predict_round_trip(spark, dataset_frame, tmp_path):
    x, labels = blobs(n=200, dim=5, classes=4, seed=1)
    frame = dataset_frame(x, labels)
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
def test_random_forest_trains_on_150_classes_thanks_to_metadata(spark, dataset_frame, tmp_path):
    classes = 150
    x, labels = blobs(n=2 * classes, dim=4, classes=classes, seed=2)
    frame = dataset_frame(x, labels)
    features = fit_feature_model(frame)
    data = features.transform(frame).withColumn("label", F.col("label").cast("double"))
    params = rf_params(load_config(sets=["train.rf.num_trees=2", "train.rf.max_depth=3"]).settings.train.rf)
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
    assert not fs.exists(paths.run_dir.model("lr"))


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
    fs.makedirs(paths.run_dir.model("lr"))
    fs.write_text(fs.join(paths.run_dir.model("lr"), "keep.txt"), "an earlier model")
    with pytest.raises(GapSparkError, match="already exists .* --overwrite"):
        run_train(spark, config, paths)
    assert fs.exists(fs.join(paths.run_dir.model("lr"), "keep.txt"))
    config, paths = config_for(tmp_path, data_dir, **{"train.overwrite": "true"})
    summary = run_train(spark, config, paths)
    assert not fs.exists(fs.join(paths.run_dir.model("lr"), "keep.txt"))
    # The summary contract.
    written = fs.read_json(paths.run_dir.train_summary)
    assert written == summary
    entry = written["models"]["lr"]
    assert {"params", "rows", "iterations", "objective_history", "seconds"} <= set(entry)
    assert entry["rows"] == 240 and 1 <= entry["iterations"] <= 5
    assert len(entry["objective_history"]) == entry["iterations"] + 1
    assert entry["objective_history"][-1] < entry["objective_history"][0]
    assert {"features", "fit", "save"} <= set(entry["seconds"])
    assert entry["params"]["regParam"] == config.settings.train.lr.reg_param
    assert written["dim"] == 6 and written["classes"] == 4
    assert written["dataset"]["splits"]["train"]["rows"] == 240


def test_missing_classes_warn_by_name_or_stop(spark, tmp_path, caplog):
    x, labels = blobs(classes=4)
    data_dir = write_dataset(tmp_path, x, labels, classes=6)  # classes 4 and 5 have no rows
    config, paths = config_for(tmp_path, data_dir, **{"train.missing_classes": "error"})
    with pytest.raises(DatasetError, match="no rows for 2 of 6 classes: 4, 5"):
        run_train(spark, config, paths)
    config, paths = config_for(tmp_path, data_dir, **{"train.lr.max_iter": 2})
    with caplog.at_level(logging.WARNING, logger="gap_spark.stages.train"):
        summary = run_train(spark, config, paths)
    assert any("no rows for 2 of 6 classes: 4, 5" in r.getMessage() for r in caplog.records)
    assert summary["missing_classes"] == [4, 5]
    # The label metadata makes the model's outputs cover all K classes even so.
    model = PipelineModel.load(fs.to_spark_uri(paths.run_dir.model("lr")))
    assert model.stages[-1].numClasses == 6


def test_refuses_an_unregistered_model_before_reading_anything(spark, tmp_path):
    config, paths = config_for(tmp_path, str(tmp_path / "nowhere"), **{"train.models": "[lr, svm]"})
    with pytest.raises(ConfigError, match="unknown model 'svm' \\(choose from lr, rf, mlp\\)"):
        run_train(spark, config, paths)


def test_both_models_through_the_registry(spark, tmp_path):
    """The forest goes through the same stage as LR: its own PCA, params, extras and iteration unit."""
    x, labels = blobs(n=240, dim=6, classes=4, seed=4)
    config, paths = config_for(tmp_path, write_dataset(tmp_path, x, labels), **{
        "train.models": "[lr, rf]", "train.rf.num_trees": 3, "train.rf.max_depth": 3, "train.rf.pca_k": 4,
        "train.rf.cache_node_ids": "true", "train.rf.checkpoint_interval": 1})
    checkpoint_dir = spark.sparkContext.getCheckpointDir()
    summary = run_train(spark, config, paths)
    lr, rf = summary["models"]["lr"], summary["models"]["rf"]
    assert rf["iterations"] == 3 and rf["objective_history"] == [] and rf["total_nodes"] >= 3
    assert "total_nodes" not in lr and "warm_start" not in rf
    assert (lr["params"]["pca_k"], lr["params"]["features_col"]) == (None, "features_scaled")
    assert (rf["params"]["pca_k"], rf["params"]["features_col"]) == (4, "features_pca")
    assert rf["params"]["numTrees"] == 3 and rf["params"]["seed"] == config.settings.train.rf.seed
    assert rf["seconds"]["features"] > 0 and rf["path"] == paths.run_dir.model("rf")
    model = PipelineModel.load(fs.to_spark_uri(paths.run_dir.model("rf")))
    assert [type(s).__name__ for s in model.stages] == ["ArrayToVector", "StandardScalerModel", "PCAModel",
                                                          "RandomForestClassificationModel"]
    if checkpoint_dir is None:  # the first forest with node-id caching sets the run's checkpoint directory
        assert fs.local_path(paths.run_dir.checkpoints) in spark.sparkContext.getCheckpointDir()


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
    x_all, y_all = blobs(n=400, classes=4, seed=5)
    (x, labels), select = (x_all[:320], y_all[:320]), (x_all[320:], y_all[320:])  # select: other rows, same classes
    data_dir = write_dataset_dir(tmp_path / "dataset", {"train": (x, labels), "select": select,
                                                        "val": (x[:20], labels[:20]), "v2": (x[:20], labels[:20])})
    # The configured params (pure L1 with lambda = 10: every coefficient zero) are the worst point of the
    # grid, so the final fit only gets good params if tuning feeds them in.
    config, paths = config_for(tmp_path, data_dir, **{
        "train.tune.enabled": "true", "train.tune.fraction": 1.0, "train.tune.lr_reg_param": "[0.0001, 10.0]",
        "train.tune.lr_elastic_net_param": "[0.0, 1.0]", "train.lr.reg_param": 10.0,
        "train.lr.elastic_net_param": 1.0, "train.lr.max_iter": 10})
    summary = run_train(spark, config, paths)
    table = fs.read_text(paths.run_dir.tuning_table("lr")).splitlines()
    assert table[0] == "regParam,elasticNetParam,select_accuracy,select_log_loss,iterations,seconds"
    assert len(table) == 5
    rows = [tuple(float(v) for v in line.split(",")) for line in table[1:]]
    assert rows == sorted(rows, key=lambda r: (-r[2], r[3]))  # best first: accuracy, then log loss
    worst = {(r[0], r[1]): r[2] for r in rows}[(10.0, 1.0)]
    assert worst < 0.5 < rows[0][2]
    entry = summary["models"]["lr"]
    assert (entry["params"]["regParam"], entry["params"]["elasticNetParam"]) == rows[0][:2]
    assert entry["tuning"]["best"] == {"regParam": rows[0][0], "elasticNetParam": rows[0][1]}
    assert entry["tuning"]["best_select_accuracy"] == rows[0][2] == pytest.approx(entry["selection"]["accuracy"])
