"""Random forest (MLlib RandomForestClassifier) on PCA-reduced inputs.

Where the time goes: the per-node class histograms (K x bins x features-per-node doubles per node, per
partition) dominate, not the rows; hence PCA inputs, sqrt features per node, 16 bins and one partition
per core. The measured table is in defaults.yaml next to the ``train.rf`` keys.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gap_spark.core.progress import FitProgress
from gap_spark.core.session import default_parallelism, ensure_checkpoint_dir, num_partitions
from gap_spark.models.base import FitContext, FitResult, ModelSpec

if TYPE_CHECKING:
    from pyspark.ml import Estimator
    from pyspark.ml.classification import RandomForestClassificationModel, RandomForestClassifier
    from pyspark.ml.param import ParamMap
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import RFSettings, TrainSettings, TuneSettings

__all__ = ["SPEC", "RandomForestSpec", "fit_rf", "rf_estimator", "rf_params"]


def rf_params(rf: "RFSettings") -> dict[str, Any]:
    """MLlib ``RandomForestClassifier`` parameters from the ``train.rf`` settings.

    Parameters
    ----------
    rf : RFSettings
        ``config.settings.train.rf``.

    Returns
    -------
    dict
        ``numTrees``, ``maxDepth``, ``maxBins``, ``featureSubsetStrategy``, ``subsamplingRate``,
        ``maxMemoryInMB``, ``checkpointInterval``, ``cacheNodeIds``, ``minInstancesPerNode``, ``seed``.
    """
    return {
        "numTrees": rf.num_trees,
        "maxDepth": rf.max_depth,
        "maxBins": rf.max_bins,
        "featureSubsetStrategy": str(rf.feature_subset_strategy),
        "subsamplingRate": rf.subsampling_rate,
        "maxMemoryInMB": rf.max_memory_mb,
        "checkpointInterval": rf.checkpoint_interval if rf.checkpoint_interval is not None else -1,
        "cacheNodeIds": rf.cache_node_ids,
        "minInstancesPerNode": rf.min_instances_per_node,
        "seed": rf.seed,
    }


def rf_estimator(params: dict[str, Any], features_col: str) -> "RandomForestClassifier":
    """A ``RandomForestClassifier`` (Gini impurity) over the (PCA-reduced) features.

    Parameters
    ----------
    params : dict
        From :func:`rf_params` (possibly updated by tuning).
    features_col : str
        The vector column to read.

    Returns
    -------
    pyspark.ml.classification.RandomForestClassifier
    """
    from pyspark.ml.classification import RandomForestClassifier

    return RandomForestClassifier(featuresCol=features_col, labelCol="label", impurity="gini", **params)


def fit_rf(spark: "SparkSession", frame: "DataFrame", params: dict[str, Any], features_col: str,
           heartbeat_s: float = 60.0) -> "RandomForestClassificationModel":
    """Fit the random forest with a heartbeat of Spark's task progress.

    Parameters
    ----------
    spark : SparkSession
    frame : DataFrame
        Label (with its metadata) and the features column.
    params : dict
        From :func:`rf_params`.
    features_col : str
    heartbeat_s : float
        Seconds without news after which task progress is logged.

    Returns
    -------
    pyspark.ml.classification.RandomForestClassificationModel
    """
    estimator = rf_estimator(params, features_col)
    with FitProgress(spark, "rf", heartbeat_s, track_lbfgs=False):
        return estimator.fit(frame)


class RandomForestSpec(ModelSpec):
    """The forest on ``train.rf.pca_k`` principal components, on few partitions, checkpointing when asked."""

    iteration_unit = "trees"
    pca_key = "train.rf.pca_k"

    def params(self, settings: "TrainSettings") -> dict[str, Any]:
        return rf_params(settings.rf)

    def pca_k(self, settings: "TrainSettings") -> int | None:
        return settings.rf.pca_k

    def estimator(self, params: dict[str, Any], features_col: str) -> "Estimator[Any]":
        return rf_estimator(params, features_col)

    def grid(self, estimator: "Estimator[Any]", tune: "TuneSettings") -> list["ParamMap"]:
        from pyspark.ml.tuning import ParamGridBuilder

        return (ParamGridBuilder()
                .addGrid(estimator.getParam("maxDepth"), list(tune.rf_max_depth))
                .addGrid(estimator.getParam("numTrees"), list(tune.rf_num_trees))
                .build())

    def prepare(self, frame: "DataFrame", ctx: FitContext) -> "DataFrame":
        """At most ``train.rf.partitions`` (default: the parallelism) partitions.

        Every partition emits the per-node statistics (K x bins x features): fewer is cheaper.
        """
        partitions = ctx.settings.rf.partitions or default_parallelism(ctx.spark)
        if num_partitions(frame) > partitions:
            frame = frame.coalesce(int(partitions))
        return frame

    def fit(self, frame: "DataFrame", params: dict[str, Any], features_col: str, ctx: FitContext) -> FitResult:
        if params["cacheNodeIds"] and params["checkpointInterval"] > 0:
            ensure_checkpoint_dir(ctx.spark, ctx.checkpoint_dir)
        model = fit_rf(ctx.spark, frame, params, features_col, ctx.heartbeat_s)
        return FitResult(classifier=model, iterations=int(model.getNumTrees),
                         extras={"total_nodes": int(model.totalNumNodes)})


SPEC = RandomForestSpec(name="rf", title="random forest")
