"""The evaluate stage: every trained model on val and v2 (and a slice of train when
``evaluate.holdout_fraction`` > 0), with a bootstrap interval on the gap between them.

Per model and set it saves the predictions and computes the metrics (:mod:`gap_spark.ops.metrics`);
per model the gap with its interval (:mod:`gap_spark.ops.bootstrap`), the per-class table and the
most confused pairs (:mod:`gap_spark.ops.class_gap`). Outputs (``RunDir``): ``metrics.json``,
``predictions/<model>/<set>/``, ``per_class/<model>/`` and ``.csv``, ``confused_pairs/<model>.csv``
and the per-superclass table. The tables carry each class's name and WordNet id when they are known
(:mod:`gap_spark.ops.class_names`: a ``classes.names`` CSV, or ImageNet's names when the dataset's
paths carry WordNet ids that agree with ImageNet's standard order).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import SPLITS, manifest_summary, read_manifest, read_split
from gap_spark.contracts.tables import table_csv
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError, GapSparkError
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
from gap_spark.ops.class_names import (
    SUPERCLASS_COLUMNS,
    ClassNames,
    build_class_names,
    check_imagenet_wnids,
    parse_names_csv,
    path_wnids,
    superclass_rows,
)
from gap_spark.ops.metrics import EmptyPredictionsError, set_metrics
from gap_spark.ops.predictions import EVAL_SETS, HOLDOUT_SET, holdout_slice, predictions_frame
from gap_spark.present.format import fmt, interval, pct, points

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.contracts.run import RunDir
    from gap_spark.core.config import Config
    from gap_spark.core.settings import EvaluateSettings, Settings

__all__ = ["NAMED_PAIR_COLUMNS", "NAMED_PER_CLASS_COLUMNS", "resolve_class_names", "run_evaluate"]

log = logging.getLogger(__name__)

# The written tables: the ops' columns, then each class's name and WordNet id (empty when unknown).
NAMED_PER_CLASS_COLUMNS = (*PER_CLASS_ACCURACY_COLUMNS, "name", "wnid", "superclass")
NAMED_PAIR_COLUMNS = (*CONFUSED_PAIR_COLUMNS, "true_name", "true_wnid", "predicted_name", "predicted_wnid")


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
        No models in the run, a model whose D or K differs from the dataset, a missing or
        incomplete dataset (``DatasetError``), an unreadable ``classes.names`` CSV (``ConfigError``), or a
        set with no rows to predict (naming the model and the split).
    """
    started = time.time()
    settings = config.settings.evaluate
    run_dir = paths.run_dir
    manifest = read_manifest(paths.data)
    models = load_models(run_dir)
    for name, model in models.items():
        check_model_matches_dataset(name, model, manifest)
    classes = resolve_class_names(spark, config.settings, paths.data, manifest)
    sets = {split: read_split(spark, paths.data, split, manifest) for split in EVAL_SETS}
    if settings.holdout_fraction > 0:
        sets[HOLDOUT_SET] = holdout_slice(read_split(spark, paths.data, "train", manifest),
                                          settings.holdout_fraction, settings.seed)

    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        results[name], timings[name] = _evaluate_model(spark, model, name, sets, run_dir, settings, classes)

    metrics = {
        "models": {name: {key: block[key] for key in (*EVAL_SETS, "gap", HOLDOUT_SET) if key in block}
                   for name, block in results.items()},
        "dataset": manifest_summary(manifest),
        "bootstrap_replicates": settings.bootstrap_replicates,
        "classes": classes.summary(),
        "seconds": round(time.time() - started, 3),
    }
    metrics = fs.json_safe(metrics)  # NaN -> null in the returned summary too, as in the file
    fs.write_json(run_dir.metrics, metrics)
    log.info("evaluate: wrote %s (%.1f s)", run_dir.metrics, metrics["seconds"])
    return {**metrics, "timings": timings}


def resolve_class_names(spark: "SparkSession", settings: "Settings", data: str, manifest: dict[str, Any]) -> ClassNames:
    """The dataset's class names: the ``classes.names`` CSV, else ImageNet's when the paths agree."""
    s = settings.classes
    k = int(manifest["classes"])
    size = s.superclass_size or settings.synth.superclass_size
    if s.names:
        try:
            user = parse_names_csv(fs.read_text(s.names), s.names, k)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"classes.names: {exc}") from None
        log.info("evaluate: class names from %s (%d named)", s.names, len(user.names))
        return build_class_names(k, None, user, size, s.names)
    t0 = time.time()
    splits = [split for split in SPLITS if split in manifest.get("splits", {})] or list(SPLITS)
    frames = [read_split(spark, data, split, manifest).select("label", "path") for split in splits]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    with job_description(spark, "gap-spark evaluate: WordNet ids in the paths"):
        pairs = [(r["label"], r["wnid"], r["rows"]) for r in path_wnids(union).collect()]
    check = check_imagenet_wnids(pairs, k)
    if check.agrees:
        log.info("evaluate: ImageNet's class names (%s; %.1f s)", check.reason, time.time() - t0)
    elif check.found:
        log.warning("evaluate: showing class indices, not ImageNet's names: %s", check.reason)
    else:
        log.info("evaluate: showing class indices: %s", check.reason)
    return build_class_names(k, check, None, size)


