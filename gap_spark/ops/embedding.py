"""The visualize stage's sample and its 2-D embeddings: PCA, then UMAP and t-SNE, on numpy.

The sample is drawn in Spark (:func:`sample_sets`, with :func:`gap_spark.ops.frames.stratified_sample`)
and collected through Arrow (:func:`collect_sample`); the embeddings run on the driver with fixed seeds
and at most the threads asked for.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gap_spark.core.errors import ConfigError, DatasetError
from gap_spark.ops.frames import proportional_quotas, stratified_sample, tag_union

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = [
    "METHODS", "TSNE_PARALLEL_MIN_POINTS", "Embedding", "Sample", "choose_focus_classes", "collect_sample", "embed",
    "prepare_numba", "sample_sets",
]

METHODS = ("umap", "tsne")
TSNE_PARALLEL_MIN_POINTS = 2000
_SAMPLE_COLUMNS = ("row_id", "label", "in_base", "in_focus", "features")


# --------------------------------------------------------------------------------------------------
# The sample
# --------------------------------------------------------------------------------------------------

def sample_sets(frames: Mapping[str, "DataFrame"], counts: Mapping[str, Mapping[int, int]], per_set: int,
                focus: Sequence[int], focus_points: int, seed: int) -> "DataFrame":
    """Each set's class-stratified sample plus its per-class view, as one frame tagged by set.

    Parameters
    ----------
    frames : mapping of str to DataFrame
        Set name to dataset frame (``row_id``, ``label``, ``features``).
    counts : mapping
        Set name to its rows per label.
    per_set : int
        Rows of each set's main sample, split over labels in proportion to their counts.
    focus : sequence of int
        The classes of the per-class view.
    focus_points : int
        The most rows per focus class and set.
    seed : int
        Seed of the hash that orders rows.

    Returns
    -------
    DataFrame
        ``set, row_id, label, in_base, in_focus, features``: a row is in the main sample, the per-class
        view, or both.
    """
    samples = {}
    for name, frame in frames.items():
        quotas = {"in_base": proportional_quotas(counts[name], per_set),
                  "in_focus": {c: min(counts[name].get(c, 0), focus_points) for c in focus}}
        samples[name] = stratified_sample(frame, counts[name], quotas, seed).drop("rank")
    return tag_union(samples, list(_SAMPLE_COLUMNS))


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
    table = frame.select("set", *_SAMPLE_COLUMNS).toArrow()
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
        The per-class table of the chosen model (``label, val_accuracy, v2_accuracy``).
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
    chosen: Iterable[int] = rng.choice(pool, size=min(n, len(pool)), replace=False) if pool else []
    return sorted(int(x) for x in chosen), "random classes (no per-class evaluation in this run)"


# --------------------------------------------------------------------------------------------------
# The embeddings
# --------------------------------------------------------------------------------------------------

def prepare_numba(threads: int) -> None:
    """Give numba a writable JIT cache and cap its threads, before umap-learn is imported.

    umap-learn and pynndescent compile with ``cache=True``; in a read-only install (CI images,
    site-packages owned by root) numba finds no cache location and the import fails, so the cache
    goes to a temporary directory unless ``NUMBA_CACHE_DIR`` is already set.

    Parameters
    ----------
    threads : int
        The most threads numba may use.
    """
    if "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"gap-spark-numba-{os.getuid()}")
        import sys

        if "numba" in sys.modules:  # numba reads its config at import; make it see the new directory
            from numba.core import config as numba_config

            numba_config.reload_config()
    os.makedirs(os.environ["NUMBA_CACHE_DIR"], exist_ok=True)
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


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
