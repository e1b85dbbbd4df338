"""Evaluate every trained model on val and V2, and put a bootstrap interval on the gap between them.

What is computed, per model and per set (val, v2, and a slice of train when
``evaluate.holdout_fraction`` > 0):

- accuracy, weighted-F1 and log loss with ``MulticlassClassificationEvaluator``;
- top-5 accuracy, macro-F1, expected calibration error (ECE, ``evaluate.ece_bins`` equal-width
  confidence bins), mean confidence and the confident / unconfident accuracy split with Spark
  aggregations;
- the gap (val minus v2) of accuracy, macro-F1 and ECE with a percentile bootstrap interval. Each row
  gets a Poisson(1) weight per replicate, drawn from a hash of ``(seed, set, row_id, replicate)``, so
  all replicates are aggregated in one pass and the result does not depend on partitioning;
- where the gap comes from: a per-class table and the class pairs most confused on each set and
  whose confusion grows most on V2.

Only aggregates reach the driver: totals, per-bin and per-class counts, at most ``3 x
top_confused_pairs`` pairs and the two ends of each interval. The transformations are plain
``DataFrame -> DataFrame`` (or ``DataFrame -> small dict``) functions; :func:`run_evaluate` does the
reading and writing.

Outputs (the run-directory contract in DESIGN.md): ``RUN_DIR/metrics.json``,
``RUN_DIR/predictions/<model>/<set>/`` (Parquet), ``RUN_DIR/per_class/<model>/`` (Parquet) and
``RUN_DIR/per_class/<model>.csv``, ``RUN_DIR/confused_pairs/<model>.csv``.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from gap_spark.contracts.dataset import manifest_summary, read_manifest, read_split
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError, GapSparkError

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

EVAL_SETS = ("val", "v2")
HOLDOUT_SET = "train_holdout"
TOP_K = 5
# MulticlassClassificationEvaluator's default clipping of the true-class probability in log loss.
LOG_LOSS_EPS = 1e-15
PREDICTION_COLUMNS = ("row_id", "label", "prediction", "top5", "confidence", "true_prob")
PER_CLASS_COLUMNS = ("label", "val_n", "val_correct", "val_accuracy", "v2_n", "v2_correct", "v2_accuracy",
                     "drop")
PAIR_COLUMNS = ("true_label", "predicted_label", "val_count", "val_rate", "v2_count", "v2_rate", "growth")
# Independent bootstrap streams per set, so val and v2 rows with equal row_ids get unrelated weights.
STREAM_IDS = {"val": 1, "v2": 2, HOLDOUT_SET: 3}
# Largest Poisson(1) draw represented; P(X > 20) is below 1e-19, far under double resolution.
_POISSON_MAX = 20


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluateSettings:
    """The validated ``evaluate`` section of the config."""

    bootstrap_replicates: int
    seed: int
    ece_bins: int
    confidence_threshold: float
    top_confused_pairs: int
    holdout_fraction: float

    @classmethod
    def from_config(cls, config: "Config") -> "EvaluateSettings":
        """Read and check ``config['evaluate']``.

        Parameters
        ----------
        config : Config
            The pipeline configuration.

        Returns
        -------
        EvaluateSettings

        Raises
        ------
        ConfigError
            When a value has the wrong type or lies outside its range.
        """
        s = config.section("evaluate")

        def integer(key: str, low: int) -> int:
            value = s[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"evaluate.{key} must be an integer of at least {low}, got {value!r}")
            return int(value)

        def number(key: str, low: float, high: float, high_open: bool) -> float:
            value = s[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"evaluate.{key} must be a number, got {value!r}")
            value = float(value)
            if not (low <= value <= high) or (high_open and value >= high):
                bracket = ")" if high_open else "]"
                raise ConfigError(f"evaluate.{key} must lie in [{low}, {high}{bracket}, got {value}")
            return value

        return cls(bootstrap_replicates=integer("bootstrap_replicates", 1),
                   seed=integer("seed", 0),
                   ece_bins=integer("ece_bins", 1),
                   confidence_threshold=number("confidence_threshold", 0.0, 1.0, False),
                   top_confused_pairs=integer("top_confused_pairs", 1),
                   holdout_fraction=number("holdout_fraction", 0.0, 1.0, True))


# --------------------------------------------------------------------------------------------------
# Models: loading and checking them against the dataset
# --------------------------------------------------------------------------------------------------

def models_dir(run_dir: str) -> str:
    """``RUN_DIR/models``."""
    return fs.join(run_dir, "models")


def list_models(run_dir: str) -> list[str]:
    """Names of the saved models under ``RUN_DIR/models/`` (directories holding a ``metadata`` folder).

    Parameters
    ----------
    run_dir : str
        The run directory (path or URI).

    Returns
    -------
    list of str
        Sorted model names; empty when there are none.
    """
    root = models_dir(run_dir)
    if not fs.is_dir(root):
        return []
    names = []
    for name in fs.list_dir(root):
        if name.startswith((".", "_")):
            continue
        if fs.exists(fs.join(root, name, "metadata")):
            names.append(name)
        else:
            log.warning("evaluate: %s is not a saved model (no metadata/), skipping it", fs.join(root, name))
    return names


def load_models(run_dir: str) -> dict[str, "PipelineModel"]:
    """Every saved ``PipelineModel`` of a run, by name.

    Raises
    ------
    GapSparkError
        When the run holds no model, or a model directory cannot be read as a PipelineModel.
    """
    from pyspark.ml import PipelineModel

    names = list_models(run_dir)
    if not names:
        raise GapSparkError(f"run {run_dir} has no models under {models_dir(run_dir)} "
                            "(run `gap-spark train` first)")
    models = {}
    for name in names:
        path = fs.join(models_dir(run_dir), name)
        try:
            models[name] = PipelineModel.load(fs.to_spark_uri(path))
        except Exception as exc:  # noqa: BLE001 - a half-written or foreign directory is a user problem, not a bug
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GapSparkError(f"model '{name}' at {path} cannot be loaded as a PipelineModel: "
                                f"{first_line}") from None
    return models


def _flat_stages(model: Any) -> list[Any]:
    stages = []
    for stage in getattr(model, "stages", [model]):
        stages.extend(_flat_stages(stage) if hasattr(stage, "stages") else [stage])
    return stages


def model_num_classes(model: "PipelineModel") -> int:
    """K: the number of classes the model's last stage predicts (size of its probability vector).

    Raises
    ------
    GapSparkError
        When the last stage is not a classifier.
    """
    last = _flat_stages(model)[-1]
    k = getattr(last, "numClasses", None)
    if k is None:
        raise GapSparkError(f"the model's last stage ({type(last).__name__}) is not a classifier")
    return int(k)


def model_input_dim(model: "PipelineModel") -> int | None:
    """D: the length of the feature vector the model expects, from its first stage that knows it.

    Feature stages before it (array-to-vector conversion, SQL) keep the dimension, so the first of
    StandardScaler (length of ``std``), PCA (rows of ``pc``), MinMax/MaxAbs scalers, VectorSizeHint
    or the classifier (``numFeatures``) gives the input D. None when no stage records it.
    """
    for stage in _flat_stages(model):
        name = type(stage).__name__
        try:
            if name == "StandardScalerModel":
                return len(stage.std)
            if name == "PCAModel":
                return int(stage.pc.numRows)
            if name == "MinMaxScalerModel":
                return len(stage.originalMin)
            if name == "MaxAbsScalerModel":
                return len(stage.maxAbs)
            if name == "VectorSizeHint":
                return int(stage.getSize())
        except Exception:  # noqa: BLE001 - an unreadable attribute just means "not known here"
            continue
        if hasattr(stage, "numFeatures") and hasattr(stage, "numClasses"):
            return int(stage.numFeatures)
    return None


def check_model_matches_dataset(name: str, model: "PipelineModel", manifest: dict) -> tuple[int, int | None]:
    """Refuse a model whose K or D differs from the dataset's manifest.

    Returns
    -------
    (int, int or None)
        The model's K and D.

    Raises
    ------
    GapSparkError
        When K (probability vector size) or D (expected feature length) disagree with the manifest.
    """
    k = model_num_classes(model)
    d = model_input_dim(model)
    data_k, data_d = manifest.get("classes"), manifest.get("dim")
    if data_k is not None and int(data_k) != k:
        raise GapSparkError(f"model '{name}' predicts K={k} classes but the dataset has K={data_k}; "
                            "train it again on this dataset")
    if d is not None and data_d is not None and int(data_d) != d:
        raise GapSparkError(f"model '{name}' expects D={d} features but the dataset has D={data_d}; "
                            "train it again on this dataset")
    return k, d


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------

def top_k_indices(frame: "DataFrame", array_col: str, k: int, out_col: str) -> "DataFrame":
    """Add ``out_col``: the indices of the ``k`` largest values of ``array_col``, largest first.

    Ties go to the lower index, exactly like ``np.argsort(-p, kind="stable")[:k]``. Each round takes
    ``array_position(array_max)`` and cuts that element out (values and original indices together),
    in separate projections so the plan stays linear in ``k``. Only JVM array functions run: a
    sort of the whole K-array, or shipping it to Python, measured several times slower for K=1000.

    Parameters
    ----------
    frame : DataFrame
        Has the ``array<double>`` column ``array_col``.
    array_col : str
    k : int
        How many indices; arrays shorter than ``k`` give all their indices.
    out_col : str
        Name of the new ``array<int>`` column.

    Returns
    -------
    DataFrame
        ``frame`` with ``out_col`` added.
    """
    values, index, picks, pos = "__topk_values", "__topk_index", "__topk_picks", "__topk_pos"
    cur = frame.withColumn(values, F.col(array_col)) \
        .withColumn(index, F.sequence(F.lit(0), F.size(array_col) - 1)) \
        .withColumn(picks, F.array().cast("array<int>"))
    for round_no in range(k):
        cur = cur.withColumn(pos, F.coalesce(F.array_position(values, F.array_max(values)), F.lit(0)).cast("int"))
        found = F.col(pos) > 0
        cur = cur.withColumn(picks, F.when(found, F.concat(picks, F.array(F.element_at(index, F.col(pos)))))
                             .otherwise(F.col(picks)))
        if round_no < k - 1:
            def cut(name: str, found: Column = found) -> Column:
                return F.when(found, F.concat(F.slice(name, 1, F.col(pos) - 1),
                                              F.slice(name, F.col(pos) + 1, F.greatest(F.size(name), F.lit(1)))))\
                    .otherwise(F.col(name))
            cur = cur.withColumn(values, cut(values)).withColumn(index, cut(index))
    return cur.withColumnRenamed(picks, out_col).drop(values, index, pos)


def predictions_frame(model_output: "DataFrame", top_k: int = TOP_K) -> "DataFrame":
    """The saved prediction columns from a model's output.

    Parameters
    ----------
    model_output : DataFrame
        Output of ``PipelineModel.transform``: ``row_id``, ``label``, ``prediction`` (double) and
        ``probability`` (vector of length K).
    top_k : int
        Length of the ``top5`` column (5 by the contract).

    Returns
    -------
    DataFrame
        ``row_id long, label int, prediction int, top5 array<int>`` (class indices by decreasing
        probability, ties to the lower index), ``confidence double`` (the largest probability) and
        ``true_prob double`` (the probability given to the true label; 0 when the label is outside
        the vector).
    """
    from pyspark.ml.functions import vector_to_array

    probs = "__probs"
    staged = model_output.select(
        F.col("row_id").cast("long").alias("row_id"),
        F.col("label").cast("int").alias("label"),
        F.col("prediction").cast("int").alias("prediction"),
        vector_to_array(F.col("probability"), "float64").alias(probs),
    )
    ranked = top_k_indices(staged, probs, top_k, "top5")
    return ranked.select(
        "row_id", "label", "prediction", "top5",
        F.array_max(probs).cast("double").alias("confidence"),
        F.coalesce(F.when(F.col("label") >= 0, F.try_element_at(F.col(probs), F.col("label") + 1)),
                   F.lit(0.0)).cast("double").alias("true_prob"),
    )


def confidence_bin(confidence: Column, bins: int) -> Column:
    """Equal-width bin of a confidence in [0, 1]: ``min(floor(c * bins), bins - 1)``.

    Bin ``b`` holds ``b / bins <= c < (b + 1) / bins``; the last bin also holds ``c = 1``.
    """
    return F.least(F.floor(confidence * F.lit(float(bins))), F.lit(bins - 1)).cast("int")


# --------------------------------------------------------------------------------------------------
# Metrics of one set
# --------------------------------------------------------------------------------------------------

def evaluator_metrics(pred_df: "DataFrame") -> dict[str, float]:
    """Accuracy, weighted-F1 and log loss from ``MulticlassClassificationEvaluator``.

    Log loss depends only on the probability of the true class, so the evaluator reads a one-element
    probability vector ``[true_prob]`` with the label 0: the same ``-log(max(p_true, 1e-15))``
    averaged over rows, without keeping the K-wide probability vectors.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`predictions_frame`.

    Returns
    -------
    dict
        ``accuracy``, ``weighted_f1``, ``log_loss``.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.functions import array_to_vector

    labelled = pred_df.select(F.col("label").cast("double").alias("label"),
                              F.col("prediction").cast("double").alias("prediction"))
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(labelled)
    weighted_f1 = MulticlassClassificationEvaluator(metricName="f1").evaluate(labelled)
    true_class = pred_df.select(F.lit(0.0).alias("label"), F.lit(0.0).alias("prediction"),
                                array_to_vector(F.array(F.col("true_prob").cast("double"))).alias("probability"))
    log_loss = MulticlassClassificationEvaluator(metricName="logLoss", eps=LOG_LOSS_EPS).evaluate(true_class)
    return {"accuracy": float(accuracy), "weighted_f1": float(weighted_f1), "log_loss": float(log_loss)}


