"""`gap-spark visualize`: a stratified sample, PCA then UMAP and t-SNE, and the run's figures.

Spark does the sampling; only the sample (``visualize.sample_size`` points, half val and half v2,
plus up to ``visualize.focus_points_per_class`` points of each class in the per-class views) reaches
the driver, through Arrow. The embeddings run on the driver with fixed seeds and at most
``visualize.threads`` threads. The figures that need only the run's small outputs (feature shifts,
per-class accuracy, reliability, confused pairs) are drawn when those outputs exist and skipped,
with the reason in the summary, when they do not.

Outputs: ``RUN_DIR/figures/*.png``, ``RUN_DIR/figures/_figures.json`` (``[{"file", "title",
"caption"}]``) and ``RUN_DIR/embedding.parquet`` (the sample's coordinates, without features).
"""
from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark import plots
from gap_spark.contracts.dataset import manifest_summary, read_dataset
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError, DatasetError
from gap_spark.report import load_run_artifacts, read_optional_csv

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

METHODS = ("umap", "tsne")
SETS = ("val", "v2")
FIGURE_FILES = {
    "by_set": "embedding_by_set.png",
    "by_class": "embedding_by_class.png",
    "density": "embedding_density_diff.png",
    "features": "feature_shifts.png",
    "per_class": "per_class_accuracy.png",
    "reliability": "reliability.png",
    "pairs": "confused_pairs.png",
}
# The plots.SIZES kind of each figure, so its pixel size is known.
FIGURE_KINDS = {"by_set": "embedding", "by_class": "embedding", "density": "embedding", "features": "bars",
                "per_class": "scatter", "reliability": "reliability", "pairs": "pairs"}
FIGURES_INDEX = "_figures.json"
TSNE_PARALLEL_MIN_POINTS = 2000


# --------------------------------------------------------------------------------------------------
# Sampling (Spark)
# --------------------------------------------------------------------------------------------------

def label_counts(frame: "DataFrame") -> dict[int, int]:
    """Rows per label of a dataset frame, in one aggregation.

    Parameters
    ----------
    frame : DataFrame
        A frame with an integer ``label`` column.

    Returns
    -------
    dict
        label -> number of rows.
    """
    return {int(r["label"]): int(r["count"]) for r in frame.groupBy("label").count().collect()}


def proportional_quotas(counts: Mapping[int, int], total: int) -> dict[int, int]:
    """Split ``total`` rows over labels in proportion to their counts (largest remainder, exact sum).

    Parameters
    ----------
    counts : mapping
        label -> rows available.
    total : int
        Rows wanted; more than available means every row.

    Returns
    -------
    dict
        label -> rows to take, never more than available.
    """
    labels = sorted(counts)
    available = np.array([counts[l] for l in labels], dtype=np.int64)
    if total >= available.sum():
        return dict(zip(labels, available.tolist()))
    share = available / available.sum() * total
    quota = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    return {l: int(q) for l, q in zip(labels, np.minimum(quota, available))}


