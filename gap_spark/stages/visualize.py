"""`gap-spark visualize`: a stratified sample, PCA then UMAP and t-SNE, and the run's figures.

Spark does the sampling; only the sample (``visualize.sample_size`` points, half val and half v2,
plus up to ``visualize.focus_points_per_class`` points of each class in the per-class views) reaches
the driver, through Arrow. The embeddings run on the driver with fixed seeds and at most
``visualize.threads`` threads. The figures that need only the run's small outputs (feature shifts,
per-class accuracy, reliability, confused pairs) are drawn when those outputs exist and skipped,
with the reason in the summary, when they do not.

Outputs (paths from :class:`~gap_spark.contracts.run.RunDir`): the figures' PNGs, their index
(``[{"file", "title", "caption"}]``) and the embedding table (the sample's coordinates, no features).
"""
from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.contracts.dataset import manifest_summary, read_dataset
from gap_spark.contracts.run import VISUALIZE_FIGURES, RunDir
from gap_spark.contracts.run_artifacts import (
    FigureEntry,
    RunArtifacts,
    load_run_artifacts,
    read_optional_csv,
    write_figures_index,
)
from gap_spark.contracts.run_outputs import Shift
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError
from gap_spark.ops.embedding import Embedding, Sample, choose_focus_classes, collect_sample, embed, sample_sets
from gap_spark.ops.frames import label_counts
from gap_spark.present import plots_embedding, plots_results
from gap_spark.present.format import run_class_labels
from gap_spark.present.plots_base import Drawn

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config
    from gap_spark.core.settings import VisualizeSettings

__all__ = ["FIGURE_KINDS", "figure_class_names", "run_visualize"]

log = logging.getLogger(__name__)

SETS = ("val", "v2")
# The plots_base.SIZES kind of each figure, so its pixel size is known.
FIGURE_KINDS = {"by_set": "embedding", "by_class": "embedding", "density": "embedding", "features": "bars",
                "per_class": "scatter", "reliability": "reliability", "pairs": "pairs"}


def _control_smd(run_dir: RunDir, shift: Shift) -> dict[str, float]:
    """Train-vs-val SMD per feature (as str): from the shift output's control top list, completed by the
    feature-statistics table when it has ``pair, feature, smd`` columns."""
    control = shift.features.get("train_val")
    out = {str(r.feature): r.smd for r in (control.top if control else ()) if r.smd is not None}
    table, _ = read_optional_csv(run_dir.feature_stats_csv, ("pair", "feature", "smd"))
    if table is not None:
        rows = table[table["pair"].astype(str) == "train_val"]
        out.update({str(f): float(v) for f, v in zip(rows["feature"], rows["smd"]) if v == v})
    return out