def class_counts(pred_df: "DataFrame") -> "DataFrame":
    """Per class: rows with that true label, how many were right, and how often it was predicted.

    Parameters
    ----------
    pred_df : DataFrame
        Has ``label`` and ``prediction``.

    Returns
    -------
    DataFrame
        ``label int, n long, correct long, predicted long`` for every class that is a label or a
        prediction at least once.
    """
    both = pred_df.select(F.inline(F.array(
        F.struct(F.col("label").alias("cls"), F.lit(1).alias("n"),
                 (F.col("prediction") == F.col("label")).cast("int").alias("correct"), F.lit(0).alias("predicted")),
        F.struct(F.col("prediction").alias("cls"), F.lit(0).alias("n"), F.lit(0).alias("correct"),
                 F.lit(1).alias("predicted")),
    )))
    return both.groupBy(F.col("cls").alias("label")).agg(
        F.sum("n").cast("long").alias("n"), F.sum("correct").cast("long").alias("correct"),
        F.sum("predicted").cast("long").alias("predicted"))


def macro_f1_column(true_n: Column, true_positive: Column, predicted_n: Column) -> Column:
    """Per-class F1 = 2 TP / (n_true + n_predicted); null for a class that is neither."""
    denominator = true_n + predicted_n
    return F.when(denominator > 0, 2.0 * true_positive / denominator)


