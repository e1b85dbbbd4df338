"""Training-side mitigations: a saved logistic regression refitted with row weights on a sample of train.

- **Importance-weighted**: each train row weighs the density ratio ``p(v2 | x) / p(val | x)`` from the
  val-vs-v2 classifier on the features (:func:`~gap_spark.ops.density.mean_logit` of its fold models).
  val is the reference because it is a sample of train's process (only its class mix differs, which the
  class-balanced variant addresses), its classifier is already fitted on every val and v2 row, and a
  train-vs-v2 classifier would cost a fit on a million rows against ten thousand. The model's own scores
  are not used here: on train rows they are in-sample, so more confident than on val or v2.
- **Class-balanced**: each row weighs ``n / (K' n_c)`` (K' classes present), so every class carries
  the same total weight.

A full refit at 1.28M x 1024 x 1000 takes about 17 minutes on 2 cores, so "before" and "after" are fitted
the same way: from the saved model's coefficients (MLlib's ``setInitialModel``), ``max_iter`` L-BFGS
iterations on the same stratified sample of train, without and with weights. Their difference is the
weights' effect alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gap_spark.core.session import is_connect
from gap_spark.ops.features import with_label_metadata
from gap_spark.ops.frames import label_counts, proportional_quotas, stratified_sample

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import DataFrame

__all__ = ["class_balanced_weights", "refit_classifier", "train_sample"]

WEIGHT_COL = "weight"


def train_sample(train: "DataFrame", rows: int, seed: int) -> "DataFrame":
    """About ``rows`` rows of train, in proportion to its classes (exact quotas, hash-chosen).

    Returns
    -------
    DataFrame
        ``row_id, label, features``.
    """
    counts = label_counts(train)
    quotas = proportional_quotas(counts, rows)
    return stratified_sample(train, counts, {"picked": quotas}, seed).select("row_id", "label", "features")


def class_balanced_weights(sample: "DataFrame") -> "DataFrame":
    """``sample`` with ``weight = n / (K' n_c)``: every class present carries weight ``n / K'``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    everything = Window.partitionBy()
    per_class = sample.groupBy("label").agg(F.count(F.lit(1)).alias("_nc"))
    per_class = (per_class.withColumn("_n", F.sum("_nc").over(everything))
                 .withColumn("_k", F.count(F.lit(1)).over(everything)))
    weights = per_class.select("label", (F.col("_n") / (F.col("_k") * F.col("_nc"))).alias(WEIGHT_COL))
    return sample.join(F.broadcast(weights), "label")


def refit_classifier(saved: "PipelineModel", sample: "DataFrame", estimator: "LogisticRegression",
                     classes: int, weight_col: str | None) -> "PipelineModel":
    """The saved pipeline with its logistic regression refitted on ``sample``, starting from its coefficients.

    Parameters
    ----------
    saved : PipelineModel
        Feature stages, then a ``LogisticRegressionModel``.
    sample : DataFrame
        ``label, features`` (and ``weight_col``).
    estimator : LogisticRegression
        Configured as the model was trained (its params, the iterations to run), reading the classifier's
        features column.
    classes : int
        K (the label metadata, so the coefficients keep K rows).
    weight_col : str or None
        The row weights; None fits unweighted.

    Returns
    -------
    PipelineModel
        The same feature stages, the refitted classifier.

    Raises
    ------
    ValueError
        When the pipeline does not end in a logistic regression, or the session has no JVM.
    """
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.sql import functions as F

    classifier = saved.stages[-1]
    if not isinstance(classifier, LogisticRegressionModel):
        raise ValueError(f"only a logistic regression can be refitted, not {type(classifier).__name__}")
    if is_connect(sample.sparkSession):  # Connect's estimators are not JVM objects: no setInitialModel
        raise ValueError("refitting from the saved coefficients needs a classic (JVM) session")
    features = PipelineModel(stages=saved.stages[:-1])
    columns = ["label", classifier.getFeaturesCol(), *([weight_col] if weight_col else [])]
    data = features.transform(with_label_metadata(sample.withColumn("label", F.col("label").cast("double")), classes))
    if weight_col:
        estimator = estimator.setWeightCol(weight_col)
    # As models.lr's warm start: MLlib's setInitialModel is public in the JVM, not wrapped in Python.
    estimator._java_obj.setInitialModel(classifier._java_obj)  # type: ignore[union-attr]  # noqa: SLF001
    fitted = estimator.fit(data.select(*columns))
    return PipelineModel(stages=[*saved.stages[:-1], fitted])