def _draw_sample(dataset: dict[str, "DataFrame"], paths: "Paths", s: "VisualizeSettings",
                 art: RunArtifacts) -> tuple[Sample, list[int], str]:
    """The sample, chosen in Spark and collected through Arrow, with the focus classes."""
    frames = {split: dataset[split] for split in SETS}
    counts = {split: label_counts(frames[split]) for split in SETS}
    available = set(counts["val"]) & set(counts["v2"])
    focus, focus_source = choose_focus_classes(art.per_class, available, s.classes, s.seed)
    # Equal halves, so the set views compare like with like even when v2 is the smaller set.
    half = min(s.sample_size // 2, *(sum(counts[split].values()) for split in SETS))
    if half < 2:
        raise DatasetError(f"val or v2 in {paths.data} has fewer than 2 rows; nothing to embed")
    sample = collect_sample(sample_sets(frames, counts, half, focus, s.focus_points_per_class, s.seed))
    return sample, focus, focus_source


def figure_class_names(art: RunArtifacts) -> dict[int, str]:
    """Label -> ``name (wnid)`` from the run's per-class and confused-pair tables (empty without names)."""
    return run_class_labels(art.per_class, art.confused_pairs)


def _embedding_figures(sample: Sample, focus: list[int], focus_source: str, s: "VisualizeSettings",
                       run_dir: RunDir, seconds: dict[str, float],
                       names: dict[int, str]) -> tuple[list[tuple[str, Drawn]], dict[str, str], dict[str, Any]]:
    """Embed the whole sample and draw the three embedding figures; the set views use the balanced part."""
    drawn: list[tuple[str, Drawn]] = []
    skipped: dict[str, str] = {}
    if not s.methods or len(sample) < 4:
        reason = "visualize.methods is empty" if not s.methods else "the sample has fewer than 4 points"
        return drawn, dict.fromkeys(("by_set", "by_class", "density"), reason), {}
    emb = embed(sample.features, s.methods, s.pca_dims, s.seed, s.threads, s.umap_neighbors, s.umap_min_dist,
                s.tsne_perplexity, s.tsne_iterations)
    seconds.update({f"embed_{k}": v for k, v in emb.seconds.items()})
    base_sets = sample.sets[sample.in_base]
    base_coords = {m: xy[sample.in_base] for m, xy in emb.coords.items()}
    drawn.append(("by_set", plots_embedding.embedding_by_set_figure(base_coords, base_sets)))
    if focus and sample.in_focus.any():
        drawn.append(("by_class", plots_embedding.embedding_by_class_figure(
            emb.coords, sample.sets, sample.labels, sample.in_focus, focus, class_names=names,
            class_source=focus_source)))
    else:
        skipped["by_class"] = "no class is present in both val and v2"
    drawn.append(("density", plots_embedding.density_difference_figure(base_coords, base_sets,
                                                                       bins=s.density_bins)))
    _write_embedding(run_dir.embedding, sample, emb)
    return drawn, skipped, {"pca_dims": emb.pca_dims, "pca_explained_variance": round(emb.pca_explained, 4)}


def _result_figures(art: RunArtifacts) -> tuple[list[tuple[str, Drawn]], dict[str, str]]:
    """The figures drawn from the run's other outputs, each only when its input exists."""
    run_dir = art.run_dir
    names = figure_class_names(art)
    drawn: list[tuple[str, Drawn]] = []
    skipped: dict[str, str] = {}
    main = art.shift.features.get("val_v2") if art.shift else None
    if art.shift is not None and main is not None and main.top:
        dc = art.shift.domain_classifier.get("val_v2")
        drawn.append(("features", plots_results.feature_shifts_figure(
            main.top, main.threshold, _control_smd(run_dir, art.shift), dc.top_features if dc else None)))
    else:
        skipped["features"] = f"{run_dir.relative(run_dir.shift)} is missing or has no features.val_v2.top"
    if art.per_class is not None and not art.per_class.empty and art.model:
        drawn.append(("per_class", plots_results.per_class_figure(art.per_class, art.model, class_names=names)))
    else:
        skipped["per_class"] = f"no {run_dir.relative(run_dir.per_class_csv('<model>'))} in the run"
    models = {name: m for name, m in (art.metrics.models.items() if art.metrics else ())
              if m.val.reliability or m.v2.reliability}
    if models:
        drawn.append(("reliability", plots_results.reliability_figure(models)))
    else:
        skipped["reliability"] = f"{run_dir.relative(run_dir.metrics)} is missing or has no reliability bins"
    if art.confused_pairs is not None and not art.confused_pairs.empty and art.model:
        drawn.append(("pairs", plots_results.confused_pairs_figure(art.confused_pairs, art.model,
                                                                           class_names=names)))
    else:
        skipped["pairs"] = f"no {run_dir.relative(run_dir.confused_pairs_csv('<model>'))} in the run"
    return drawn, skipped


def _write_figures(run_dir: RunDir, drawn: list[tuple[str, Drawn]], skipped: dict[str, str]) -> list[FigureEntry]:
    """Write the PNGs and the index; remove figures of ours a previous run drew but this one did not."""
    index = []
    for name, figure in drawn:
        fs.write_bytes(run_dir.figure(VISUALIZE_FIGURES[name]), figure.png)
        index.append(FigureEntry(VISUALIZE_FIGURES[name], figure.title, figure.caption))
    for name in skipped:
        stale = run_dir.figure(VISUALIZE_FIGURES[name])
        if fs.exists(stale):
            fs.delete(stale)
    write_figures_index(run_dir, index)
    return index


def run_visualize(spark: Any, config: "Config", paths: "Paths") -> dict:
    """Sample val and v2, embed with PCA + UMAP + t-SNE, and draw every figure whose inputs exist.

    Parameters
    ----------
    spark : SparkSession
        Reads and samples the dataset.
    config : Config
        ``settings.visualize`` (sample sizes, classes, model, PCA, UMAP and t-SNE settings, methods,
        threads, density bins) and ``settings.train.models``.
    paths : Paths
        ``paths.data`` (dataset) and ``paths.run_dir`` (read and written).

    Returns
    -------
    dict
        ``figures`` (files drawn), ``skipped`` (figure -> reason), ``sample`` (points per set, focus
        classes and how they were chosen), ``pca``, ``seconds`` and ``dataset`` (manifest summary).

    Raises
    ------
    DatasetError
        When the dataset is missing or lacks val or v2.
    """
    started = time.perf_counter()
    s = config.settings.visualize
    run_dir = paths.run_dir
    frames, manifest = read_dataset(spark, paths.data)
    for split in SETS:
        if split not in frames:
            raise DatasetError(f"dataset {paths.data} has no '{split}' split; visualize compares val with v2")
    # visualize.model, else the best model on the selection slice (never on val or v2): choose_model.
    art = load_run_artifacts(run_dir, s.model, config.settings.train.models)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sample, focus, focus_source = _draw_sample(frames, paths, s, art)
    seconds["sample"] = time.perf_counter() - t0
    log.info("visualize: sampled %d points (%s in the balanced sample, %d in the per-class views) in %.1fs",
             len(sample), {x: int(np.sum(sample.sets[sample.in_base] == x)) for x in SETS},
             int(sample.in_focus.sum()), seconds["sample"])
    drawn, skipped, pca = _embedding_figures(sample, focus, focus_source, s, run_dir, seconds, figure_class_names(art))
    t0 = time.perf_counter()
    more, more_skipped = _result_figures(art)
    seconds["other_figures"] = time.perf_counter() - t0
    index = _write_figures(run_dir, drawn + more, {**skipped, **more_skipped})
    seconds["total"] = time.perf_counter() - started
    return {
        "figures": [e.file for e in index],
        "skipped": {**skipped, **more_skipped},
        "sample": {"val": int(np.sum(sample.sets[sample.in_base] == "val")),
                   "v2": int(np.sum(sample.sets[sample.in_base] == "v2")),
                   "focus_points": int(sample.in_focus.sum()), "focus_classes": focus,
                   "focus_source": focus_source, "model": art.model},
        "pca": pca,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "dataset": manifest_summary(manifest),
    }


def _write_embedding(path: str, sample: Sample, emb: Embedding) -> None:
    """The sample's coordinates as one small Parquet file (no features), for notebooks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"set": pa.array(sample.sets.tolist(), pa.string()), "row_id": pa.array(sample.row_ids),
               "label": pa.array(sample.labels.astype(np.int32)), "in_base": pa.array(sample.in_base),
               "in_focus": pa.array(sample.in_focus)}
    for method, xy in emb.coords.items():
        columns[f"{method}_x"] = pa.array(xy[:, 0])
        columns[f"{method}_y"] = pa.array(xy[:, 1])
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    fs.write_bytes(path, buffer.getvalue())
