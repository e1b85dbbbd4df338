"""The shift stage: what differs between ImageNet-val and ImageNetV2, measured against a control pair.

Two pairs of sets are compared: ``val_v2`` (val against v2, the shift under study) and ``train_val``
(a ``shift.train_control_fraction`` sample of train against val, a control: the same labelling process,
so whatever it shows is the background level of difference).

Three kinds of evidence
-----------------------
1. **Per-feature statistics** (:func:`gap_spark.ops.drift_spark.feature_shift_stats`): for every
   feature, the count, mean and standard deviation of both sets, the standardised mean difference
   ``smd = (mean_b - mean_a) / sqrt((sd_a^2 + sd_b^2) / 2)``, the two-sample Kolmogorov-Smirnov statistic
   and the Wasserstein-1 distance, from one pass over the data with stated error bounds
   (:mod:`gap_spark.ops.drift`; grid: ``shift.histogram_bins`` bins over ``shift.histogram_range_sd``).
2. **Domain classifier** (:mod:`gap_spark.ops.domain`): a class-matched sample of about
   ``shift.domain_sample_per_set`` rows per set, ``shift.domain_folds``-fold cross-validated logistic
   regression on standardised features and on ``shift.domain_pca_k`` principal components; ROC AUC with
   a DeLong interval.
3. **Label and confidence shift** (:mod:`gap_spark.ops.label_shift`): TVD and chi-square between the
   label histograms of the full splits (train is not sampled here, only its label column is read) and,
   for every model whose predictions the evaluate stage wrote, the confidence distributions on val and v2.

Outputs (:class:`~gap_spark.contracts.run.RunDir`): ``shift.json`` (see :func:`run_shift`) and the
per-feature table ``shift/feature_stats`` (Parquet) and ``.csv``, one row per feature and pair.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import manifest_summary, read_dataset
from gap_spark.contracts.tables import table_csv
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError
from gap_spark.present.format import fmt, interval

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.contracts.run import RunDir
    from gap_spark.core.config import Config
    from gap_spark.core.settings import ShiftSettings

__all__ = ["PAIRS", "find_predictions", "run_shift"]

log = logging.getLogger(__name__)

# (pair name, set a, set b): statistics are "b relative to a" (smd = mean_b - mean_a over the pooled sd).
PAIRS: tuple[tuple[str, str, str], ...] = (("val_v2", "val", "v2"), ("train_val", "train", "val"))
Pair = tuple[str, str, str]


def run_shift(spark: "SparkSession", config: "Config", paths: "Paths") -> dict:
    """Stage entry point: write ``RUN_DIR/shift.json`` and the per-feature tables.

    shift.json holds ``features`` (per pair: ``n_features, threshold, n_shifted, top`` and the error
    bounds), ``domain_classifier`` (per pair: ``auc, ci95, auc_pca, ci95_pca, rows_per_set,
    top_features``), ``labels`` (per pair: TVD and chi-square), ``confidence`` (per model, only when
    predictions exist), ``dataset``, ``settings``, ``phase_seconds`` and ``seconds``. The pairs are
    ``val_v2`` and, when the dataset has a train split, ``train_val`` (the control). The returned summary
    is what the file holds (NaN as None).
    """
    from pyspark import StorageLevel

    started = time.time()
    settings = config.settings.shift
    frames, manifest, dim = _read_dataset(spark, paths.data)
    phases: dict[str, float] = {}

    sets: dict[str, DataFrame] = {"val": frames["val"], "v2": frames["v2"]}
    train_sample = None
    if "train" in frames:
        # The control sample is read four times (count, grid sample, statistics pass, domain sample), and
        # each read of it would scan all of train: keep it.
        train_sample = frames["train"].sample(withReplacement=False, fraction=settings.train_control_fraction,
                                              seed=settings.seed).persist(StorageLevel.MEMORY_AND_DISK)
        sets["train"] = train_sample
    pairs = [p for p in PAIRS if p[1] in sets and p[2] in sets]
    try:
        t = time.time()
        features = _feature_statistics(sets, pairs, dim, settings, paths.run_dir)
        phases["feature_stats"] = time.time() - t
        t = time.time()
        domain = _domain_classifiers(sets, pairs, settings)
        phases["domain_classifier"] = time.time() - t
    finally:
        if train_sample is not None:
            train_sample.unpersist()

    t = time.time()
    labels = _label_shift(frames, pairs)
    phases["labels"] = time.time() - t

    summary: dict[str, Any] = {"features": features, "domain_classifier": domain, "labels": labels}
    t = time.time()
    confidence = _confidence_shift(spark, paths.run_dir, settings)
    if confidence:
        summary["confidence"] = confidence
        phases["confidence"] = time.time() - t

    summary["dataset"] = manifest_summary(manifest)
    summary["settings"] = asdict(settings)
    summary["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
    summary["seconds"] = round(time.time() - started, 3)
    summary = fs.json_safe(summary)
    fs.write_json(paths.run_dir.shift, summary)
    log.info("shift: %s written in %.1f s", paths.run_dir.shift, summary["seconds"])
    return summary


def _read_dataset(spark: "SparkSession", data_dir: str) -> tuple[dict[str, "DataFrame"], dict, int]:
    """The splits, the manifest and D; a dataset without val and v2 or without D is a DatasetError."""
    frames, manifest = read_dataset(spark, data_dir)
    for split in ("val", "v2"):
        if split not in frames:
            raise DatasetError(f"dataset {data_dir} has no {split} split: nothing to compare")
    dim = manifest.get("dim")
    if not isinstance(dim, int) or dim < 1:
        raise DatasetError(f"the manifest of {data_dir} does not give the feature dimension")
    return frames, manifest, dim


def _feature_statistics(sets: dict[str, "DataFrame"], pairs: list[Pair], dim: int, settings: "ShiftSettings",
                        run_dir: "RunDir") -> dict[str, Any]:
    """Write the per-feature table (Parquet and CSV) and return the ``features`` block of shift.json."""
    from pyspark.sql import functions as F

    from gap_spark.ops.drift import summarise_feature_shift
    from gap_spark.ops.drift_spark import feature_shift_stats

    stats = feature_shift_stats(sets, pairs, dim, settings.histogram_bins, settings.histogram_range_sd,
                                seed=settings.seed)
    stats = stats.withColumn("shifted", F.abs(F.col("smd")) > settings.smd_threshold).persist()
    stats.orderBy("pair", "feature").write.mode("overwrite").parquet(fs.to_spark_uri(run_dir.feature_stats_parquet))
    local: pd.DataFrame = stats.toPandas()
    local = local.sort_values(["pair", "feature"]).reset_index(drop=True)
    stats.unpersist()
    fs.write_text(run_dir.feature_stats_csv, table_csv(fs.json_safe(local.to_dict("records")), list(local.columns)))
    return {pair: summarise_feature_shift(local, pair, settings.smd_threshold, settings.top_features)
            for pair, _, _ in pairs}


def _domain_classifiers(sets: dict[str, "DataFrame"], pairs: list[Pair],
                        settings: "ShiftSettings") -> dict[str, Any]:
    """The ``domain_classifier`` block: one class-matched sample and cross-validated AUC per pair."""
    from gap_spark.ops.domain import balanced_sample, domain_auc

    domain = {}
    for i, (pair, a, b) in enumerate(pairs):
        sample = balanced_sample(sets[a], sets[b], settings.domain_sample_per_set, settings.seed + 100 * i)
        domain[pair] = domain_auc(sample, settings.domain_folds, settings.seed + 100 * i,
                                  settings.domain_pca_k, settings.domain_reg_param, settings.domain_max_iter,
                                  settings.top_features)
        log.info("shift: domain classifier %s: AUC %s %s, on PCA features %s %s", pair, fmt(domain[pair]["auc"]),
                 interval(domain[pair]["ci95"]), fmt(domain[pair]["auc_pca"]), interval(domain[pair]["ci95_pca"]))
    return domain


def _label_shift(frames: dict[str, "DataFrame"], pairs: list[Pair]) -> dict[str, Any]:
    """The ``labels`` block, from the full splits: only the label column is read, so this is cheap even for train."""
    from gap_spark.ops.frames import label_count_frame
    from gap_spark.ops.label_shift import label_shift

    counts = label_count_frame({s: frames[s] for s in ("train", "val", "v2") if s in frames}).toPandas()
    return {pair: label_shift(counts, a, b) for pair, a, b in pairs}


def _confidence_shift(spark: "SparkSession", run_dir: "RunDir", settings: "ShiftSettings") -> dict[str, Any]:
    """The ``confidence`` block: per model with readable predictions on val and v2 (empty if none)."""
    from pyspark.errors import AnalysisException

    from gap_spark.ops.label_shift import confidence_shift

    confidence = {}
    for model, split_paths in find_predictions(run_dir).items():
        try:
            preds = {s: spark.read.parquet(fs.to_spark_uri(p)) for s, p in split_paths.items()}
        except AnalysisException as exc:  # an empty or half-written directory: say so and go on without it
            log.warning("shift: cannot read the predictions of %s (%s); skipping them", model, exc)
            continue
        if "confidence" not in preds["val"].columns or "confidence" not in preds["v2"].columns:
            log.warning("shift: the predictions of %s have no confidence column; skipping them", model)
            continue
        confidence[model] = confidence_shift(preds["val"], preds["v2"], settings.histogram_bins,
                                             settings.histogram_range_sd)
    return confidence


def find_predictions(run_dir: "RunDir", splits: tuple[str, str] = ("val", "v2")) -> dict[str, dict[str, str]]:
    """``{model: {split: path}}`` for every model with predictions on both splits in the run."""
    if not fs.is_dir(run_dir.predictions_root):
        return {}
    found = {}
    for model in fs.list_dir(run_dir.predictions_root):
        paths = {split: run_dir.predictions(model, split) for split in splits}
        if all(fs.is_dir(p) for p in paths.values()):
            found[model] = paths
    return found