def _evaluate_model(spark: "SparkSession", model: "PipelineModel", name: str, sets: dict[str, "DataFrame"],
                    run_dir: "RunDir", settings: "EvaluateSettings",
                    classes: ClassNames) -> tuple[dict[str, Any], dict[str, float]]:
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
        log.info("evaluate: %s gap (val - v2): %s points, 95%% CI %s, %d replicates (%.1f s)", name,
                 points(gap["accuracy"]), interval(gap["ci95"], 100, 1) or "n/a", settings.bootstrap_replicates,
                 timings["bootstrap"])

        t0 = time.time()
        with job_description(spark, f"gap-spark evaluate: per-class table and confused pairs of {name}"):
            _write_per_class(spark, per_class_accuracy_frame(saved["val"], saved["v2"]), run_dir, name, classes)
            pair_frame = confused_pair_frame(saved["val"], saved["v2"]).cache()
            pairs = top_confused_pairs(pair_frame, settings.top_confused_pairs)
            pair_frame.unpersist()
        for row in pairs:
            for side in ("true", "predicted"):
                row[f"{side}_name"] = classes.name(row[f"{side}_label"])
                row[f"{side}_wnid"] = classes.wnid(row[f"{side}_label"])
        fs.write_text(run_dir.confused_pairs_csv(name), table_csv(pairs, NAMED_PAIR_COLUMNS))
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
        try:
            metrics = set_metrics(saved, settings.ece_bins, settings.confidence_threshold)
        except EmptyPredictionsError:
            saved.unpersist()
            raise GapSparkError(f"evaluate: model {name} has no predictions on {split}: {_why_empty(split, settings)}"
                                ) from None
    seconds = round(time.time() - t0, 3)
    log.info("evaluate: %s on %s: %s rows, accuracy %s, top-5 %s, ECE %s (%.1f s)", name, split,
             f"{metrics['rows']:,}", pct(metrics["accuracy"]), pct(metrics["top5_accuracy"]), fmt(metrics["ece"]),
             seconds)
    return saved, metrics, seconds


def _why_empty(split: str, settings: "EvaluateSettings") -> str:
    """Why a set can be empty, and what to do (one clause)."""
    if split == HOLDOUT_SET:
        return (f"evaluate.holdout_fraction {settings.holdout_fraction:g} selects no train row "
                "(raise it, or set it to 0 to skip the holdout)")
    return f"the dataset's {split} split holds no rows (its part files are empty or gone; run ingest again)"


def _write_per_class(spark: "SparkSession", table: "DataFrame", run_dir: "RunDir", name: str,
                     classes: ClassNames) -> None:
    """Collect the K-row table once, add the names, then write it as Parquet (through Spark) and CSV, and
    the per-superclass table beside it."""
    from pyspark.sql import types as T

    rows = [row.asDict() for row in table.collect()]
    for row in rows:
        label = row["label"]
        row.update(name=classes.name(label), wnid=classes.wnid(label), superclass=classes.superclass.get(label))
    schema = T.StructType([*table.schema.fields, T.StructField("name", T.StringType()),
                           T.StructField("wnid", T.StringType()), T.StructField("superclass", T.IntegerType())])
    frame = spark.createDataFrame([tuple(row[c] for c in NAMED_PER_CLASS_COLUMNS) for row in rows], schema=schema)
    frame.coalesce(1).write.mode("overwrite").parquet(fs.to_spark_uri(run_dir.per_class_parquet(name)))
    fs.write_text(run_dir.per_class_csv(name), table_csv(rows, NAMED_PER_CLASS_COLUMNS))
    groups = superclass_rows(rows, classes)
    fs.write_text(run_dir.per_superclass_csv(name), table_csv(groups, SUPERCLASS_COLUMNS))
    worst = max((g for g in groups if g["drop"] is not None), key=lambda g: g["drop"], default=None)
    if worst is not None:
        log.info("evaluate: %s: largest superclass drop %s points (95%% CI %s) in %s", name, points(worst["drop"]),
                 interval((worst["drop_ci95_low"], worst["drop_ci95_high"]), 100, 1) or "n/a", worst["name"])