def macro_f1(counts_df: "DataFrame") -> float:
    """Macro-F1 from :func:`class_counts`: the mean F1 over classes that occur as label or prediction.

    This is scikit-learn's ``f1_score(average="macro")`` with its default label set.
    """
    row = counts_df.agg(F.avg(macro_f1_column(F.col("n"), F.col("correct"), F.col("predicted"))).alias("f1")).first()
    return float(row["f1"]) if row and row["f1"] is not None else float("nan")


def calibration_bins(pred_df: "DataFrame", bins: int) -> "DataFrame":
    """Counts per equal-width confidence bin (only bins that hold rows).

    Parameters
    ----------
    pred_df : DataFrame
        Has ``label``, ``prediction`` and ``confidence``.
    bins : int
        Number of equal-width bins over [0, 1].

    Returns
    -------
    DataFrame
        ``bin int, count long, correct long, confidence_sum double``.
    """
    return pred_df.groupBy(confidence_bin(F.col("confidence"), bins).alias("bin")).agg(
        F.count(F.lit(1)).alias("count"),
        F.sum((F.col("prediction") == F.col("label")).cast("long")).alias("correct"),
        F.sum(F.col("confidence").cast("double")).alias("confidence_sum"))


def reliability_table(bin_rows: Iterable[Any], bins: int) -> list[dict]:
    """All ``bins`` bins, empty ones included, from the rows of :func:`calibration_bins`.

    Returns
    -------
    list of dict
        ``bin_lower, bin_upper, count, accuracy, confidence`` per bin (accuracy and confidence are
        None for an empty bin).
    """
    by_bin = {int(r["bin"]): r for r in bin_rows}
    table = []
    for b in range(bins):
        row = by_bin.get(b)
        count = int(row["count"]) if row else 0
        table.append({
            "bin_lower": b / bins, "bin_upper": (b + 1) / bins, "count": count,
            "accuracy": float(row["correct"]) / count if count else None,
            "confidence": float(row["confidence_sum"]) / count if count else None,
        })
    return table


