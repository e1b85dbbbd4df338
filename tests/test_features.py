"""The feature transform (array -> vector -> standardised -> PCA) and the label metadata."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import types as T

from gap_spark.core.errors import ConfigError
from gap_spark.features import (
    PCA_COL,
    SCALED_COL,
    VECTOR_COL,
    ArrayToVector,
    feature_stages,
    fit_feature_model,
    label_metadata,
    label_num_values,
    output_column,
    validate_pca_k,
    with_label_metadata,
)

SCHEMA = T.StructType([
    T.StructField("row_id", T.LongType(), False),
    T.StructField("label", T.IntegerType(), False),
    T.StructField("features", T.ArrayType(T.FloatType(), containsNull=False), False),
])


def _frame(spark, x: np.ndarray, labels: np.ndarray):
    rows = [(i, int(y), [float(v) for v in row]) for i, (row, y) in enumerate(zip(x, labels))]
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def small(spark):
    rng = np.random.default_rng(0)
    # Correlated columns with different scales, so standardisation and PCA have work to do.
    base = rng.normal(size=(200, 3))
    x = np.column_stack([base[:, 0] * 10 + 5, base[:, 1] * 0.1 - 2, base[:, 0] + base[:, 2], base[:, 2] * 3,
                         rng.normal(size=200)]).astype(np.float32)
    labels = rng.integers(0, 4, size=200)
    return x, labels, _frame(spark, x, labels)


def test_feature_stages_with_and_without_pca(spark):
    names = [type(s).__name__ for s in feature_stages(None)]
    assert names == ["ArrayToVector", "StandardScaler"]
    names = [type(s).__name__ for s in feature_stages(3)]
    assert names == ["ArrayToVector", "StandardScaler", "PCA"]
    assert feature_stages(3)[-1].getK() == 3
    assert output_column(None) == SCALED_COL and output_column(0) == SCALED_COL and output_column(5) == PCA_COL


def test_validate_pca_k():
    assert validate_pca_k(None, 16, "train.pca_k") is None
    assert validate_pca_k(0, 16, "train.pca_k") is None
    assert validate_pca_k(4, 16, "train.pca_k") == 4
    assert validate_pca_k(16, 16, "train.pca_k") is None  # keeps every dimension: no PCA
    assert validate_pca_k(64, 16, "train.pca_k") is None
    for bad in (-1, 2.5, "8", True):
        with pytest.raises(ConfigError, match="train.pca_k"):
            validate_pca_k(bad, 16, "train.pca_k")


def test_array_to_vector_keeps_columns_and_values(small):
    x, _, frame = small
    out = ArrayToVector().transform(frame)
    assert out.columns == ["row_id", "label", "features", VECTOR_COL]
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
