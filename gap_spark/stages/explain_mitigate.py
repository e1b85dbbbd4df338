"""The explain stage's mitigations, measured before and after with paired bootstrap intervals.

- ``adabn`` and ``coral`` (:mod:`gap_spark.ops.realign`): v2's features are re-aligned and scored by the
  saved model; val is left as it is. "Before" is evaluate's saved predictions.
- ``importance_weighted`` and ``class_balanced`` (:mod:`gap_spark.ops.refit`): the models named in
  ``explain.refit_models`` that end in a logistic regression are refitted from their own coefficients on
  a stratified sample of train, without weights ("before") and with them ("after"), and both refits
  score val and v2.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gap_spark.core.session import is_connect, job_description, warn_once
from gap_spark.models.lr import lr_estimator, lr_params
from gap_spark.ops.density import mean_logit, weight_diagnostics
from gap_spark.ops.paired import before_after, correct_pairs, paired_sums
from gap_spark.ops.predictions import EVAL_SETS, predictions_frame
from gap_spark.ops.realign import Moments, adabn_map, apply_affine, coral_map, feature_moments, scaler_statistics
from gap_spark.ops.refit import WEIGHT_COL, class_balanced_weights, refit_classifier, train_sample

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.core.settings import ExplainSettings, LRSettings
    from gap_spark.ops.explain import FeatureRatio

__all__ = ["MitigationContext", "mitigations"]

log = logging.getLogger(__name__)

REALIGN = ("adabn", "coral")
REFIT = ("importance_weighted", "class_balanced")
NOTES = {
    "adabn": "v2 standardised by its own per-feature mean and sd in the model's standardised space; val unchanged",
    "coral": "v2's mean and covariance matched to val's in the model's standardised space (CORAL, shrinkage "
             "lambda on both covariances); val unchanged",
    "importance_weighted": "train rows weighted by the val-vs-v2 density ratio on the features",
    "class_balanced": "train rows weighted so that every class carries the same total weight",
}


@dataclass
class MitigationContext:
    """What every model's mitigations share: the sets, the feature ratio and cached moments."""

    spark: "SparkSession"
    settings: "ExplainSettings"
    lr: "LRSettings"
    sets: dict[str, "DataFrame"]  # val, v2 (dataset rows)
    train: "DataFrame | None"
    classes: int
    features: "FeatureRatio"
    feature_threshold: float
    moments: dict[str, Moments] = field(default_factory=dict)
    sample: "DataFrame | None" = None

    def set_moments(self, split: str) -> Moments:
        if split not in self.moments:
            with job_description(self.spark, f"gap-spark explain: moments of {split}"):
                self.moments[split] = feature_moments(self.sets[split], covariance="coral" in self.settings.mitigations)
        return self.moments[split]

    def close(self) -> None:
        if self.sample is not None:
            self.sample.unpersist()


def mitigations(ctx: MitigationContext, name: str, model: "PipelineModel",
                predictions: dict[str, "DataFrame"]) -> dict[str, Any]:
    """Every configured mitigation of one model: ``{mitigation: before/after block}`` (see
    :func:`~gap_spark.ops.paired.before_after`), each with ``note`` and ``seconds``."""
    out: dict[str, Any] = {}
    for kind in (k for k in REALIGN if k in ctx.settings.mitigations):
        t = time.time()
        with job_description(ctx.spark, f"gap-spark explain: {kind} for {name}"):
            out[kind] = _realigned(ctx, kind, model, predictions)
        out[kind]["seconds"] = round(time.time() - t, 3)
    wanted: list[str] = [k for k in REFIT if k in ctx.settings.mitigations]
    if wanted and name in ctx.settings.refit_models:
        out.update(_refits(ctx, name, model, predictions, wanted))
    return out