def expected_calibration_error(reliability: Sequence[dict]) -> float:
    """ECE = sum over bins of (bin rows / all rows) * |bin accuracy - bin mean confidence|."""
    total = sum(b["count"] for b in reliability)
    if not total:
        return float("nan")
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in reliability if b["count"]) / total)


def accuracy_metrics(pred_df: "DataFrame", confidence_threshold: float = 0.5) -> dict[str, Any]:
    """Every count-based metric of one set except calibration.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`predictions_frame`.
    confidence_threshold : float
        A prediction is confident when ``confidence >= confidence_threshold``.

    Returns
    -------
    dict
        ``rows, accuracy, top5_accuracy, macro_f1, weighted_f1, log_loss, mean_confidence,
        confident_fraction, confident_accuracy, unconfident_accuracy`` (the split accuracies are None
        when their side is empty).
    """
    threshold = float(confidence_threshold)
    confident = F.col("confidence") >= F.lit(threshold)
    correct = (F.col("prediction") == F.col("label")).cast("long")
    totals = pred_df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.array_contains("top5", F.col("label")).cast("long")).alias("top5_hits"),
        F.avg("confidence").alias("mean_confidence"),
        F.sum(confident.cast("long")).alias("confident_rows"),
        F.sum(F.when(confident, correct)).alias("confident_correct"),
        F.sum(F.when(~confident, correct)).alias("unconfident_correct"),
    ).first()
    rows = int(totals["rows"])
    if rows == 0:
        raise GapSparkError("cannot evaluate an empty set of predictions")
    confident_rows = int(totals["confident_rows"] or 0)
    unconfident_rows = rows - confident_rows
    out: dict[str, Any] = {"rows": rows}
    out.update(evaluator_metrics(pred_df))
    out["top5_accuracy"] = float(totals["top5_hits"]) / rows
    out["macro_f1"] = macro_f1(class_counts(pred_df))
    out["mean_confidence"] = float(totals["mean_confidence"])
    out["confident_fraction"] = confident_rows / rows
    out["confident_accuracy"] = float(totals["confident_correct"]) / confident_rows if confident_rows else None
    out["unconfident_accuracy"] = (float(totals["unconfident_correct"]) / unconfident_rows
                                   if unconfident_rows else None)
    return out


METRIC_KEYS = ("rows", "accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "log_loss", "ece",
               "mean_confidence", "confident_fraction", "confident_accuracy", "unconfident_accuracy",
               "reliability")


def set_metrics(pred_df: "DataFrame", bins: int = 15, confidence_threshold: float = 0.5) -> dict[str, Any]:
    """The metrics block ``M`` of ``metrics.json`` for one set (keys in :data:`METRIC_KEYS`)."""
    metrics = accuracy_metrics(pred_df, confidence_threshold)
    reliability = reliability_table(calibration_bins(pred_df, bins).collect(), bins)
    metrics["ece"] = expected_calibration_error(reliability)
    metrics["reliability"] = reliability
    return {key: metrics[key] for key in METRIC_KEYS}


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------

