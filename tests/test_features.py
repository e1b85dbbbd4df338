"""The feature transform (array -> vector -> standardised -> PCA) and the label metadata."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from chispa import SchemasNotEqualError, assert_approx_df_equality, assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from gap_spark.core.config import load_config
from gap_spark.core.errors import ConfigError
from gap_spark.ops.features import (
    PCA_COL,
    SCALED_COL,
    VECTOR_COL,
    ArrayToVector,
    effective_pca_k,
    feature_stages,
    fit_feature_model,
    label_metadata,
    label_num_values,
    output_column,
    with_label_metadata,
)


@pytest.fixture(scope="module")
def small(dataset_frame):
    rng = np.random.default_rng(0)
    # Correlated columns with different scales, so standardisation and PCA have work to do.
    base = rng.normal(size=(200, 3))
    x = np.column_stack([base[:, 0] * 10 + 5, base[:, 1] * 0.1 - 2, base[:, 0] + base[:, 2], base[:, 2] * 3,
                         rng.normal(size=200)]).astype(np.float32)
    labels = rng.integers(0, 4, size=200)
    return x, labels, dataset_frame(x, labels)


def test_feature_stages_with_and_without_pca(spark):
    names = [type(s).__name__ for s in feature_stages(None)]
    assert names == ["ArrayToVector", "StandardScaler"]
    names = [type(s).__name__ for s in feature_stages(3)]
    assert names == ["ArrayToVector", "StandardScaler", "PCA"]
    assert feature_stages(3)[-1].getK() == 3
    assert output_column(None) == SCALED_COL and output_column(0) == SCALED_COL and output_column(5) == PCA_COL


def test_effective_pca_k():
    assert effective_pca_k(None, 16) is None
    assert effective_pca_k(0, 16) is None
    assert effective_pca_k(4, 16) == 4
    assert effective_pca_k(16, 16) is None  # keeps every dimension: no PCA
    assert effective_pca_k(64, 16) is None
    for key in ("train.pca_k", "train.rf.pca_k"):  # null and 0 both mean no PCA, as before the settings
        for off in ("null", 0):
            settings = load_config(sets=[f"{key}={off}"]).settings.train
            assert effective_pca_k(settings.pca_k if key == "train.pca_k" else settings.rf.pca_k, 16) is None
    # A bad value is refused when the config is loaded, naming the key.
    for bad in ("-1", "2.5", "'8'", "true"):
        with pytest.raises(ConfigError, match="train.pca_k"):
            load_config(sets=[f"train.pca_k={bad}"])
        with pytest.raises(ConfigError, match="train.rf.pca_k"):
            load_config(sets=[f"train.rf.pca_k={bad}"])


def test_array_to_vector_keeps_columns_and_values(small):
    x, _, frame = small
    out = ArrayToVector().transform(frame)
    assert out.columns == ["row_id", "path", "label", "features", VECTOR_COL]
    got = np.array([r[VECTOR_COL].toArray() for r in out.orderBy("row_id").collect()])
    np.testing.assert_array_equal(got, x.astype(np.float64))


def test_scaler_is_fitted_on_the_given_rows_only(small):
    x, _, frame = small
    model = fit_feature_model(frame.filter("row_id < 150"))
    out = model.transform(frame).orderBy("row_id").collect()
    got = np.array([r[SCALED_COL].toArray() for r in out])
    fit_rows = x[:150].astype(np.float64)
    expected = (x.astype(np.float64) - fit_rows.mean(axis=0)) / fit_rows.std(axis=0, ddof=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The held-out rows are transformed with the train statistics, so they are not exactly standard.
    assert abs(got[:150].mean()) < 1e-6 and abs(got[150:].mean()) > 1e-4


def test_pca_projects_on_leading_components(small):
    x, _, frame = small
    model = fit_feature_model(frame, pca_k=2)
    assert [type(s).__name__ for s in model.stages] == ["ArrayToVector", "StandardScalerModel", "PCAModel"]
    got = np.array([r[PCA_COL].toArray() for r in model.transform(frame).orderBy("row_id").collect()])
    assert got.shape == (200, 2)
    z = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    # Same subspace as numpy's leading right singular vectors (signs may differ).
    for j in range(2):
        proj = z @ vt[j]
        corr = np.corrcoef(proj, got[:, j])[0, 1]
        assert abs(corr) > 0.999
    # Variance captured is that of the top two singular values.
    assert np.var(got, axis=0, ddof=1).sum() == pytest.approx((s[:2] ** 2).sum() / 199, rel=1e-4)


def test_pca_sample_cap_still_gives_k_components(small):
    _, _, frame = small
    model = fit_feature_model(frame, pca_k=3, pca_max_rows=50, seed=1, train_rows=200)
    row = model.transform(frame).select(PCA_COL).first()
    assert row[0].size == 3


def test_label_metadata_marks_a_nominal_label_with_k_values(small):
    _, _, frame = small
    assert label_num_values(frame) is None
    tagged = with_label_metadata(frame, 150)
    assert label_num_values(tagged) == 150
    assert tagged.schema["label"].dataType == T.DoubleType()
    assert tagged.schema["label"].metadata == label_metadata(150)
    # The metadata survives the feature transform, so a classifier behind it still sees K.
    model = fit_feature_model(frame)
    assert label_num_values(model.transform(tagged)) == 150


def test_feature_model_round_trip(small, tmp_path):
    _, _, frame = small
    model = fit_feature_model(frame, pca_k=2)
    path = str(tmp_path / "features")
    model.write().save(path)
    loaded = PipelineModel.load(path)
    a = model.transform(frame).select("row_id", PCA_COL).orderBy("row_id").collect()
    b = loaded.transform(frame).select("row_id", PCA_COL).orderBy("row_id").collect()
    assert a == b


def test_a_model_saved_under_the_old_module_path_still_loads(small, tmp_path):
    """Models trained before the move to gap_spark.ops.features name gap_spark.features.ArrayToVector in
    their metadata; PySpark imports that name when loading, so the old path must keep resolving."""
    _, _, frame = small
    model = fit_feature_model(frame)
    path = str(tmp_path / "features")
    model.write().save(path)
    stage_dir = next(d for d in os.listdir(os.path.join(path, "stages")) if d.startswith("0_ArrayToVector"))
    meta_dir = os.path.join(path, "stages", stage_dir, "metadata")
    part = next(f for f in os.listdir(meta_dir) if f.startswith("part-"))
    with open(os.path.join(meta_dir, part), encoding="utf-8") as handle:
        meta = json.loads(handle.read())
    assert meta["class"] == "gap_spark.ops.features.ArrayToVector"
    meta["class"] = "gap_spark.features.ArrayToVector"
    with open(os.path.join(meta_dir, part), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(meta) + "\n")
    os.remove(os.path.join(meta_dir, f".{part}.crc"))  # the local checksum would refuse the edited file
    loaded = PipelineModel.load(path)
    assert type(loaded.stages[0]) is ArrayToVector
    a = model.transform(frame).select("row_id", SCALED_COL).orderBy("row_id").collect()
    assert loaded.transform(frame).select("row_id", SCALED_COL).orderBy("row_id").collect() == a


# --------------------------------------------------------------------------------------------------
# chispa: the ops on tiny inline frames
# --------------------------------------------------------------------------------------------------


def test_array_to_vector_on_an_inline_frame(spark):
    frame = spark.createDataFrame([(0, [1.0, 2.5]), (1, [-3.0, 0.0])], "row_id long, features array<float>")
    expected = spark.createDataFrame(
        [(0, [1.0, 2.5], Vectors.dense([1.0, 2.5])), (1, [-3.0, 0.0], Vectors.dense([-3.0, 0.0]))],
        T.StructType([T.StructField("row_id", T.LongType()),
                      T.StructField("features", T.ArrayType(T.FloatType())),
                      T.StructField(VECTOR_COL, VectorUDT())]))
    assert_df_equality(ArrayToVector().transform(frame), expected, ignore_nullable=True)
    renamed = ArrayToVector(inputCol="features", outputCol="v").transform(frame)
    assert_df_equality(renamed.select("row_id", "v"), expected.withColumnRenamed(VECTOR_COL, "v").select("row_id", "v"),
                       ignore_nullable=True)


def test_with_label_metadata_on_an_inline_frame(spark):
    frame = spark.createDataFrame([(0, 2), (1, 0)], "row_id long, label int")
    expected = spark.createDataFrame([(0, 2.0), (1, 0.0)], T.StructType([
        T.StructField("row_id", T.LongType()),
        T.StructField("label", T.DoubleType(), metadata=label_metadata(3))]))
    assert_df_equality(with_label_metadata(frame, 3), expected)  # values, types and the metadata
    with pytest.raises(SchemasNotEqualError):  # the metadata is compared: K=4 is not K=3
        assert_df_equality(with_label_metadata(frame, 4), expected)


def test_standardised_values_on_an_inline_frame(spark):
    frame = spark.createDataFrame([(0, [1.0]), (1, [2.0]), (2, [3.0])], "row_id long, features array<float>")
    out = fit_feature_model(frame).transform(frame).select("row_id", vector_to_array(SCALED_COL)[0].alias("z"))
    expected = spark.createDataFrame([(0, -1.0), (1, 0.0), (2, 1.0)], "row_id long, z double")  # mean 2, sd 1
    assert_approx_df_equality(out, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)
