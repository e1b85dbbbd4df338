"""evaluate on a set with no rows: one line naming the model and the split (issue 13, item 10)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from gap_spark.contracts.run import RunDir
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.stages.evaluate import run_evaluate
from tests.conftest import config_and_paths, write_dataset_dir

DIM, K = 4, 3


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    return rng.normal(size=(n, DIM)) + labels[:, None], labels


@pytest.fixture(scope="module")
def dataset_and_model(spark, tmp_path_factory):
    """A hand-written dataset (train, val, v2) and an LR fitted on its train split, saved in a run."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import SQLTransformer, VectorAssembler

    from gap_spark.contracts.dataset import read_split

    root = tmp_path_factory.mktemp("empty-eval")
    data = write_dataset_dir(root / "dataset", {"train": _rows(60, 1), "val": _rows(30, 2), "v2": _rows(30, 3)})
    select = ", ".join(f"features[{j}] AS f{j}" for j in range(DIM))
    model = Pipeline(stages=[SQLTransformer(statement=f"SELECT *, {select} FROM __THIS__"),
                             VectorAssembler(inputCols=[f"f{j}" for j in range(DIM)], outputCol="vec"),
                             LogisticRegression(featuresCol="vec", maxIter=5)]).fit(read_split(spark, data, "train"))
    return data, model


def _run_with_model(model, run: str) -> str:
    model.write().overwrite().save(fs.to_spark_uri(RunDir(run).model("lr")))
    return run


def test_a_split_whose_parts_are_gone_names_the_model_and_the_split(spark, dataset_and_model, tmp_path, capsys):
    from gap_spark.cli import main

    data, model = dataset_and_model
    gone = str(tmp_path / "dataset")
    shutil.copytree(data, gone)
    os.remove(f"{gone}/split=v2/part-00000.parquet")  # the manifest (hand-written: unversioned) still lists v2
    run = _run_with_model(model, str(tmp_path / "run"))
    config, paths = config_and_paths(str(tmp_path), **{"paths.data": gone, "paths.run": run,
                                                        "evaluate.bootstrap_replicates": 5})
    with pytest.raises(GapSparkError, match=r"model lr has no predictions on v2: the dataset's v2 split holds no "
                                            r"rows"):
        run_evaluate(spark, config, paths)
    capsys.readouterr()
    assert main(["evaluate", "--data", gone, "--run", run, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gap-spark evaluate: error: evaluate: model lr has no predictions "
                                               "on v2"), err
    assert not fs.exists(RunDir(run).metrics)


def test_an_empty_train_holdout_names_the_setting(spark, dataset_and_model, tmp_path):
    data, model = dataset_and_model
    run = _run_with_model(model, str(tmp_path / "run"))
    config, paths = config_and_paths(str(tmp_path), **{"paths.data": data, "paths.run": run,
                                                        "evaluate.bootstrap_replicates": 5,
                                                        "evaluate.holdout_fraction": 1e-12})
    with pytest.raises(GapSparkError, match=r"model lr has no predictions on train_holdout: "
                                            r"evaluate.holdout_fraction 1e-12 selects no train row"):
        run_evaluate(spark, config, paths)
