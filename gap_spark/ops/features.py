"""The feature transform saved inside every model: array<float> -> vector -> standardised -> (PCA).

The stages are ``pyspark.ml`` stages (:class:`ArrayToVector`, ``StandardScaler``, ``PCA``), so a saved
``PipelineModel`` applies exactly the transform that training used. Standardisation (and PCA, when asked
for) is fitted on the train split only.

Label metadata: tree learners in MLlib read the number of classes from the label column's ML attribute
and, without it, refuse labels of 100 and above; :func:`with_label_metadata` attaches
a nominal attribute with ``num_vals = K`` so both random forests and logistic regression size their
outputs to all K classes, even when a class happens to be missing from the rows they see.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.ml._typing import PipelineStage
    from pyspark.ml.feature import PCA, StandardScaler
    from pyspark.sql import DataFrame

__all__ = [
    "ARRAY_COL", "LABEL_COL", "PCA_COL", "SCALED_COL", "VECTOR_COL", "ArrayToVector", "effective_pca_k",
    "feature_stages", "fit_feature_model", "label_metadata", "label_num_values", "output_column", "pca_stage",
    "scaler_stage", "vector_stage", "with_label_metadata",
]

ARRAY_COL = "features"
VECTOR_COL = "features_vec"
SCALED_COL = "features_scaled"
PCA_COL = "features_pca"
LABEL_COL = "label"


class ArrayToVector(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Add ``outputCol`` = ``pyspark.ml.functions.array_to_vector(inputCol)``, keeping every column.

    ``array_to_vector`` is a JVM function, not a SQL one, so a SQLTransformer cannot name it; this stage
    is the saved, reloadable equivalent. It runs in the JVM (no Python UDF). A pipeline holding it is
    saved by PySpark's Python pipeline writer, which records this class's qualified name
    (``gap_spark.ops.features.ArrayToVector``) and imports it again when the model is loaded.
    """

    _input_kwargs: dict[str, Any]  # set by keyword_only

    @keyword_only
    def __init__(self, *, inputCol: str = ARRAY_COL, outputCol: str = VECTOR_COL):
        super().__init__()
        self._setDefault(inputCol=ARRAY_COL, outputCol=VECTOR_COL)
        self._set(**self._input_kwargs)

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        return dataset.withColumn(self.getOutputCol(), array_to_vector(dataset[self.getInputCol()]))


def output_column(pca_k: int | None) -> str:
    """The name of the column the classifier reads, for a given PCA setting.

    Parameters
    ----------
    pca_k : int or None
        Number of principal components, or None for no PCA.

    Returns
    -------
    str
        ``features_pca`` with PCA, else ``features_scaled``.
    """
    return PCA_COL if pca_k else SCALED_COL


def vector_stage() -> ArrayToVector:
    """The stage turning the ``features`` array<float> column into an ML vector column.

    Returns
    -------
    ArrayToVector
        Adds ``features_vec`` (dense ``VectorUDT``) and keeps every other column.
    """
    return ArrayToVector()


def scaler_stage() -> "StandardScaler":
    """StandardScaler to zero mean and unit (sample) standard deviation, fitted on train only.

    Returns
    -------
    pyspark.ml.feature.StandardScaler
        Reads ``features_vec`` and writes ``features_scaled``.
    """
    from pyspark.ml.feature import StandardScaler

    return StandardScaler(inputCol=VECTOR_COL, outputCol=SCALED_COL, withMean=True, withStd=True)


def pca_stage(k: int) -> "PCA":
    """PCA of the standardised features down to ``k`` components.

    Parameters
    ----------
    k : int
        Number of components (at least 1).

    Returns
    -------
    pyspark.ml.feature.PCA
        Reads ``features_scaled`` and writes ``features_pca``.
    """
    from pyspark.ml.feature import PCA

    return PCA(k=int(k), inputCol=SCALED_COL, outputCol=PCA_COL)


def feature_stages(pca_k: int | None) -> list["PipelineStage"]:
    """The unfitted feature stages: to vector, standardise, and optionally PCA.

    Parameters
    ----------
    pca_k : int or None
        Number of principal components; None or 0 leaves PCA out.

    Returns
    -------
    list of PipelineStage
        Stages for a ``pyspark.ml.Pipeline``; the classifier reads :func:`output_column`.
    """
    stages: list[PipelineStage] = [vector_stage(), scaler_stage()]
    if pca_k:
        stages.append(pca_stage(pca_k))
    return stages