def _poisson_cdf(max_k: int = _POISSON_MAX) -> list[float]:
    cdf, term, total = [], math.exp(-1.0), 0.0
    for k in range(max_k + 1):
        total += term
        cdf.append(total)
        term /= (k + 1)
    return cdf


def hash_uniform(*cols: Column) -> Column:
    """A uniform double in [0, 1) from the 64-bit xxHash of ``cols`` (its top 53 bits)."""
    return F.shiftrightunsigned(F.xxhash64(*cols), 11).cast("double") / F.lit(float(2 ** 53))


def poisson_from_uniform(u: Column) -> Column:
    """Inverse-CDF Poisson(1) draw from a uniform ``u``: the smallest k with ``u < P(X <= k)``."""
    expr = None
    for k, threshold in enumerate(_poisson_cdf()):
        if threshold >= 1.0:
            break
        expr = F.when(u < F.lit(threshold), F.lit(k)) if expr is None else expr.when(u < F.lit(threshold), F.lit(k))
    return expr.otherwise(F.lit(_POISSON_MAX)).cast("int")


def bootstrap_weights(pred_df: "DataFrame", replicates: int, seed: int, stream: int = 0) -> "DataFrame":
    """Every row once per replicate, with its Poisson(1) weight ``w`` (rows with ``w = 0`` dropped).

    The weight is a function of ``(seed, stream, row_id, rep)`` only, so it is the same whatever the
    partitioning or the order of the rows; different streams (sets) get independent weights.

    Returns
    -------
    DataFrame
        The columns of ``pred_df`` plus ``rep int`` and ``w int``.
    """
    exploded = pred_df.withColumn("rep", F.explode(F.sequence(F.lit(0), F.lit(int(replicates) - 1))))
    u = hash_uniform(F.lit(int(seed)), F.lit(int(stream)), F.col("row_id"), F.col("rep"))
    return exploded.withColumn("w", poisson_from_uniform(u)).where(F.col("w") > 0)


def bootstrap_replicates(pred_df: "DataFrame", replicates: int, seed: int, stream: int = 0,
                         bins: int = 15, by: Sequence[str] = ()) -> "DataFrame":
    """Accuracy, macro-F1 and ECE of every Poisson bootstrap replicate of one set, in one pass.

    Each weighted row adds itself to three kinds of group per replicate: its true class (rows, right
    ones, and predictions when it is right), its predicted class when it is wrong (predictions), and
    its confidence bin (rows, right ones, confidence). One aggregation over ``(rep, kind, key)``
    gives every count; the per-replicate statistics come from that small table (``replicates x
    (K + bins)`` rows), never from the rows themselves.

    Parameters
    ----------
    pred_df : DataFrame
        Columns of :func:`predictions_frame` (``row_id`` must identify a row within the set).
    replicates : int
        Number of bootstrap replicates B.
    seed : int
    stream : int
        Distinguishes sets sharing row ids (see :data:`STREAM_IDS`).
    bins : int
        Confidence bins for ECE.
    by : sequence of str
        Columns of ``pred_df`` that split it into independent groups (for example several models or
        experiments in one frame), each bootstrapped on its own in the same pass.

    Returns
    -------
    DataFrame
        ``*by, rep int, accuracy double, macro_f1 double, ece double``, one row per group and replicate.
    """
    CLASS, BIN = 0, 1
    by = list(by)
    base = pred_df.select(*by, "row_id", "label", "prediction",
                          F.col("confidence").cast("double").alias("confidence"))
    weighted = bootstrap_weights(base, replicates, seed, stream)
    w = F.col("w").cast("long")
    right = (F.col("prediction") == F.col("label"))
    wc = F.when(right, w).otherwise(F.lit(0).cast("long"))
    zero = F.lit(0).cast("long")

    def part(kind: int, key: Column, n: Column, tp: Column, predicted: Column, conf: Column) -> Column:
        return F.struct(F.lit(kind).alias("kind"), key.cast("int").alias("key"), n.alias("n"), tp.alias("tp"),
                        predicted.alias("predicted"), conf.alias("conf"))

    as_label = part(CLASS, F.col("label"), w, wc, wc, F.lit(0.0))
    as_prediction = part(CLASS, F.col("prediction"), zero, zero, w, F.lit(0.0))
    as_bin = part(BIN, confidence_bin(F.col("confidence"), bins), w, wc, zero, w * F.col("confidence"))
    parts = F.when(right, F.array(as_label, as_bin)).otherwise(F.array(as_label, as_prediction, as_bin))
    counts = weighted.select(*by, "rep", F.inline(parts)).groupBy(*by, "rep", "kind", "key").agg(
        F.sum("n").alias("n"), F.sum("tp").alias("tp"), F.sum("predicted").alias("predicted"),
        F.sum("conf").alias("conf"))
    # One aggregation for both kinds: filtering each kind into its own branch would let Spark push
    # the filter below the first aggregation and run the whole weighted pass twice.
    is_class, is_bin = F.col("kind") == CLASS, F.col("kind") == BIN
    return counts.groupBy(*by, "rep").agg(
        (F.sum(F.when(is_bin, F.col("tp"))) / F.sum(F.when(is_bin, F.col("n")))).alias("accuracy"),
        F.avg(F.when(is_class, macro_f1_column(F.col("n"), F.col("tp"), F.col("predicted")))).alias("macro_f1"),
        (F.sum(F.when(is_bin, F.abs(F.col("tp") - F.col("conf")))) / F.sum(F.when(is_bin, F.col("n")))).alias("ece"))


