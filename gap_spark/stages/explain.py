"""The explain stage: where each model's gap between val and v2 comes from, v2's accuracy estimated without
v2's labels, and mitigations measured before and after.

1. The density ratio ``w(x) = p(v2 | x) / p(val | x) * n_val / n_v2``, cross-fitted on every row of val
   and v2 (:mod:`gap_spark.ops.density`; ``explain.domain_*``), per model stacked with its scores.
2. Per model (:mod:`gap_spark.ops.explain`): the gap split into label mix, covariate shift and residual,
   the per-class table, and six label-free estimates of v2's accuracy scored against the truth; every
   interval from the evaluate stage's Poisson bootstrap (the models and the ratio are not refitted).
3. Per model (:mod:`gap_spark.stages.explain_mitigate`): the mitigations of ``explain.mitigations``.

It reads the dataset, the saved models and evaluate's predictions (which must hold ``entropy``), and
writes ``RUN_DIR/explain.json`` and two figures into the run's figures folder, listed in the file.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import manifest_summary, read_manifest, read_split
from gap_spark.contracts.explain_outputs import parse_explain
from gap_spark.contracts.run import EXPLAIN_FIGURES
from gap_spark.contracts.run_artifacts import FigureEntry
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError, GapSparkError
from gap_spark.core.session import job_description
from gap_spark.models import model_title
from gap_spark.models.saved import check_model_matches_dataset, load_models
from gap_spark.ops.density import ESS_WARNING_FRACTION, ratio_frame, weight_diagnostics
from gap_spark.ops.explain import BOOTSTRAP_NOTE, explain_model, fit_feature_ratio, model_ratio
from gap_spark.ops.predictions import EVAL_SETS, PREDICTION_COLUMNS
from gap_spark.present.format import fmt, interval, pct
from gap_spark.present.plots_explain import mitigations_figure, waterfall_figure
from gap_spark.stages.explain_mitigate import MitigationContext, mitigations

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.contracts.run import RunDir
    from gap_spark.core.config import Config

__all__ = ["parts_line", "run_explain"]

log = logging.getLogger(__name__)


def run_explain(spark: "SparkSession", config: "Config", paths: "Paths") -> dict[str, Any]:
    """Stage entry point: write ``RUN_DIR/explain.json`` (and its figures) for every model of the run.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        Reads ``config.settings.explain`` (and ``train.lr`` for the refits).
    paths : Paths
        Reads the dataset and the run's models and predictions; writes under ``paths.run_dir``.

    Returns
    -------
    dict
        The content of ``explain.json``: ``models`` (per model ``accuracy``, ``parts``, ``features_only``,
        ``per_class``, ``estimators``, ``weights``, ``mitigations``), ``weights`` (the features' ratio),
        ``bootstrap``, ``sign``, ``figures``, ``warnings``, ``settings``, ``dataset``, ``phase_seconds``
        and ``seconds``.

    Raises
    ------
    GapSparkError
        No models, a model that does not match the dataset, or predictions missing or without
        ``entropy`` (run ``gap-spark evaluate`` first); ``DatasetError`` for a missing dataset.
    """
    started = time.time()
    settings = config.settings.explain
    run_dir = paths.run_dir
    manifest, classes, models = _models_and_manifest(paths)
    predictions = {name: _predictions(spark, run_dir, name) for name in models}
    sets = {split: read_split(spark, paths.data, split, manifest) for split in EVAL_SETS}
    train = read_split(spark, paths.data, "train", manifest) if "train" in manifest.get("splits", {}) else None

    phases: dict[str, float] = {}
    t = time.time()
    with job_description(spark, "gap-spark explain: density ratio on the features"):
        features = fit_feature_ratio(sets["val"], sets["v2"], settings)
        feature_ratios, threshold = ratio_frame(features.logits, features.n_val, features.n_v2, settings.clip_quantile)
        feature_weights = {"inputs": "features", "auc": features.auc, **weight_diagnostics(feature_ratios, threshold)}
    phases["density_ratio"] = time.time() - t
    ctx = MitigationContext(spark, settings, config.settings.train.lr, sets, train, classes, features, threshold)
    try:
        alone = feature_ratios if settings.domain_scores else None  # for the features-only parts
        blocks = {name: _explain(spark, name, model, predictions[name], (features, alone), ctx, classes, phases)
                  for name, model in models.items()}
    finally:
        ctx.close()
    warnings = _warnings({"features": feature_weights, **{n: b["weights"] for n, b in blocks.items()}})
    doc: dict[str, Any] = {
        "models": blocks, "weights": {"features": feature_weights}, "bootstrap": {
            "replicates": settings.bootstrap_replicates, "seed": settings.seed, **BOOTSTRAP_NOTE},
        "sign": "val minus v2; parts and gaps in percentage points, accuracies as fractions",
        "warnings": warnings, "settings": asdict(settings), "dataset": manifest_summary(manifest)}
    doc["figures"] = _figures(run_dir, doc)
    doc["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
    doc["seconds"] = round(time.time() - started, 3)
    doc = fs.json_safe(doc)
    fs.write_json(run_dir.explain, doc)
    log.info("explain: wrote %s (%.1f s)", run_dir.explain, doc["seconds"])
    return doc


def _models_and_manifest(paths: "Paths") -> tuple[dict[str, Any], int, dict[str, "PipelineModel"]]:
    """The dataset's manifest, its number of classes and the run's models, each checked against it."""
    manifest = read_manifest(paths.data)
    classes = manifest.get("classes")
    if not isinstance(classes, int) or classes < 2:
        raise DatasetError(f"the manifest of {paths.data} does not give the number of classes")
    models = load_models(paths.run_dir)
    if not models:
        raise GapSparkError(
            f"no models in {paths.run_dir.models}: run `gap-spark train` and `gap-spark evaluate` first")
    for name, model in models.items():
        check_model_matches_dataset(name, model, manifest)
    return manifest, classes, models


def _predictions(spark: "SparkSession", run_dir: "RunDir", name: str) -> dict[str, "DataFrame"]:
    """evaluate's saved predictions of one model on val and v2, refused without the ``entropy`` column."""
    frames = {}
    for split in EVAL_SETS:
        path = run_dir.predictions(name, split)
        if not fs.is_dir(path):
            raise GapSparkError(f"no predictions of {name} on {split} at {path}: run `gap-spark evaluate` first")
        frame = spark.read.parquet(fs.to_spark_uri(path))
        missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
        if missing:
            raise GapSparkError(f"the predictions at {path} lack {', '.join(missing)}: run `gap-spark evaluate` again")
        frames[split] = frame
    return frames


def _explain(spark: "SparkSession", name: str, model: "PipelineModel", predictions: dict[str, "DataFrame"],
             features: tuple[Any, "DataFrame | None"], ctx: MitigationContext, classes: int,
             phases: dict[str, float]) -> dict[str, Any]:
    """One model's block; ``features`` is the features' ratio and, when the model's is stacked with its
    scores, val's features-only ratios (for the ``features_only`` parts)."""
    t = time.time()
    settings = ctx.settings
    with job_description(spark, f"gap-spark explain: decomposition and estimators of {name}"):
        ratios, weights = model_ratio(features[0], predictions["val"], predictions["v2"], settings)
        block = explain_model(predictions["val"], predictions["v2"], ratios, classes, settings, features[1])
    block["weights"] = weights
    phases[f"{name}.decomposition"] = time.time() - t
    parts = block["parts"]
    log.info("explain: %s", parts_line(name, parts, weights))
    t = time.time()
    block["mitigations"] = mitigations(ctx, name, model, predictions)
    phases[f"{name}.mitigations"] = time.time() - t
    return block


def parts_line(name: str, parts: dict[str, Any], weights: dict[str, Any]) -> str:
    """The log line of one model's decomposition, its numbers formatted as the report formats them: points
    to 1 decimal, the gap's interval, the effective sample size as a percentage."""
    value = {k: fmt((parts.get(k) or {}).get("value"), 1) for k in ("gap", "label_mix", "covariate", "residual")}
    ci = interval((parts.get("gap") or {}).get("ci95"), 1, 1) or "n/a"
    return (f"{name}: gap {value['gap']} points (95% CI {ci}) = label mix {value['label_mix']} + covariate "
            f"{value['covariate']} + residual {value['residual']} (ESS {pct(weights.get('ess_fraction'))} of val)")


def _warnings(weights: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for owner, w in weights.items():
        if w.get("ess_warning"):
            text = (f"{owner}: the density ratio's effective sample size is {w.get('ess') or 0:.0f} of val's "
                    f"{w.get('rows')} rows, under {ESS_WARNING_FRACTION:.0%}: the importance-weighted numbers "
                    "rest on few rows")
            log.warning("explain: %s", text)
            out.append(text)
    return out


def _figures(run_dir: "RunDir", doc: dict[str, Any]) -> list[dict[str, str]]:
    """Draw the waterfall and the mitigations from the document's own numbers; their index entries."""
    problems: list[str] = []
    typed = parse_explain(fs.json_safe(doc), run_dir.relative(run_dir.explain), problems)
    titles = {name: model_title(name) for name in typed.models}
    entries = []
    for key, drawn in (("waterfall", waterfall_figure(typed.models, titles)),
                       ("mitigations", mitigations_figure(typed.models, titles))):
        if drawn is None:
            continue
        fs.write_bytes(run_dir.figure(EXPLAIN_FIGURES[key]), drawn.png)
        entries.append(FigureEntry(EXPLAIN_FIGURES[key], drawn.title, drawn.caption).as_json())
    return entries
