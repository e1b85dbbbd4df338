"""The train stage: every model named in ``train.models`` on the whole train split.

Flow of :func:`run_train`
-------------------------
1. Refusals before any heavy work: an unregistered model name, no (or an incomplete) manifest, a model
   already in the run directory (unless ``train.overwrite``), and D or K disagreeing between the
   manifest and a few rows.
2. The selection slice: ``split=select`` when the manifest lists it; else (an older dataset) one
   warning, and a hash-chosen ``train.select.fallback_fraction`` of train is held out of the fit and
   serves instead. val and v2 are never read: everything train chooses is chosen on this slice.
   The train split (``label``, ``features`` array<float>) is cached once with ``train.storage_level``
   and ``train.partitions``. Caching the float arrays rather than the assembled double vectors halves
   the cache (4 instead of 8 bytes a value, 5.2 GB instead of 10.5 GB at full scale); array_to_vector
   is a cheap copy that each later pass repeats. One aggregation over the cache fills it and checks
   every row: array lengths against D, labels against [0, K), and the classes that have no rows.
3. Per model (:mod:`gap_spark.models`): the feature transform (:mod:`gap_spark.ops.features`) is fitted
   on train only and shared by models with the same PCA; with ``train.tune.enabled`` a grid search
   (:mod:`gap_spark.models.tuning`) scores each point on the selection slice; the fit (iterative models
   stop by :mod:`gap_spark.models.stopping`); its metrics on the selection slice; one ``PipelineModel``
   (feature stages + classifier) saved under ``RUN_DIR/models/<name>/``.
4. ``RUN_DIR/train_summary.json`` records params, rows, iterations, the objective history, how the fit
   stopped, seconds per phase, the model's extras and its selection metrics, the slice's rows, D, K and
   the manifest summary.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import manifest_summary, read_manifest, read_split
from gap_spark.contracts.tables import table_csv
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError, GapSparkError
from gap_spark.core.progress import blas_implementation
from gap_spark.core.session import default_parallelism, job_description, num_partitions
from gap_spark.models import selected_models
from gap_spark.models.base import FitContext
from gap_spark.models.tuning import SELECTION_METRIC, tune_model
from gap_spark.ops.features import effective_pca_k, fit_feature_model, output_column, with_label_metadata
from gap_spark.ops.train_split import (
    auto_partitions,
    check_label_stats,
    check_sample_rows,
    describe_missing,
    hash_holdout,
    label_stats,
    storage_level,
)
from gap_spark.present.format import pct

if TYPE_CHECKING:
    from pyspark import StorageLevel
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.contracts.run import RunDir
    from gap_spark.core.config import Config
    from gap_spark.core.settings import TrainSettings
    from gap_spark.models.base import ModelSpec

__all__ = ["run_train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """The cached, checked train split and what the summary records about it."""

    frame: "DataFrame"  # label, features (cached unless train.storage_level is NONE)
    labelled: "DataFrame"  # the same rows, the label a double tagged with K (ops.features.with_label_metadata)
    rows: int
    partitions: int
    level: "StorageLevel | None"
    missing: list[int]
    seconds: float


@dataclass(frozen=True)
class SelectionSlice:
    """The rows train chooses on (``split=select``, or the fallback held out of train)."""

    frame: "DataFrame | None"  # label (with K's metadata), features; cached; None when it has no rows
    rows: int
    source: str  # "select" (ingest's split) or "fallback" (hash-held-out of train)
    record: dict[str, Any]  # train_summary.json's "selection" entry


def _seconds(started: float) -> float:
    return round(time.time() - started, 3)


def run_train(spark: "SparkSession", config: "Config", paths: "Paths") -> dict[str, Any]:
    """Stage entry point: train the models named in ``train.models`` and write ``train_summary.json``.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        Reads ``config.settings.train``.
    paths : Paths
        Reads ``paths.data``; writes under ``paths.run_dir``.

    Returns
    -------
    dict
        The content of ``RUN_DIR/train_summary.json``.
    """
    started = time.time()
    settings = config.settings.train
    specs = selected_models(settings.models)
    manifest, dim, classes = _dataset_shape(paths.data)
    pca = {spec.name: _pca_k(spec, settings, dim) for spec in specs}
    _refuse_existing_models(paths.run_dir, specs, settings.overwrite)

    train = read_split(spark, paths.data, "train", manifest)
    check_sample_rows(train, dim, classes)
    train, selection = _selection_slice(spark, paths.data, manifest, train, settings, classes)
    if settings.tune.enabled and selection.frame is None:
        raise DatasetError("train.tune needs the selection slice, and it has no rows")
    with job_description(spark, "gap-spark train: cache and check the train split"):
        data = _prepare(spark, train, settings, manifest, dim, classes)
    blas = blas_implementation(spark)
    log.info("train: MLlib BLAS on the driver: %s", blas)
    ctx = FitContext(spark=spark, settings=settings, rows=data.rows, classes=classes,
                     checkpoint_dir=fs.to_spark_uri(paths.run_dir.checkpoints))
    feature_models: dict[int | None, PipelineModel] = {}
    try:
        results = {spec.name: _train_model(spec, pca[spec.name], data, selection, dataclasses.replace(
            ctx, input_dim=pca[spec.name] or dim), feature_models, paths.run_dir) for spec in specs}
    finally:
        if data.level is not None:
            data.frame.unpersist()
        if selection.frame is not None:
            selection.frame.unpersist()

    summary = _summary(spark, paths.run_dir, manifest, results, data, settings, blas)
    summary["selection"] = selection.record
    summary["seconds"] = _seconds(started)
    fs.write_json(paths.run_dir.train_summary, summary)
    log.info("train: done in %.1f s; summary %s", summary["seconds"], paths.run_dir.train_summary)
    return summary


# --------------------------------------------------------------------------------------------------
# Refusals before heavy work
# --------------------------------------------------------------------------------------------------

def _dataset_shape(data_dir: str) -> tuple[dict[str, Any], int, int]:
    """The manifest with its D and K, refused unless they are usable."""
    manifest = read_manifest(data_dir)
    dim, classes = manifest.get("dim"), manifest.get("classes")
    if not isinstance(dim, int) or not isinstance(classes, int) or dim < 1 or classes < 2:
        raise DatasetError(f"the manifest of {data_dir} records D={dim!r} and K={classes!r}; "
                           "run `gap-spark ingest` again")
    return manifest, dim, classes


def _pca_k(spec: "ModelSpec", settings: "TrainSettings", dim: int) -> int | None:
    """The model's PCA components for this D (None: no PCA), logging a k that D makes void."""
    wanted = spec.pca_k(settings)
    k = effective_pca_k(wanted, dim)
    if wanted and k is None:
        log.info("%s=%d is not below D=%d: PCA left out, all %d features used", spec.pca_key, wanted, dim, dim)
    return k