GAP_METRICS = ("accuracy", "macro_f1", "ece")


def bootstrap_gap_table(pred_val: "DataFrame", pred_v2: "DataFrame", replicates: int, seed: int, bins: int = 15,
                        level: float = 0.95, by: Sequence[str] = (),
                        streams: tuple[int, int] = (STREAM_IDS["val"], STREAM_IDS["v2"])) -> "DataFrame":
    """Percentile bootstrap intervals of ``metric(val) - metric(v2)``, per group of ``by``.

    Replicate ``b`` resamples val and v2 independently (Poisson weights from different streams);
    the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the B
    differences, computed with Spark's ``percentile``.

    Returns
    -------
    DataFrame
        ``*by`` and one ``array<double>`` ``[lo, hi]`` column per metric of :data:`GAP_METRICS`.
    """
    by = list(by)
    a = bootstrap_replicates(pred_val, replicates, seed, streams[0], bins, by)
    b = bootstrap_replicates(pred_v2, replicates, seed, streams[1], bins, by)
    diffs = a.alias("a").join(b.alias("b"), [*by, "rep"]).select(
        *by, *[(F.col(f"a.{m}") - F.col(f"b.{m}")).alias(m) for m in GAP_METRICS])
    tails = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    return diffs.groupBy(*by).agg(*[F.percentile(F.col(m), tails).alias(m) for m in GAP_METRICS])


def bootstrap_gap(pred_val: "DataFrame", pred_v2: "DataFrame", replicates: int, seed: int, bins: int = 15,
                  level: float = 0.95, streams: tuple[int, int] = (STREAM_IDS["val"], STREAM_IDS["v2"])) -> dict:
    """Percentile bootstrap intervals of ``metric(val) - metric(v2)`` for accuracy, macro-F1 and ECE.

    All replicates of both sets are aggregated in one Spark job (see :func:`bootstrap_replicates`);
    only the interval ends reach the driver.

    Parameters
    ----------
    pred_val, pred_v2 : DataFrame
        Columns of :func:`predictions_frame`.
    replicates : int
        B.
    seed : int
    bins : int
        Confidence bins for ECE.
    level : float
        Coverage of the interval.

    Returns
    -------
    dict
        ``{"accuracy": [lo, hi], "macro_f1": [lo, hi], "ece": [lo, hi], "replicates": B}``.
    """
    row = bootstrap_gap_table(pred_val, pred_v2, replicates, seed, bins, level, (), streams).first()
    out: dict[str, Any] = {m: [float(v) for v in row[m]] if row and row[m] is not None else [None, None]
                           for m in GAP_METRICS}
    out["replicates"] = int(replicates)
    return out


def gap_summary(val: dict, v2: dict, intervals: dict) -> dict:
    """The gap block ``G`` of ``metrics.json``: val minus v2, with the bootstrap intervals."""
    return {
        "accuracy": val["accuracy"] - v2["accuracy"], "ci95": intervals["accuracy"],
        "macro_f1": val["macro_f1"] - v2["macro_f1"], "macro_f1_ci95": intervals["macro_f1"],
        "ece": val["ece"] - v2["ece"], "ece_ci95": intervals["ece"],
    }


# --------------------------------------------------------------------------------------------------
# Where the gap comes from
# --------------------------------------------------------------------------------------------------

