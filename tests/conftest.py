"""Shared fixtures: one local[2] SparkSession for the whole run, tiny generated data sets, and the
factories every test module builds its inline frames, datasets and configs with."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from gap_spark.contracts.paths import Paths
from gap_spark.core.config import load_config

# Tiny sizes: enough rows per class for the models to learn, small enough for a 2-core CI run.
TINY_SYNTH = {
    "synth.train_rows": 1600, "synth.val_rows": 800, "synth.v2_rows": 800,
    "synth.dim": 16, "synth.classes": 8, "synth.superclass_size": 4, "synth.seed": 3,
    "synth.chunk_rows": 256, "synth.workers": 1,
}


def tiny_config(tmp_root, **extra):
    sets = [f"{k}={v}" for k, v in {**TINY_SYNTH, **extra}.items()]
    sets += [f"paths.raw={tmp_root}/raw", f"paths.data={tmp_root}/dataset", f"paths.run={tmp_root}/run",
             "ingest.classes=8"]
    return load_config(sets=sets)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Python workers must use this interpreter (the venv), not whatever python3 is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("gap-spark-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_config_and_paths(tiny_root):
    config = tiny_config(tiny_root)
    return config, Paths.from_config(config)


@pytest.fixture(scope="session")
def tiny_raw(tiny_config_and_paths):
    """The three generated CSVs (8 classes, 16 features, 1600/800/800 rows), written once."""
    from gap_spark.stages.synth import run_synth

    config, paths = tiny_config_and_paths
    run_synth(None, config, paths)
    return paths.raw


# The README's first command (`gap-spark pipeline --config conf/demo.yaml`) at a tiny size, all stages.
TINY_PIPELINE = [
    "synth.train_rows=1600", "synth.val_rows=800", "synth.v2_rows=800", "synth.dim=16", "synth.classes=8",
    "synth.superclass_size=4", "synth.workers=1", "train.rf.num_trees=4", "train.rf.max_depth=4",
    "train.rf.pca_k=8", "train.lr.max_iter=30", "evaluate.bootstrap_replicates=30",
    "shift.domain_sample_per_set=400", "shift.domain_pca_k=4", "explain.bootstrap_replicates=30",
    "explain.domain_max_iter=30", "explain.refit_sample_rows=800", "explain.refit_max_iter=3",
    "visualize.sample_size=300", "visualize.classes=4", "visualize.pca_dims=8"]


def tiny_pipeline_sets(root) -> list[str]:
    """``--set`` items of the tiny pipeline with its directories under ``root``."""
    return [*TINY_PIPELINE, f"paths.raw={root}/raw", f"paths.data={root}/dataset", f"paths.run={root}/runs/latest"]


@pytest.fixture(scope="session")
def tiny_pipeline(spark, tmp_path_factory):
    """`gap-spark pipeline --config conf/demo.yaml` at the tiny size, once, on the classic local[2] session.

    Returns ``root, exit code, printed summary, manifest, metrics``: the two JSON files as they were right
    after the run (a test may re-run stages in ``root`` afterwards).
    """
    import contextlib
    import io
    import types

    from gap_spark import cli
    from gap_spark.core import fs
    from tests.cluster import REPO

    root = tmp_path_factory.mktemp("pipeline")
    argv = ["pipeline", "--config", str(REPO / "conf" / "demo.yaml")]
    for item in tiny_pipeline_sets(root):
        argv += ["--set", item]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(argv)
    manifest = fs.read_json(str(root / "dataset" / "_manifest.json")) if code == 0 else {}
    metrics = fs.read_json(str(root / "runs" / "latest" / "metrics.json")) if code == 0 else {}
    return types.SimpleNamespace(root=root, code=code, printed=printed.getvalue(), manifest=manifest, metrics=metrics)


@pytest.fixture(scope="session")
def tiny_dataset(spark, tiny_config_and_paths, tiny_raw):
    """The ingested Parquet dataset of ``tiny_raw``; returns its DATA_DIR."""
    from gap_spark.stages.ingest import run_ingest

    config, paths = tiny_config_and_paths
    run_ingest(spark, config, paths)
    return paths.data


# train, evaluate and explain on the tiny dataset, small enough to stay fast.
EXPLAIN_FAST = {"train.models": "lr", "train.lr.max_iter": 30, "evaluate.bootstrap_replicates": 50,
                "explain.bootstrap_replicates": 50, "explain.domain_max_iter": 30, "explain.refit_sample_rows": 800,
                "explain.refit_max_iter": 3}


@pytest.fixture(scope="session")
def explained(spark, tiny_dataset, tmp_path_factory):
    """train and evaluate, then `gap-spark explain` (with ``--mlflow`` when the extra is installed: an
    MLflow run of its own, experiment ``gap-spark-explain``, in ``ROOT/mlflow.db``) on the tiny dataset.
    Returns ``(config, paths, metrics, explain.json's content)``."""
    import importlib.util

    from gap_spark import cli
    from gap_spark.core import fs
    from gap_spark.stages.evaluate import run_evaluate
    from gap_spark.stages.train import run_train

    root = tmp_path_factory.mktemp("explain")
    sets = {"paths.data": tiny_dataset, **EXPLAIN_FAST}
    config, paths = config_and_paths(root, **sets)
    run_train(spark, config, paths)
    metrics = run_evaluate(spark, config, paths)
    argv = ["explain"]
    if importlib.util.find_spec("mlflow") is not None:
        sets.update({"tracking.uri": f"sqlite:///{root}/mlflow.db", "tracking.experiment": "gap-spark-explain"})
        argv.append("--mlflow")
    sets.update({"paths.raw": paths.raw, "paths.run": paths.run})
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    assert cli.main(argv) == 0
    return config, paths, metrics, fs.read_json(paths.run_dir.explain)


# --------------------------------------------------------------------------------------------------
# Factories: inline frames, dataset directories and configs
# --------------------------------------------------------------------------------------------------

PREDICTION_SCHEMA = "row_id long, label int, prediction int, top5 array<int>, confidence double, true_prob double"


@pytest.fixture(scope="session")
def dataset_frame(spark) -> Callable:
    """``make(x, labels, first_id=0)``: a frame with the dataset contract's columns (row_id, path,
    label, features array<float>) from a numpy matrix and its labels."""
    from gap_spark.contracts.dataset import dataset_schema

    def make(x, labels, first_id: int = 0):
        rows = [(first_id + i, f"img/{first_id + i}.jpg", int(y), [float(v) for v in row])
                for i, (y, row) in enumerate(zip(labels, np.asarray(x, dtype=np.float32)))]
        return spark.createDataFrame(rows, dataset_schema())

    return make


@pytest.fixture(scope="session")
def prediction_frame(spark) -> Callable:
    """``make(labels, predictions, confidences=None, top5=None, true_prob=None, first_id=0)``: an inline
    frame with the prediction contract's columns (defaults: confidence 0.9, top5 = [prediction],
    true_prob 0.5)."""
    def make(labels, predictions, confidences=None, top5=None, true_prob=None, first_id: int = 0):
        n = len(labels)
        confidences = confidences if confidences is not None else [0.9] * n
        top5 = top5 if top5 is not None else [[int(p)] for p in predictions]
        true_prob = true_prob if true_prob is not None else [0.5] * n
        rows = [(first_id + i, int(labels[i]), int(predictions[i]), [int(t) for t in top5[i]],
                 float(confidences[i]), float(true_prob[i])) for i in range(n)]
        return spark.createDataFrame(rows, PREDICTION_SCHEMA)

    return make


def write_dataset_dir(data_dir, splits: Mapping[str, tuple], classes: int | None = None, dim: int | None = None,
                      status: str = "complete", manifest: bool = True) -> str:
    """A dataset directory written with pyarrow (no Spark): ``splits`` maps a split to ``(x, labels)``;
    the manifest records D, K and the rows, as ingest's would."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gap_spark.contracts.dataset import MANIFEST
    from gap_spark.core import fs

    data_dir = str(data_dir)
    rows = {}
    for split, (x, labels) in splits.items():
        x, labels = np.asarray(x, dtype=np.float32), np.asarray(labels)
        features = pa.array([list(map(float, r)) for r in x], type=pa.list_(pa.float32()))
        table = pa.table({"row_id": pa.array(np.arange(len(labels)), pa.int64()),
                          "path": pa.array([f"img/{i}.jpg" for i in range(len(labels))]),
                          "label": pa.array(labels.astype(np.int32)), "features": features})
        fs.makedirs(f"{data_dir}/split={split}")
        pq.write_table(table, f"{data_dir}/split={split}/part-00000.parquet")
        rows[split] = len(labels)
    if manifest:
        first_x, _ = next(iter(splits.values()))
        fs.write_json(f"{data_dir}/{MANIFEST}", {
            "status": status, "dim": dim if dim is not None else int(np.asarray(first_x).shape[1]),
            "classes": classes if classes is not None else int(max(int(np.max(y)) for _, y in splits.values())) + 1,
            "fingerprint": "test",
            "splits": {s: {"rows_read": n, "rows_written": n, "rows_quarantined": 0} for s, n in rows.items()}})
    return data_dir


def config_and_paths(root, **sets):
    """A config with ``paths.*`` under ``root`` and the given overrides (``**{"train.lr.max_iter": 5}``),
    and its Paths."""
    defaults = {"paths.raw": f"{root}/raw", "paths.data": f"{root}/dataset", "paths.run": f"{root}/run"}
    merged = {**defaults, **sets}
    config = load_config(sets=[f"{k}={v}" for k, v in merged.items()])
    return config, Paths.from_config(config)


# --------------------------------------------------------------------------------------------------
# One tiny pipeline run with ImageNet's 1,000 classes (shared by the class-name and tracking tests)
# --------------------------------------------------------------------------------------------------

IMAGENET_TINY = {
    "synth.train_rows": 3000, "synth.val_rows": 2000, "synth.v2_rows": 1000, "synth.dim": 8,
    "synth.classes": 1000, "synth.superclass_size": 10, "synth.seed": 5, "synth.workers": 1,
    "train.models": "lr", "train.lr.max_iter": 10, "train.lr.warm_start.sample_rows": "null",
    "evaluate.bootstrap_replicates": 20, "visualize.sample_size": 200, "visualize.methods": "[]",
    "report.top_rows": 10,
}
# Shift is left out (40 s at K = 1000, and names do not reach it); the report notes its absence.
IMAGENET_STAGES = ("synth", "ingest", "train", "evaluate", "visualize", "report")


def imagenet_run_sets(root) -> dict:
    """The settings of :func:`imagenet_run` under ``root`` (MLflow tracking on when the extra is installed)."""
    import importlib.util

    sets = dict(IMAGENET_TINY)
    if importlib.util.find_spec("mlflow") is not None:
        sets.update({"tracking.mlflow": "true", "tracking.uri": f"sqlite:///{root}/mlflow.db",
                     "tracking.experiment": "gap-spark-tests"})
    return sets


@pytest.fixture(scope="session")
def imagenet_run(spark, tmp_path_factory):
    """The pipeline on generated data with K = 1000 (3 train rows a class, D = 8; all stages but shift): its
    paths carry ImageNet's WordNet ids, so the outputs show ImageNet's names. With the mlflow extra it is
    tracked in a SQLite store under the run's root. Returns ``(config, paths, summary, log lines)``."""
    import logging

    from gap_spark.pipeline import run_pipeline

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    root = tmp_path_factory.mktemp("imagenet1k")
    config, paths = config_and_paths(root, **imagenet_run_sets(root))
    logger, handler = logging.getLogger("gap_spark"), Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        summary = run_pipeline(spark, config, paths, stages=IMAGENET_STAGES)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return config, paths, summary, handler.lines