def _refuse_existing_models(run_dir: "RunDir", specs: list["ModelSpec"], overwrite: bool) -> None:
    for spec in specs:
        target = run_dir.model(spec.name)
        if fs.exists(target) and not overwrite:
            raise GapSparkError(f"a model already exists at {target}; pass --overwrite "
                                "(train.overwrite=true) to replace it")


# --------------------------------------------------------------------------------------------------
# The selection slice
# --------------------------------------------------------------------------------------------------

def _selection_slice(spark: "SparkSession", data_dir: str, manifest: dict[str, Any], train: "DataFrame",
                     settings: "TrainSettings", classes: int) -> tuple["DataFrame", SelectionSlice]:
    """The train rows to fit, and the selection slice: ingest's ``split=select``, else the fallback."""
    from pyspark import StorageLevel

    fallback: dict[str, Any] | None = None
    if "select" in manifest["splits"]:
        select = read_split(spark, data_dir, "select", manifest)
    else:
        fallback = {"fraction": settings.select.fallback_fraction, "seed": settings.select.fallback_seed}
        log.warning("train: the dataset has no selection split (split=select; written by an older ingest): "
                    "holding out %.1f%% of train, chosen by a hash of row_id (train.select.fallback_fraction), "
                    "as the selection slice; run `gap-spark ingest` again for a proper one",
                    100 * fallback["fraction"])
        train, select = hash_holdout(train, fallback["fraction"], fallback["seed"])
    frame = with_label_metadata(select.select("label", "features"), classes).persist(StorageLevel.MEMORY_AND_DISK)
    with job_description(spark, "gap-spark train: read the selection slice"):
        rows = frame.count()
    if rows == 0:
        frame.unpersist()
        log.warning("train: the selection slice has no rows: the patience rules are off and nothing can be tuned")
    source = "select" if fallback is None else "fallback"
    log.info("train: selection slice: %d rows (%s)", rows, "split=select" if fallback is None else "held out of train")
    record = {"split": "select" if fallback is None else None, "source": source, "rows": rows, "fallback": fallback,
              "test_splits_read": False}
    return train, SelectionSlice(frame=frame if rows else None, rows=rows, source=source, record=record)