def _tagged(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Both sets' ``label, prediction`` in one frame, with 0/1 columns saying which set a row is from."""
    def side(pred_df: "DataFrame", in_val: int) -> "DataFrame":
        return pred_df.select(F.col("label").cast("int").alias("label"),
                              F.col("prediction").cast("int").alias("prediction"),
                              F.lit(in_val).alias("in_val"), F.lit(1 - in_val).alias("in_v2"))
    return side(pred_val, 1).unionByName(side(pred_v2, 0))


def per_class_table(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Per-class accuracy on val and v2 and the drop, for every class that is a true label in either.

    One aggregation over both sets (tagged and unioned), so one shuffle.

    Returns
    -------
    DataFrame
        ``label, val_n, val_correct, val_accuracy, v2_n, v2_correct, v2_accuracy, drop`` (drop =
        val_accuracy - v2_accuracy; an accuracy is null where the class has no rows), by label.
    """
    correct = (F.col("prediction") == F.col("label")).cast("long")
    counts = _tagged(pred_val, pred_v2).groupBy("label").agg(
        F.sum(F.col("in_val").cast("long")).alias("val_n"), F.sum(correct * F.col("in_val")).alias("val_correct"),
        F.sum(F.col("in_v2").cast("long")).alias("v2_n"), F.sum(correct * F.col("in_v2")).alias("v2_correct"))
    table = counts.select(
        "label", "val_n", "val_correct",
        F.when(F.col("val_n") > 0, F.col("val_correct") / F.col("val_n")).alias("val_accuracy"),
        "v2_n", "v2_correct",
        F.when(F.col("v2_n") > 0, F.col("v2_correct") / F.col("v2_n")).alias("v2_accuracy"))
    return table.withColumn("drop", F.col("val_accuracy") - F.col("v2_accuracy")).orderBy("label")


def confused_pairs(pred_val: "DataFrame", pred_v2: "DataFrame") -> "DataFrame":
    """Every confused pair on val or v2, side by side, with the growth of its rate on v2.

    The (true, predicted) cell counts of both sets come from one aggregation; the rows per true label
    (the rates' denominators) from a window over the same cells.

    Returns
    -------
    DataFrame
        ``true_label, predicted_label, val_count, val_rate, v2_count, v2_rate, growth`` where rate =
        count / rows of that true label in that set and growth = v2_rate - val_rate. A pair absent
        from one set has count 0 there, and rate 0, or null when its true label has no rows there.
    """
    from pyspark.sql import Window

    cells = _tagged(pred_val, pred_v2).groupBy("label", "prediction").agg(
        F.sum(F.col("in_val").cast("long")).alias("val_count"), F.sum(F.col("in_v2").cast("long")).alias("v2_count"))
    by_label = Window.partitionBy("label")
    cells = cells.withColumn("val_rows", F.sum("val_count").over(by_label)) \
        .withColumn("v2_rows", F.sum("v2_count").over(by_label))
    out = cells.where(F.col("label") != F.col("prediction")).select(
        F.col("label").alias("true_label"), F.col("prediction").alias("predicted_label"),
        "val_count", F.when(F.col("val_rows") > 0, F.col("val_count") / F.col("val_rows")).alias("val_rate"),
        "v2_count", F.when(F.col("v2_rows") > 0, F.col("v2_count") / F.col("v2_rows")).alias("v2_rate"))
    return out.withColumn("growth", F.col("v2_rate") - F.col("val_rate"))


def top_confused_pairs(pairs_df: "DataFrame", top_n: int) -> list[dict]:
    """The union of the ``top_n`` pairs by val count, by v2 count and by growth (growth > 0 only).

    One Spark job (three ``limit`` queries in a union); at most ``3 x top_n`` rows reach the driver.

    Returns
    -------
    list of dict
        Rows of :func:`confused_pairs`, by decreasing growth, then v2 count, then the labels.
    """
    keys = [F.col("true_label"), F.col("predicted_label")]
    by_val = pairs_df.where(F.col("val_count") > 0).orderBy(F.desc("val_count"), *keys).limit(top_n)
    by_v2 = pairs_df.where(F.col("v2_count") > 0).orderBy(F.desc("v2_count"), *keys).limit(top_n)
    by_growth = pairs_df.where(F.col("growth") > 0).orderBy(F.desc("growth"), *keys).limit(top_n)
    rows = by_val.unionByName(by_v2).unionByName(by_growth).distinct().collect()
    table = [{c: r[c] for c in PAIR_COLUMNS} for r in rows]
    table.sort(key=lambda r: (-(r["growth"] if r["growth"] is not None else -math.inf), -r["v2_count"],
                              r["true_label"], r["predicted_label"]))
    return table


def holdout_slice(train_df: "DataFrame", fraction: float, seed: int) -> "DataFrame":
    """A deterministic ``fraction`` of train rows, chosen by a hash of ``(seed, row_id)``.

    The same rows come out for the same seed whatever the partitioning, so a training stage can
    exclude exactly these rows with ``hash_uniform(seed, -1, row_id) >= fraction``.
    """
    return train_df.where(hash_uniform(F.lit(int(seed)), F.lit(-1), F.col("row_id")) < F.lit(float(fraction)))


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

def table_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """CSV text with a header; None becomes an empty field, floats keep full precision."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else repr(row[c]) if isinstance(row[c], float) else row[c]
                         for c in columns])
    return out.getvalue()


def _json_number(value: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def predictions_path(paths: "Paths", model: str, split: str) -> str:
    """``RUN_DIR/predictions/<model>/<split>``."""
    return paths.run_file("predictions", model, split)


def _evaluate_set(spark: "SparkSession", model: "PipelineModel", frame: "DataFrame", name: str, split: str,
                  paths: "Paths", settings: EvaluateSettings) -> tuple["DataFrame", dict, float]:
    """Predict one set, save the predictions, and compute its metrics from the saved (cached) copy."""
    sc = spark.sparkContext
    t0 = time.time()
    target = fs.to_spark_uri(predictions_path(paths, name, split))
    sc.setJobDescription(f"gap-spark evaluate: predict {name} on {split}")
    predictions_frame(model.transform(frame)).write.mode("overwrite").parquet(target)
    saved = spark.read.parquet(target).cache()
    sc.setJobDescription(f"gap-spark evaluate: metrics of {name} on {split}")
    metrics = set_metrics(saved, settings.ece_bins, settings.confidence_threshold)
    seconds = round(time.time() - t0, 3)
    log.info("evaluate: %s on %s: %d rows, accuracy %.4f, top-5 %.4f, ECE %.4f (%.1f s)", name, split,
             metrics["rows"], metrics["accuracy"], metrics["top5_accuracy"], metrics["ece"], seconds)
    return saved, metrics, seconds


def run_evaluate(spark: "SparkSession", config: "Config", paths: "Paths") -> dict:
    """Stage entry point: evaluate every model of the run on val and v2, and write the outputs.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        Reads the ``evaluate`` section.
    paths : Paths
        Reads ``paths.data`` and ``RUN_DIR/models/``; writes ``metrics.json``, ``predictions/``,
        ``per_class/`` and ``confused_pairs/`` under ``paths.run``.

    Returns
    -------
    dict
        The content of ``metrics.json`` plus ``timings`` (seconds per model and set).

    Raises
    ------
    GapSparkError
        No models in the run, a model whose D or K differs from the dataset, a missing or incomplete
        dataset (``DatasetError``), or bad ``evaluate`` settings (``ConfigError``).
    """
    started = time.time()
    settings = EvaluateSettings.from_config(config)
    manifest = read_manifest(paths.data)
    models = load_models(paths.run)
    for name, model in models.items():
        check_model_matches_dataset(name, model, manifest)
    sets = {split: read_split(spark, paths.data, split, manifest) for split in EVAL_SETS}
    if settings.holdout_fraction > 0:
        sets[HOLDOUT_SET] = holdout_slice(read_split(spark, paths.data, "train", manifest),
                                          settings.holdout_fraction, settings.seed)

    sc = spark.sparkContext
    results: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    try:
        for name, model in models.items():
            saved: dict[str, DataFrame] = {}
            results[name] = {}
            timings[name] = {}
            try:
                for split, frame in sets.items():
                    saved[split], results[name][split], timings[name][split] = _evaluate_set(
                        spark, model, frame, name, split, paths, settings)
                t0 = time.time()
                sc.setJobDescription(f"gap-spark evaluate: bootstrap gap of {name}")
                intervals = bootstrap_gap(saved["val"], saved["v2"], settings.bootstrap_replicates, settings.seed,
                                          settings.ece_bins)
                results[name]["gap"] = gap_summary(results[name]["val"], results[name]["v2"], intervals)
                timings[name]["bootstrap"] = round(time.time() - t0, 3)
                gap = results[name]["gap"]
                log.info("evaluate: %s gap (val - v2): accuracy %.4f [%.4f, %.4f], %d replicates (%.1f s)", name,
                         gap["accuracy"], gap["ci95"][0], gap["ci95"][1], settings.bootstrap_replicates,
                         timings[name]["bootstrap"])

                t0 = time.time()
                sc.setJobDescription(f"gap-spark evaluate: per-class table and confused pairs of {name}")
                _write_per_class(spark, per_class_table(saved["val"], saved["v2"]), paths, name)
                pair_table = confused_pairs(saved["val"], saved["v2"]).cache()
                pairs = top_confused_pairs(pair_table, settings.top_confused_pairs)
                pair_table.unpersist()
                fs.write_text(paths.run_file("confused_pairs", f"{name}.csv"), table_csv(pairs, PAIR_COLUMNS))
                timings[name]["tables"] = round(time.time() - t0, 3)
            finally:
                for frame in saved.values():
                    frame.unpersist()
    finally:
        sc.setJobDescription(None)

    metrics = {
        "models": {name: {key: block[key] for key in (*EVAL_SETS, "gap", HOLDOUT_SET) if key in block}
                   for name, block in results.items()},
        "dataset": manifest_summary(manifest),
        "bootstrap_replicates": settings.bootstrap_replicates,
        "seconds": round(time.time() - started, 3),
    }
    metrics = _json_number(metrics)
    fs.write_json(paths.run_file("metrics.json"), metrics)
    log.info("evaluate: wrote %s (%.1f s)", paths.run_file("metrics.json"), metrics["seconds"])
    return {**metrics, "timings": timings}


def _write_per_class(spark: "SparkSession", table: "DataFrame", paths: "Paths", name: str) -> None:
    """Collect the K-row table once, then write it as Parquet (through Spark) and CSV."""
    collected = table.collect()
    rows = [row.asDict() for row in collected]
    frame = spark.createDataFrame([tuple(row) for row in collected], schema=table.schema)
    frame.coalesce(1).write.mode("overwrite").parquet(fs.to_spark_uri(paths.run_file("per_class", name)))
    fs.write_text(paths.run_file("per_class", f"{name}.csv"), table_csv(rows, PER_CLASS_COLUMNS))
