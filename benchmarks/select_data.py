"""Generated datasets with a selection split, for the convergence and defaults benchmarks.

The rows are the generator's (:mod:`gap_spark.ops.generator`), written straight to the dataset layout
(``split=train|select|val|v2`` Parquet and ``_manifest.json``) with pyarrow: no CSV round trip, no Spark.
``select`` is a stratified ~2% of the generated train rows (every class gives ``floor(f n_c)`` or one
more, as ingest's selection split does), and ``train`` is the rest, so the two are disjoint. val and v2
are written because train must run on a real dataset layout, but the benchmarks read them only to report
results, never to choose anything.

The numpy arrays are cached next to the Parquet (``arrays.npz``) for scikit-learn.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from gap_spark.core.settings import FULL_ROWS

SELECT_FRACTION = 0.02
SELECT_SEED = 19


@dataclass(frozen=True)
class BenchData:
    """A generated dataset on disk and its arrays (features float32, labels int)."""

    data_dir: str
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (x, y)

    def rows(self, split: str) -> int:
        return len(self.arrays[split][1])


def select_pick(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Row indices of a stratified ``fraction`` of ``labels``: largest remainder per class, exact total."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * fraction
    quota = np.floor(share).astype(int)
    rest = round(fraction * len(labels)) - int(quota.sum())
    if rest > 0:
        order = np.argsort(-(share - quota) + rng.uniform(0, 1e-9, len(share)), kind="stable")
        quota[order[:rest]] += 1
    picks = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks)) if picks else np.array([], int)


def _split_matrix(world, split: str, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    from gap_spark.ops.generator import chunk_rng, split_labels

    labels = split_labels(world, split)
    blocks = [np.ascontiguousarray(world.sample(split, labels[s:s + chunk], chunk_rng(world.spec.seed, split, i)))
              for i, s in enumerate(range(0, len(labels), chunk))]
    return np.vstack(blocks), labels


def _write_split(data_dir: str, split: str, x: np.ndarray, y: np.ndarray, first_id: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = x.shape[1]
    values = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel())
    features = pa.ListArray.from_arrays(pa.array(np.arange(len(y) + 1, dtype=np.int32) * dim), values)
    ids = np.arange(first_id, first_id + len(y), dtype=np.int64)
    table = pa.table({"row_id": pa.array(ids), "path": pa.array([f"img/{i}.jpg" for i in ids]),
                      "label": pa.array(y.astype(np.int32)), "features": features})
    os.makedirs(os.path.join(data_dir, f"split={split}"), exist_ok=True)
    pq.write_table(table, os.path.join(data_dir, f"split={split}", "part-00000.parquet"), row_group_size=16384)


def build(root: str, train_rows: int, dim: int, classes: int, val_rows: int, v2_rows: int, seed: int = 0,
          select_fraction: float = SELECT_FRACTION, with_select: bool = True) -> BenchData:
    """Generate (or reuse) ``root/<name>/dataset`` and its arrays.

    Parameters
    ----------
    root : str
        Cache directory.
    train_rows : int
        Rows of the generated train CSV; ``select`` takes about ``select_fraction`` of them.
    dim, classes : int
        D and K.
    val_rows, v2_rows : int
        Rows of the test splits (results only).
    seed : int
        The generator's seed.
    select_fraction : float
        Share of the train rows held out as ``select``.
    with_select : bool
        False writes an older dataset without the selection split (train keeps every row).
    """
    from gap_spark.ops.generator import World
    from gap_spark.stages.synth import synth_settings

    name = f"{train_rows}x{dim}x{classes}_v{val_rows}_{v2_rows}_s{seed}" + ("" if with_select else "_nosel")
    base = os.path.join(root, name)
    data_dir = os.path.join(base, "dataset")
    cache = os.path.join(base, "arrays.npz")
    if not os.path.exists(cache):
        spec = synth_settings(train_rows=train_rows, val_rows=val_rows, v2_rows=v2_rows, dim=dim,
                              classes=classes, seed=seed)
        world = World(spec)
        arrays = {split: _split_matrix(world, split) for split in ("train", "val", "v2")}
        x, y = arrays["train"]
        if with_select:
            pick = select_pick(y, select_fraction, SELECT_SEED)
            keep = np.setdiff1d(np.arange(len(y)), pick)
            arrays["select"] = (x[pick], y[pick])
            arrays["train"] = (x[keep], y[keep])
        first = {"train": 0, "select": 0, "val": 10_000_000, "v2": 20_000_000}
        ids = {"train": None, "select": None}
        if with_select:
            ids = {"train": keep, "select": pick}
        for split, (xs, ys) in arrays.items():
            _write_split(data_dir, split, xs, ys, first[split])
            if ids.get(split) is not None:  # keep the generated row ids (train and select interleave)
                _rewrite_ids(data_dir, split, ids[split])
        manifest = {"status": "complete", "dim": dim, "classes": classes, "fingerprint": name,
                    "splits": {s: {"rows_read": len(a[1]), "rows_written": len(a[1]), "rows_quarantined": 0}
                               for s, a in arrays.items()}}
        with open(os.path.join(data_dir, "_manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
        np.savez(cache, **{f"{s}_x": a[0] for s, a in arrays.items()}, **{f"{s}_y": a[1] for s, a in arrays.items()})
    data = np.load(cache)
    splits = sorted({k[:-2] for k in data.files})
    return BenchData(data_dir, {s: (data[f"{s}_x"], data[f"{s}_y"]) for s in splits})


def _rewrite_ids(data_dir: str, split: str, ids: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(data_dir, f"split={split}", "part-00000.parquet")
    table = pq.read_table(path)
    table = table.set_column(0, "row_id", pa.array(ids.astype(np.int64)))
    pq.write_table(table, path, row_group_size=16384)


def at_scale(root: str, scale: float, val_scale: float = 0.2, dim: int = 1024, classes: int = 1000,
             seed: int = 0) -> BenchData:
    """The generator at ``scale`` of ImageNet-1k's train size (val and v2 at ``val_scale``: results only)."""
    return build(root, round(FULL_ROWS["train"] * scale), dim, classes, round(FULL_ROWS["val"] * val_scale),
                 round(FULL_ROWS["v2"] * val_scale), seed)