# --------------------------------------------------------------------------------------------------
# The cached train split
# --------------------------------------------------------------------------------------------------

def _prepare(spark: "SparkSession", train: "DataFrame", settings: "TrainSettings", manifest: dict[str, Any],
             dim: int, classes: int) -> TrainingData:
    """Cache ``label, features`` in ``train.partitions`` partitions, then check every row in one pass."""
    t0 = time.time()
    level = storage_level(settings.storage_level)
    frame = train.select("label", "features")
    manifest_rows = int((manifest.get("splits", {}).get("train") or {}).get("rows_written") or 0)
    current = num_partitions(frame)
    partitions = settings.partitions or auto_partitions(manifest_rows, dim, default_parallelism(spark))
    if partitions < current:
        frame = frame.coalesce(partitions)  # narrow: no shuffle of the whole split
    elif partitions > current:
        frame = frame.repartition(partitions)
    if level is not None:
        frame = frame.persist(level)
    stats = label_stats(frame)  # fills the cache and checks every row
    missing = check_label_stats(stats, dim, classes)
    if missing:
        message = describe_missing(missing, classes)
        if settings.missing_classes == "error":
            raise DatasetError(message + " (train.missing_classes=error)")
        log.warning("train: %s", message)
    data = TrainingData(frame=frame, labelled=with_label_metadata(frame, classes), rows=stats["rows"],
                        partitions=partitions, level=level, missing=missing, seconds=_seconds(t0))
    log.info("train: %d rows x D=%d, K=%d, %d partitions, storage %s, cached and checked in %.1f s",
             data.rows, dim, classes, partitions, settings.storage_level, data.seconds)
    return data


# --------------------------------------------------------------------------------------------------
# One model: features, optional grid search, fit, save
# --------------------------------------------------------------------------------------------------

def _train_model(spec: "ModelSpec", k: int | None, data: TrainingData, selection: SelectionSlice, ctx: FitContext,
                 feature_models: dict[int | None, "PipelineModel"], run_dir: "RunDir") -> dict[str, Any]:
    """Fit, score on the selection slice and save one model; its entry of ``train_summary.json``."""
    phase: dict[str, float] = {}
    feature_model, phase["features"] = _feature_model(k, data, ctx, feature_models)
    features_col = output_column(k)
    transformed = spec.prepare(feature_model.transform(data.labelled).select("label", features_col), ctx)
    if selection.frame is not None:
        ctx = dataclasses.replace(ctx, select=feature_model.transform(selection.frame).select("label", features_col))

    params = spec.shaped(spec.params(ctx.settings), int(ctx.input_dim or 0), int(ctx.classes or 0))
    tuning = None
    if ctx.settings.tune.enabled:
        t0 = time.time()
        with job_description(ctx.spark, f"gap-spark train: grid search for {spec.name}"):
            best, tuning = _tune(spec, params, transformed, features_col, ctx, run_dir)
        phase["tune"] = _seconds(t0)
        params.update(best)
        log.info("train: %s grid search: best %s (accuracy %s on the selection slice) in %.1f s; table %s",
                 spec.name, best, pct(tuning["best_select_accuracy"]), phase["tune"], tuning["table"])

    t0 = time.time()
    with job_description(ctx.spark, f"gap-spark train: fit {spec.name} on all {ctx.rows} rows"):
        result = spec.fit(transformed, params, features_col, ctx)
    phase.update(result.phases)
    phase["fit"] = _seconds(t0)
    log.info("train: %s fitted in %.1f s (%d %s)", spec.name, phase["fit"], result.iterations, spec.iteration_unit)

    t0 = time.time()
    scorer = ctx.scorer()
    with job_description(ctx.spark, f"gap-spark train: score {spec.name} on the selection slice"):
        chosen = scorer(result.classifier) if scorer is not None else {"rows": 0, "accuracy": None, "log_loss": None}
    phase["select"] = _seconds(t0)
    if chosen["accuracy"] is not None:
        log.info("train: %s on the selection slice (%d rows): accuracy %.4f, log loss %s", spec.name, chosen["rows"],
                 chosen["accuracy"], "-" if chosen["log_loss"] is None else f"{chosen['log_loss']:.4f}")

    t0 = time.time()
    target = run_dir.model(spec.name)
    with job_description(ctx.spark, f"gap-spark train: save {spec.name}"):
        _save(feature_model, result.classifier, target, ctx.settings.overwrite)
    phase["save"] = _seconds(t0)
    log.info("train: %s saved to %s", spec.name, target)

    entry = {"params": {**params, "pca_k": k, "features_col": features_col}, "rows": ctx.rows,
             "iterations": result.iterations, "objective_history": result.objective_history, "seconds": phase,
             "path": target, "selection": chosen, **result.extras}
    if tuning:
        entry["tuning"] = tuning
    return entry