def effective_pca_k(pca_k: int | None, dim: int) -> int | None:
    """The number of principal components to use for a configured ``pca_k`` and dimension D.

    None/0 mean no PCA; so does a k of D or more, which would keep every dimension. That lets the same
    config run on small test data (D=16) and on the real features (D=1024). The value itself is checked
    when the config is loaded (:mod:`gap_spark.core.settings`).

    Parameters
    ----------
    pca_k : int or None
        The configured number of components.
    dim : int
        The feature dimension D.

    Returns
    -------
    int or None
        The number of components, or None for no PCA.
    """
    if not pca_k or pca_k >= dim:
        return None
    return pca_k


def fit_feature_model(train: "DataFrame", pca_k: int | None = None, pca_max_rows: int | None = None,
                      seed: int = 0, train_rows: int | None = None) -> "PipelineModel":
    """Fit the feature stages on the training frame.

    The scaler sees every training row (one pass). PCA, when asked for, is fitted on a random sample of
    at most ``pca_max_rows`` rows: a D x D covariance is statistically settled long before 1.28M rows, and
    MLlib's covariance is a level-2 BLAS pass that costs minutes at full scale.

    Parameters
    ----------
    train : DataFrame
        Training rows with the ``features`` array<float> column.
    pca_k : int or None
        Number of principal components, or None for no PCA.
    pca_max_rows : int or None
        Upper bound on the rows PCA is fitted on; None uses them all.
    seed : int
        Seed of the PCA sample.
    train_rows : int or None
        Row count of ``train`` when already known (saves a count).

    Returns
    -------
    PipelineModel
        The fitted feature transform.
    """
    from pyspark.ml import Pipeline, PipelineModel

    base = Pipeline(stages=[vector_stage(), scaler_stage()]).fit(train)
    if not pca_k:
        return base
    scaled = base.transform(train)
    if pca_max_rows:
        rows = train_rows if train_rows is not None else train.count()
        if rows > pca_max_rows:
            scaled = scaled.sample(withReplacement=False, fraction=min(1.0, 1.1 * pca_max_rows / rows), seed=seed)
    pca_model = pca_stage(pca_k).fit(scaled)
    return PipelineModel(stages=[*base.stages, pca_model])


def label_metadata(num_classes: int, label_col: str = LABEL_COL) -> dict[str, Any]:
    """The ML attribute metadata of a nominal label with ``num_classes`` values.

    Parameters
    ----------
    num_classes : int
        K, the number of classes.
    label_col : str
        The attribute's name.

    Returns
    -------
    dict
        ``{"ml_attr": {"type": "nominal", "num_vals": K, "name": label_col}}``.
    """
    return {"ml_attr": {"type": "nominal", "num_vals": int(num_classes), "name": label_col}}


def with_label_metadata(frame: "DataFrame", num_classes: int, label_col: str = LABEL_COL) -> "DataFrame":
    """The frame with its label column cast to double and tagged as nominal with K values.

    Parameters
    ----------
    frame : DataFrame
        A frame with an integer label column.
    num_classes : int
        K; labels must lie in ``[0, K)``.
    label_col : str
        The label column.

    Returns
    -------
    DataFrame
        The same rows; ``label_col`` is a double carrying ``num_vals = K``.
    """
    from pyspark.sql import functions as F

    # withMetadata, not alias(metadata=...): Spark Connect drops an alias's metadata inside withColumn.
    return (frame.withColumn(label_col, F.col(label_col).cast("double"))
            .withMetadata(label_col, label_metadata(num_classes, label_col)))


def label_num_values(frame: "DataFrame", label_col: str = LABEL_COL) -> int | None:
    """The ``num_vals`` recorded on a label column, or None when it carries none.

    Parameters
    ----------
    frame : DataFrame
        Any frame with ``label_col``.
    label_col : str
        The label column.

    Returns
    -------
    int or None
    """
    meta = frame.schema[label_col].metadata or {}
    value = (meta.get("ml_attr") or {}).get("num_vals")
    return int(value) if value is not None else None
