"""The evaluate stage: every trained model on val and v2 (and a slice of train when
``evaluate.holdout_fraction`` > 0), with a bootstrap interval on the gap between them.

Per model and set it saves the predictions and computes the metrics (:mod:`gap_spark.ops.metrics`);
per model the gap with its interval (:mod:`gap_spark.ops.bootstrap`), the per-class table and the
most confused pairs (:mod:`gap_spark.ops.class_gap`). Outputs (``RunDir``): ``metrics.json``,
``predictions/<model>/<set>/``, ``per_class/<model>/`` and ``.csv``, ``confused_pairs/<model>.csv``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import manifest_summary, read_manifest, read_split
from gap_spark.contracts.tables import table_csv
from gap_spark.core import fs
from gap_spark.core.session import job_description
from gap_spark.models.saved import check_model_matches_dataset, load_models
from gap_spark.ops.bootstrap import bootstrap_gap, gap_summary
from gap_spark.ops.class_gap import (
    CONFUSED_PAIR_COLUMNS,
    PER_CLASS_ACCURACY_COLUMNS,
    confused_pair_frame,
    per_class_accuracy_frame,
    top_confused_pairs,
)
from gap_spark.ops.metrics import set_metrics
from gap_spark.ops.predictions import EVAL_SETS, HOLDOUT_SET, holdout_slice, predictions_frame

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.contracts.run import RunDir
    from gap_spark.core.config import Config
    from gap_spark.core.settings import EvaluateSettings

__all__ = ["run_evaluate"]

log = logging.getLogger(__name__)


def run_evaluate(spark: "SparkSession", config: "Config", paths: "Paths") -> dict[str, Any]:
    """Stage entry point: evaluate every model of the run on val and v2, and write the outputs.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        Reads ``config.settings.evaluate``.
    paths : Paths
        Reads ``paths.data`` and the run's models; writes ``metrics.json``, ``predictions/``,
        ``per_class/`` and ``confused_pairs/`` under ``paths.run_dir``.

    Returns
    -------
    dict
        The content of ``metrics.json`` plus ``timings`` (seconds per model and set).

    Raises
    ------
    GapSparkError
        No models in the run, a model whose D or K differs from the dataset, or a missing or
        incomplete dataset (``DatasetError``).
    """
    started = time.time()
    settings = config.settings.evaluate
    run_dir = paths.run_dir
    manifest = read_manifest(paths.data)
    models = load_models(run_dir)
    for name, model in models.items():
        check_model_matches_dataset(name, model, manifest)
    sets = {split: read_split(spark, paths.data, split, manifest) for split in EVAL_SETS}
    if settings.holdout_fraction > 0:
        sets[HOLDOUT_SET] = holdout_slice(read_split(spark, paths.data, "train", manifest),
                                          settings.holdout_fraction, settings.seed)

    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        results[name], timings[name] = _evaluate_model(spark, model, name, sets, run_dir, settings)

    metrics = {
        "models": {name: {key: block[key] for key in (*EVAL_SETS, "gap", HOLDOUT_SET) if key in block}
                   for name, block in results.items()},
        "dataset": manifest_summary(manifest),
        "bootstrap_replicates": settings.bootstrap_replicates,
        "seconds": round(time.time() - started, 3),
    }
    metrics = fs.json_safe(metrics)  # NaN -> null in the returned summary too, as in the file
    fs.write_json(run_dir.metrics, metrics)
    log.info("evaluate: wrote %s (%.1f s)", run_dir.metrics, metrics["seconds"])
    return {**metrics, "timings": timings}


def _evaluate_model(spark: "SparkSession", model: "PipelineModel", name: str, sets: dict[str, "DataFrame"],
                    run_dir: "RunDir", settings: "EvaluateSettings") -> tuple[dict[str, Any], dict[str, float]]:
    """One model: every set's metrics, the gap with its interval, and the per-class and pair tables."""
    saved: dict[str, DataFrame] = {}
    block: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:
        for split, frame in sets.items():
            saved[split], block[split], timings[split] = _evaluate_set(
                spark, model, frame, name, split, run_dir, settings)

        t0 = time.time()
        with job_description(spark, f"gap-spark evaluate: bootstrap gap of {name}"):
            intervals = bootstrap_gap(saved["val"], saved["v2"], settings.bootstrap_replicates, settings.seed,
                                      settings.ece_bins)
        block["gap"] = gap = gap_summary(block["val"], block["v2"], intervals)
        timings["bootstrap"] = round(time.time() - t0, 3)
        log.info("evaluate: %s gap (val - v2): accuracy %.4f [%.4f, %.4f], %d replicates (%.1f s)", name,
                 gap["accuracy"], gap["ci95"][0], gap["ci95"][1], settings.bootstrap_replicates,
                 timings["bootstrap"])

        t0 = time.time()
        with job_description(spark, f"gap-spark evaluate: per-class table and confused pairs of {name}"):
            _write_per_class(spark, per_class_accuracy_frame(saved["val"], saved["v2"]), run_dir, name)
            pair_frame = confused_pair_frame(saved["val"], saved["v2"]).cache()
            pairs = top_confused_pairs(pair_frame, settings.top_confused_pairs)
            pair_frame.unpersist()
        fs.write_text(run_dir.confused_pairs_csv(name), table_csv(pairs, CONFUSED_PAIR_COLUMNS))
        timings["tables"] = round(time.time() - t0, 3)
    finally:
        for frame in saved.values():
            frame.unpersist()
    return block, timings


def _evaluate_set(spark: "SparkSession", model: "PipelineModel", frame: "DataFrame", name: str, split: str,
                  run_dir: "RunDir", settings: "EvaluateSettings") -> tuple["DataFrame", dict[str, Any], float]:
    """Predict one set, save the predictions, and compute its metrics from the saved (cached) copy."""
    t0 = time.time()
    target = fs.to_spark_uri(run_dir.predictions(name, split))
    with job_description(spark, f"gap-spark evaluate: predict {name} on {split}"):
        predictions_frame(model.transform(frame)).write.mode("overwrite").parquet(target)
        saved = spark.read.parquet(target).cache()
    with job_description(spark, f"gap-spark evaluate: metrics of {name} on {split}"):
        metrics = set_metrics(saved, settings.ece_bins, settings.confidence_threshold)
    seconds = round(time.time() - t0, 3)
    log.info("evaluate: %s on %s: %d rows, accuracy %.4f, top-5 %.4f, ECE %.4f (%.1f s)", name, split,
             metrics["rows"], metrics["accuracy"], metrics["top5_accuracy"], metrics["ece"], seconds)
    return saved, metrics, seconds


def _write_per_class(spark: "SparkSession", table: "DataFrame", run_dir: "RunDir", name: str) -> None:
    """Collect the K-row table once, then write it as Parquet (through Spark) and CSV."""
    collected = table.collect()
    rows = [row.asDict() for row in collected]
    frame = spark.createDataFrame([tuple(row) for row in collected], schema=table.schema)
    frame.coalesce(1).write.mode("overwrite").parquet(fs.to_spark_uri(run_dir.per_class_parquet(name)))
    fs.write_text(run_dir.per_class_csv(name), table_csv(rows, PER_CLASS_ACCURACY_COLUMNS))