def stratified_sample(frame: "DataFrame", counts: Mapping[int, int], base_quota: Mapping[int, int],
                      focus_quota: Mapping[int, int], seed: int) -> "DataFrame":
    """An exact per-label sample of a dataset frame, reproducible whatever the file layout.

    Each row gets a key hashed from ``row_id`` and ``seed``; per label the rows with the smallest keys
    are kept. A first filter keeps only rows whose key is below a per-label cut-off set a little above
    the quota, so the window that ranks rows sees about the sample's size, not the whole split.

    Parameters
    ----------
    frame : DataFrame
        Dataset frame with ``row_id`` and ``label``.
    counts : mapping
        label -> rows in ``frame`` (from :func:`label_counts`).
    base_quota : mapping
        label -> rows for the main (all-class) sample.
    focus_quota : mapping
        label -> rows for the per-class views (only the chosen classes).
    seed : int
        Seed of the hash.

    Returns
    -------
    DataFrame
        The input's columns plus ``in_base`` and ``in_focus`` (boolean); each row is in one or both.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keep = {l: max(base_quota.get(l, 0), focus_quota.get(l, 0)) for l in counts}
    rows = []
    for label, k in keep.items():
        if k <= 0 or counts[label] <= 0:
            continue
        # Binomial margin: k + 4 sqrt(k) + 8 expected rows leaves a shortfall practically impossible.
        cutoff = min(1.0, (k + 4.0 * math.sqrt(k) + 8.0) / counts[label])
        rows.append((int(label), float(cutoff), int(base_quota.get(label, 0)), int(focus_quota.get(label, 0))))
    spark = frame.sparkSession
    plan = spark.createDataFrame(rows, "label int, cutoff double, base_k int, focus_k int")
    key = (F.pmod(F.xxhash64(F.col("row_id"), F.lit(int(seed))), F.lit(1 << 40)) / float(1 << 40))
    ranked = (frame.join(F.broadcast(plan), "label")
              .withColumn("_key", key)
              .where(F.col("_key") < F.col("cutoff"))
              .withColumn("_rank", F.row_number().over(Window.partitionBy("label").orderBy("_key", "row_id"))))
    return (ranked
            .withColumn("in_base", F.col("_rank") <= F.col("base_k"))
            .withColumn("in_focus", F.col("_rank") <= F.col("focus_k"))
            .where(F.col("in_base") | F.col("in_focus"))
            .drop("_key", "_rank", "cutoff", "base_k", "focus_k"))


@dataclass
class Sample:
    """The collected sample: one row per point, features as a float32 matrix."""

    features: np.ndarray
    sets: np.ndarray
    labels: np.ndarray
    row_ids: np.ndarray
    in_base: np.ndarray
    in_focus: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def collect_sample(frame: "DataFrame") -> Sample:
    """Bring a sampled frame to the driver through Arrow, sorted by set, label and row_id.

    Parameters
    ----------
    frame : DataFrame
        Columns ``set, row_id, label, in_base, in_focus, features`` (array of float, all one length).

    Returns
    -------
    Sample
    """
    table = frame.select("set", "row_id", "label", "in_base", "in_focus", "features").toArrow()
    table = table.sort_by([("set", "ascending"), ("label", "ascending"), ("row_id", "ascending")])
    n = table.num_rows
    features = table.column("features").combine_chunks()
    flat = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    dim = len(flat) // n if n else 0
    lengths = features.value_lengths().to_numpy(zero_copy_only=False) if n else np.array([], int)
    if n and (lengths.min() != lengths.max() or dim * n != len(flat)):
        raise DatasetError("feature vectors in the sample have different lengths; re-run `gap-spark ingest`")
    return Sample(features=flat.reshape(n, dim),
                  sets=np.array(table.column("set").to_pylist(), dtype=object),
                  labels=table.column("label").to_numpy().astype(np.int64),
                  row_ids=table.column("row_id").to_numpy().astype(np.int64),
                  in_base=table.column("in_base").to_numpy(zero_copy_only=False).astype(bool),
                  in_focus=table.column("in_focus").to_numpy(zero_copy_only=False).astype(bool))


def choose_focus_classes(per_class: "pd.DataFrame | None", available: Iterable[int], n: int,
                         seed: int) -> tuple[list[int], str]:
    """The classes for the per-class views: the largest drops when known, otherwise seeded random ones.

    Parameters
    ----------
    per_class : DataFrame, optional
        ``per_class/<model>.csv`` (``label, val_accuracy, v2_accuracy``).
    available : iterable of int
        Labels present in both val and v2.
    n : int
        How many classes.
    seed : int
        Seed of the random choice.

    Returns
    -------
    tuple
        ``(classes, how they were chosen)``.
    """
    pool = sorted({int(x) for x in available})
    if per_class is not None and not per_class.empty:
        drops = (per_class.assign(_drop=per_class["val_accuracy"] - per_class["v2_accuracy"])
                 .dropna(subset=["_drop"]))
        drops = drops[drops["label"].astype(int).isin(pool)]
        if not drops.empty:
            top = drops.sort_values(["_drop", "label"], ascending=[False, True]).head(n)
            return [int(x) for x in top["label"]], "the classes with the largest accuracy drop"
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pool, size=min(n, len(pool)), replace=False) if pool else []
    return sorted(int(x) for x in chosen), "random classes (no per-class evaluation in this run)"


# --------------------------------------------------------------------------------------------------
# Embedding (driver)
# --------------------------------------------------------------------------------------------------

def prepare_numba(threads: int) -> None:
    """Give numba a writable JIT cache and cap its threads, before umap-learn is imported.

    umap-learn and pynndescent compile with ``cache=True``; in a read-only install (CI images,
    site-packages owned by root) numba finds no cache location and the import fails, so the cache
    goes to a temporary directory unless ``NUMBA_CACHE_DIR`` is already set.
    """
    if "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"gap-spark-numba-{os.getuid()}")
        import sys

        if "numba" in sys.modules:  # numba reads its config at import; make it see the new directory
            from numba.core import config as numba_config

            numba_config.reload_config()
    os.makedirs(os.environ["NUMBA_CACHE_DIR"], exist_ok=True)
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


@dataclass
class Embedding:
    """2-D coordinates per method, with what the PCA kept and how long each step took."""

    coords: dict[str, np.ndarray]
    pca_dims: int
    pca_explained: float
    seconds: dict[str, float] = field(default_factory=dict)


def embed(features: np.ndarray, methods: Sequence[str] = METHODS, pca_dims: int = 50, seed: int = 17,
          threads: int = 2, umap_neighbors: int = 15, umap_min_dist: float = 0.1, tsne_perplexity: float = 30.0,
          tsne_iterations: int = 500) -> Embedding:
    """PCA to ``pca_dims`` dimensions, then each of UMAP and t-SNE to two, with fixed seeds.

    Parameters
    ----------
    features : ndarray
        ``(n, d)`` feature matrix.
    methods : sequence of str
        Any of ``"umap"`` and ``"tsne"``.
    pca_dims : int
        PCA components kept (capped by ``n - 1`` and ``d``).
    seed : int
        Seed of PCA, UMAP and t-SNE.
    threads : int
        The most threads numba, BLAS and openTSNE may use.
    umap_neighbors, umap_min_dist : int, float
        UMAP's ``n_neighbors`` (capped by ``n - 1``) and ``min_dist``.
    tsne_perplexity : float
        openTSNE's perplexity (capped at ``(n - 1) / 3``).
    tsne_iterations : int
        openTSNE's iterations after early exaggeration.

    Returns
    -------
    Embedding
    """
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    n, d = features.shape
    if n < 4:
        raise DatasetError(f"the sample has {n} points; an embedding needs at least 4")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"visualize.methods: unknown method(s) {unknown}; choose from {list(METHODS)}")
    seconds: dict[str, float] = {}
    coords: dict[str, np.ndarray] = {}
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        k = max(2, min(pca_dims, d, n - 1))
        pca = PCA(n_components=k, random_state=seed)
        reduced = pca.fit_transform(features.astype(np.float32, copy=False)).astype(np.float32)
        seconds["pca"] = time.perf_counter() - start
        for method in methods:
            start = time.perf_counter()
            if method == "umap":
                coords["umap"] = _umap(reduced, seed, threads, umap_neighbors, umap_min_dist)
            else:
                coords["tsne"] = _tsne(reduced, seed, threads, tsne_perplexity, tsne_iterations)
            seconds[method] = time.perf_counter() - start
    return Embedding(coords, k, float(np.sum(pca.explained_variance_ratio_)), seconds)


def _umap(x: np.ndarray, seed: int, threads: int, neighbors: int, min_dist: float) -> np.ndarray:
    import warnings

    prepare_numba(threads)
    import umap

    # A fixed random_state makes umap-learn run single-threaded anyway; n_jobs=1 says so and avoids a warning.
    # init="pca": umap-learn 0.5's default spectral start is not reproducible when the neighbour graph falls
    # apart into several components (measured: 1,500 synthetic points, seed 17, runs differ by the map's whole
    # width), and a fixed seed must give the same picture.
    model = umap.UMAP(n_components=2, n_neighbors=max(2, min(neighbors, len(x) - 1)), min_dist=min_dist,
                      random_state=seed, n_jobs=1, low_memory=True, init="pca")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(n_jobs|spectral|disconnected).*")
        return np.asarray(model.fit_transform(x), dtype=np.float64)


def _tsne(x: np.ndarray, seed: int, threads: int, perplexity: float, iterations: int) -> np.ndarray:
    prepare_numba(threads)  # openTSNE's neighbour search may go through pynndescent (numba)
    from openTSNE import TSNE

    # Below a few thousand points openTSNE's per-iteration thread hand-off costs more than it saves, and on a
    # busy machine it costs 10-20x (measured: 300 points, 1 s on one thread, 20 s on two under load).
    jobs = threads if len(x) >= TSNE_PARALLEL_MIN_POINTS else 1
    model = TSNE(n_components=2, perplexity=max(2.0, min(float(perplexity), (len(x) - 1) / 3.0)),
                 n_iter=iterations, initialization="pca", random_state=seed, n_jobs=jobs, verbose=False)
    return np.asarray(model.fit(x), dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------

def _settings(config: "Config") -> dict:
    s = config.section("visualize")
    for key in ("sample_size", "classes", "focus_points_per_class", "pca_dims", "threads", "density_bins",
                "umap_neighbors", "tsne_iterations"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
            raise ConfigError(f"visualize.{key} must be a positive integer, got {s[key]!r}")
    for key in ("umap_min_dist", "tsne_perplexity"):
        if not isinstance(s[key], (int, float)) or isinstance(s[key], bool) or s[key] < 0:
            raise ConfigError(f"visualize.{key} must be a non-negative number, got {s[key]!r}")
    if s["sample_size"] < 8:
        raise ConfigError(f"visualize.sample_size must be at least 8, got {s['sample_size']}")
    methods = s["methods"] or []
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"visualize.methods: unknown method(s) {unknown}; choose from {list(METHODS)}")
    s["methods"] = list(dict.fromkeys(methods))
    return s


def _control_smd(run_dir: str, shift: Mapping) -> dict[str, float]:
    """Train-vs-val SMD per feature (as str): from shift.json's control top list, completed by the
    feature_stats table when it has ``pair, feature, smd`` columns."""
    out: dict[str, float] = {}
    control = ((shift.get("features") or {}).get("train_val") or {}).get("top") or []
    for row in control:
        if isinstance(row, Mapping) and row.get("smd") is not None:
            out[str(row.get("feature"))] = float(row["smd"])
    table, _ = read_optional_csv(fs.join(run_dir, "shift", "feature_stats.csv"), ("pair", "feature", "smd"))
    if table is not None:
        rows = table[table["pair"].astype(str) == "train_val"]
        out.update({str(f): float(v) for f, v in zip(rows["feature"], rows["smd"]) if v == v})
    return out


def run_visualize(spark: Any, config: "Config", paths: "Paths") -> dict:
    """Sample val and v2, embed with PCA + UMAP + t-SNE, and draw every figure whose inputs exist.

    Parameters
    ----------
    spark : SparkSession
        Reads and samples the dataset.
    config : Config
        The ``visualize`` section (``sample_size``, ``classes``, ``focus_points_per_class``, ``model``,
        ``pca_dims``, ``seed``, ``umap_*``, ``tsne_*``, ``methods``, ``threads``, ``density_bins``).
    paths : Paths
        ``paths.data`` (dataset) and ``paths.run`` (run directory, read and written).

    Returns
    -------
    dict
        ``figures`` (files drawn), ``skipped`` (figure -> reason), ``sample`` (points per set, focus
        classes and how they were chosen), ``pca``, ``seconds`` and ``dataset`` (manifest summary).

    Raises
    ------
    DatasetError
        When the dataset is missing or lacks val or v2.
    ConfigError
        When a ``visualize`` setting is invalid.
    """
    started = time.perf_counter()
    s = _settings(config)
    frames, manifest = read_dataset(spark, paths.data)
    for split in SETS:
        if split not in frames:
            raise DatasetError(f"dataset {paths.data} has no '{split}' split; visualize compares val with v2")
    art = load_run_artifacts(paths.run, s["model"], config.get("train.models") or ("lr", "rf"))
    seconds: dict[str, float] = {}

    # 1. The sample, chosen in Spark and collected through Arrow.
    t0 = time.perf_counter()
    counts = {split: label_counts(frames[split]) for split in SETS}
    available = set(counts["val"]) & set(counts["v2"])
    focus, focus_source = choose_focus_classes(art.per_class, available, s["classes"], s["seed"])
    # Equal halves, so the set views compare like with like even when v2 is the smaller set.
    half = min(s["sample_size"] // 2, *(sum(counts[split].values()) for split in SETS))
    if half < 2:
        raise DatasetError(f"val or v2 in {paths.data} has fewer than 2 rows; nothing to embed")
    per_set = {"val": half, "v2": half}
    sampled = None
    from pyspark.sql import functions as F

    for split in SETS:
        base = proportional_quotas(counts[split], per_set[split])
        focus_quota = {c: min(counts[split].get(c, 0), s["focus_points_per_class"]) for c in focus}
        part = stratified_sample(frames[split], counts[split], base, focus_quota, s["seed"]).withColumn(
            "set", F.lit(split))
        sampled = part if sampled is None else sampled.unionByName(part)
    sample = collect_sample(sampled)
    seconds["sample"] = time.perf_counter() - t0
    log.info("visualize: sampled %d points (%s in the balanced sample, %d in the per-class views) in %.1fs",
             len(sample), {x: int(np.sum(sample.sets[sample.in_base] == x)) for x in SETS},
             int(sample.in_focus.sum()), seconds["sample"])

    drawn: list[tuple[str, plots.Drawn]] = []
    skipped: dict[str, str] = {}
    summary_embedding: dict = {}

    # 2. Embeddings of the whole sample; the set views use the balanced base part only.
    if s["methods"] and len(sample) >= 4:
        emb = embed(sample.features, s["methods"], s["pca_dims"], s["seed"], s["threads"], s["umap_neighbors"],
                    float(s["umap_min_dist"]), float(s["tsne_perplexity"]), s["tsne_iterations"])
        seconds.update({f"embed_{k}": v for k, v in emb.seconds.items()})
        summary_embedding = {"pca_dims": emb.pca_dims, "pca_explained_variance": round(emb.pca_explained, 4)}
        base_coords = {m: xy[sample.in_base] for m, xy in emb.coords.items()}
        drawn.append(("by_set", plots.embedding_by_set(base_coords, sample.sets[sample.in_base])))
        if focus and sample.in_focus.any():
            drawn.append(("by_class", plots.embedding_by_class(emb.coords, sample.sets, sample.labels,
                                                               sample.in_focus, focus, class_source=focus_source)))
        else:
            skipped["by_class"] = "no class is present in both val and v2"
        drawn.append(("density", plots.embedding_density_difference(base_coords, sample.sets[sample.in_base],
                                                                    bins=s["density_bins"])))
        _write_embedding(paths.run_file("embedding.parquet"), sample, emb)
    else:
        reason = "visualize.methods is empty" if not s["methods"] else "the sample has fewer than 4 points"
        for name in ("by_set", "by_class", "density"):
            skipped[name] = reason

    # 3. Figures from the run's other outputs, each only when its input exists.
    t0 = time.perf_counter()
    top = (((art.shift or {}).get("features") or {}).get("val_v2") or {}).get("top") or []
    if top:
        features_block = art.shift["features"]["val_v2"]
        importances = ((art.shift.get("domain_classifier") or {}).get("val_v2") or {}).get("top_features")
        drawn.append(("features", plots.feature_shifts(top, features_block.get("threshold"),
                                                       _control_smd(paths.run, art.shift), importances)))
    else:
        skipped["features"] = "shift.json is missing or has no features.val_v2.top"
    if art.per_class is not None and not art.per_class.empty and art.model:
        drawn.append(("per_class", plots.per_class_accuracy(art.per_class, art.model)))
    else:
        skipped["per_class"] = "no per_class/<model>.csv in the run"
    models = {name: m for name, m in ((art.metrics or {}).get("models") or {}).items()
              if any((m.get(x) or {}).get("reliability") for x in SETS)}
    if models:
        drawn.append(("reliability", plots.reliability(models)))
    else:
        skipped["reliability"] = "metrics.json is missing or has no reliability bins"
    if art.confused_pairs is not None and not art.confused_pairs.empty and art.model:
        drawn.append(("pairs", plots.confused_pairs(art.confused_pairs, art.model)))
    else:
        skipped["pairs"] = "no confused_pairs/<model>.csv in the run"
    seconds["other_figures"] = time.perf_counter() - t0

    # 4. Write the PNGs and the index; remove figures of ours a previous run drew but this one did not.
    index = []
    for name, figure in drawn:
        fs.write_bytes(paths.run_file("figures", FIGURE_FILES[name]), figure.png)
        index.append({"file": FIGURE_FILES[name], "title": figure.title, "caption": figure.caption})
    for name in skipped:
        stale = paths.run_file("figures", FIGURE_FILES[name])
        if fs.exists(stale):
            fs.delete(stale)
    fs.write_json(paths.run_file("figures", FIGURES_INDEX), index)
    seconds["total"] = time.perf_counter() - started
    return {
        "figures": [e["file"] for e in index],
        "skipped": skipped,
        "sample": {"val": int(np.sum(sample.sets[sample.in_base] == "val")),
                   "v2": int(np.sum(sample.sets[sample.in_base] == "v2")),
                   "focus_points": int(sample.in_focus.sum()), "focus_classes": focus,
                   "focus_source": focus_source, "model": art.model},
        "pca": summary_embedding,
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
