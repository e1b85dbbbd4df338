"""Shared fixtures: one local[2] SparkSession for the whole run, and tiny generated data sets."""
from __future__ import annotations

import os
import sys

import pytest

from gap_spark.config import load_config
from gap_spark.paths import Paths

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
    from gap_spark.synth import run_synth

    config, paths = tiny_config_and_paths
    run_synth(None, config, paths)
    return paths.raw


@pytest.fixture(scope="session")
def tiny_dataset(spark, tiny_config_and_paths, tiny_raw):
    """The ingested Parquet dataset of ``tiny_raw``; returns its DATA_DIR."""
    from gap_spark.ingest import run_ingest

    config, paths = tiny_config_and_paths
    run_ingest(spark, config, paths)
    return paths.data