def _realigned(ctx: MitigationContext, kind: str, model: "PipelineModel",
               predictions: dict[str, "DataFrame"]) -> dict[str, Any]:
    val_m, v2_m = ctx.set_moments("val"), ctx.set_moments("v2")
    mean, std = scaler_statistics(model) or (val_m.mean, val_m.std)
    affine = adabn_map(mean, std, v2_m) if kind == "adabn" else coral_map(mean, std, val_m, v2_m,
                                                                           ctx.settings.coral_shrinkage)
    aligned = predictions_frame(model.transform(apply_affine(ctx.sets["v2"], affine))).persist()
    try:
        pairs = {"val": correct_pairs(predictions["val"], predictions["val"]),
                 "v2": correct_pairs(predictions["v2"], aligned)}
        result = before_after(paired_sums(pairs, ctx.settings.bootstrap_replicates, ctx.settings.seed))
    finally:
        aligned.unpersist()
    return {**result, "note": NOTES[kind]}


def _train_sample(ctx: MitigationContext) -> "DataFrame":
    """The stratified train sample with its density-ratio column (once for every refitted model)."""
    from pyspark.sql import functions as F

    if ctx.sample is None:
        assert ctx.train is not None
        sample = train_sample(ctx.train, ctx.settings.refit_sample_rows, ctx.settings.seed)
        prior = math.log(ctx.features.n_val / ctx.features.n_v2)
        logits = mean_logit(ctx.features.models, sample)
        raw = F.exp(F.least(F.col("logit"), F.lit(30.0)) + F.lit(prior))
        ratios = logits.select("row_id", raw.alias("ratio_raw"),
                               F.least(raw, F.lit(ctx.feature_threshold)).alias("ratio"))
        ctx.sample = sample.join(ratios, "row_id").persist()
    return ctx.sample


def _refits(ctx: MitigationContext, name: str, model: "PipelineModel", predictions: dict[str, "DataFrame"],
            wanted: list[str]) -> dict[str, Any]:
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.sql import functions as F

    if is_connect(ctx.spark):
        reason = "a refit from saved coefficients needs a classic (JVM) session, not Spark Connect"
        warn_once("refit", "explain: the refit mitigations are not measured: %s", reason)
        return {k: {"note": f"not measured: {reason}"} for k in wanted}
    if ctx.train is None or not isinstance(model.stages[-1], LogisticRegressionModel):
        reason = "the dataset has no train split" if ctx.train is None else "it is not a logistic regression"
        log.info("explain: %s: no refit mitigations (%s)", name, reason)
        return {k: {"note": f"not measured: {reason}"} for k in wanted}
    t = time.time()
    with job_description(ctx.spark, f"gap-spark explain: refit {name} on a train sample"):
        sample = _train_sample(ctx)
        rows = sample.count()
        features_col = model.stages[-1].getFeaturesCol()
        params = {**lr_params(ctx.lr), "maxIter": ctx.settings.refit_max_iter}

        def scored(refit: "PipelineModel") -> dict[str, "DataFrame"]:
            return {s: predictions_frame(refit.transform(ctx.sets[s])).persist() for s in EVAL_SETS}

        before = scored(refit_classifier(model, sample, lr_estimator(params, features_col), ctx.classes, None))
    setup = time.time() - t
    data = {"importance_weighted": sample.withColumn(WEIGHT_COL, F.col("ratio")),
            "class_balanced": class_balanced_weights(sample)}
    out: dict[str, Any] = {}
    try:
        for kind in wanted:
            t = time.time()
            with job_description(ctx.spark, f"gap-spark explain: {kind} refit of {name}"):
                after = scored(refit_classifier(model, data[kind], lr_estimator(params, features_col), ctx.classes,
                                                WEIGHT_COL))
                pairs = {s: correct_pairs(before[s], after[s]) for s in EVAL_SETS}
                out[kind] = before_after(paired_sums(pairs, ctx.settings.bootstrap_replicates, ctx.settings.seed))
            for frame in after.values():
                frame.unpersist()
            refit = {"sample_rows": rows, "iterations": ctx.settings.refit_max_iter,
                     "start": "the saved model's coefficients",
                     "before": "the same refit without weights (same sample, start and iterations)"}
            out[kind].update(note=NOTES[kind], seconds=round(time.time() - t + setup / len(wanted), 3), refit=refit)
        if "importance_weighted" in out:
            out["importance_weighted"]["refit"]["weights"] = weight_diagnostics(sample, ctx.feature_threshold)
    finally:
        for frame in before.values():
            frame.unpersist()
    return out