def _feature_model(k: int | None, data: TrainingData, ctx: FitContext,
                   feature_models: dict[int | None, "PipelineModel"]) -> tuple["PipelineModel", float]:
    """The feature transform for PCA ``k`` (fitted on train, shared between models) and its seconds."""
    if k in feature_models:
        return feature_models[k], 0.0  # shared with an earlier model
    t0 = time.time()
    with job_description(ctx.spark, f"gap-spark train: fit the feature transform (pca_k={k})"):
        # The PCA sample is seeded with train.rf.seed, whichever model it serves.
        feature_models[k] = fit_feature_model(data.frame, pca_k=k, pca_max_rows=ctx.settings.pca_max_rows,
                                              seed=ctx.settings.rf.seed, train_rows=ctx.rows)
    seconds = _seconds(t0)
    log.info("train: feature transform (standardise%s) fitted in %.1f s", f" + PCA to {k}" if k else "", seconds)
    return feature_models[k], seconds


def _tune(spec: "ModelSpec", params: dict[str, Any], frame: "DataFrame", features_col: str,
          ctx: FitContext, run_dir: "RunDir") -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid search's best params and the summary's ``tuning`` entry; the table goes to a CSV."""
    tune = ctx.settings.tune
    best, table = tune_model(spec, params, frame, features_col, ctx, tune)
    table_path = run_dir.tuning_table(spec.name)
    fs.write_text(table_path, table_csv(table))
    return best, {"best": best, "table": table_path, "grid_points": len(table), "fraction": tune.fraction,
                  "scored_on": "select", "best_select_accuracy": table[0][SELECTION_METRIC]}


def _save(feature_model: "PipelineModel", classifier: Any, target: str, overwrite: bool) -> None:
    """One PipelineModel: the feature stages, then the classifier."""
    from pyspark.ml import PipelineModel

    writer = PipelineModel(stages=[*feature_model.stages, classifier]).write()
    if overwrite:
        writer = writer.overwrite()
    writer.save(fs.to_spark_uri(target))


# --------------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------------

def _summary(spark: "SparkSession", run_dir: "RunDir", manifest: dict[str, Any], results: dict[str, Any],
             data: TrainingData, settings: "TrainSettings", blas: str) -> dict[str, Any]:
    """``train_summary.json`` without its total seconds: this run's models, and an earlier run's that
    still exist for the same dataset."""
    previous = fs.read_json(run_dir.train_summary) if fs.exists(run_dir.train_summary) else {}
    same_dataset = previous.get("dataset", {}).get("fingerprint") == manifest.get("fingerprint")
    models = {name: entry for name, entry in (previous.get("models") or {}).items()
              if name not in results and fs.exists(run_dir.model(name)) and same_dataset}
    models.update(results)
    return {
        "models": models,
        "dim": manifest["dim"],
        "classes": manifest["classes"],
        "dataset": manifest_summary(manifest),
        "missing_classes": data.missing,
        "training_data": {"rows": data.rows, "partitions": data.partitions, "storage_level": settings.storage_level,
                          "prepare_seconds": data.seconds},
        "environment": {"blas": blas, "default_parallelism": default_parallelism(spark),
                        "spark_version": spark.version},
    }
