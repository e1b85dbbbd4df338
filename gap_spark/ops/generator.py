"""The synthetic generator's model: features in exactly the EVA-02 CSV format, with a controlled shift.

The model behind the numbers
----------------------------
Classes come in super-classes (``superclass_size`` classes each, like dog breeds). A super-class has a
centre ``c_g ~ N(0, I)``; a class centre is ``mu_k = c_g + N(0, 0.6^2 I)``; each class has its own
spread ``sigma_k`` (log-normal around 0.6). A sample of class ``y`` picks a confusable neighbour ``n``
from the same super-class and sits a fraction ``t`` of the way from ``mu_y`` to ``mu_n``::

    x = (1 - t) mu_y + t mu_n + sigma_y * eps,      t = min(|N(0, h)|, 1)

Because the class centres are far apart compared with the noise along the line between them, a sample
with ``t > 0.5`` looks like its neighbour, so any good classifier's error is close to ``P(t > 0.5)``, and
that probability does not depend on how many rows are generated. ``h`` is ``hardness`` for train and val.

The shift knobs (all zero: V2 is a fresh sample of val's distribution):

- ``v2_extra_hardness``: V2 uses ``h + v2_extra_hardness``: its samples sit nearer their neighbours,
  so accuracy and confidence drop;
- ``covariate_shift`` and ``covariate_fraction``: a fixed subset of that fraction of the features is
  moved in V2 by ``covariate_shift`` within-class standard deviations.

Rows are produced in chunks, each from its own seed ``(seed, split, chunk)`` (:func:`chunk_rng`), so the
output is the same for a given seed whatever the number of worker processes. Everything here is pure
numpy (and pyarrow's CSV writer into memory); the settings are :class:`~gap_spark.core.settings.SynthSettings`.
"""
from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from gap_spark.core.settings import FULL_ROWS, SynthSettings
from gap_spark.ops.class_names import imagenet_wnids

__all__ = [
    "ChunkJob", "World", "allocate", "chunk_csv", "chunk_jobs", "chunk_rng", "csv_header", "generator_spec",
    "split_labels", "without_shift",
]

TRAIN_MIN_PER_CLASS, TRAIN_MAX_PER_CLASS = 732, 1300
SUPER_SPREAD, CLASS_SPREAD, NOISE_SPREAD = 1.0, 0.6, 0.6
_SPLIT_ID = {"train": 1, "val": 2, "v2": 3}
# One chunk of a split: (split, chunk number, index of its first row, its labels).
ChunkJob = tuple[str, int, int, np.ndarray]


def generator_spec(settings: SynthSettings) -> dict[str, Any]:
    """Everything that determines the generated files (recorded in ``RAW_DIR/_synth.json``).

    Parameters
    ----------
    settings : SynthSettings
        The ``synth`` section.

    Returns
    -------
    dict
        The row count of each split, then the model's settings (not ``chunk_rows`` nor ``workers``,
        which do not change the output).
    """
    return {"train_rows": settings.rows("train"), "val_rows": settings.rows("val"), "v2_rows": settings.rows("v2"),
            "dim": settings.dim, "classes": settings.classes, "seed": settings.seed,
            "superclass_size": settings.superclass_size, "hardness": settings.hardness,
            "v2_extra_hardness": settings.v2_extra_hardness, "covariate_shift": settings.covariate_shift,
            "covariate_fraction": settings.covariate_fraction}


def without_shift(settings: SynthSettings) -> SynthSettings:
    """The same settings with the shift knobs at zero: V2 becomes a fresh sample of val's distribution."""
    return dataclasses.replace(settings, v2_extra_hardness=0.0, covariate_shift=0.0)


class World:
    """The fixed geometry of one seed: class centres, spreads, super-classes and the shift.

    Parameters
    ----------
    spec : SynthSettings
        The generator's settings (kept as ``self.spec``).
    """

    def __init__(self, spec: SynthSettings) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        k, d = spec.classes, spec.dim
        groups = math.ceil(k / spec.superclass_size)
        self.superclass = np.arange(k) // spec.superclass_size
        # Scaled by 1/sqrt(d) * sqrt(1024) so distances, hence accuracy, hold for any dim.
        unit = math.sqrt(1024 / d)
        centres = rng.standard_normal((groups, d)) * SUPER_SPREAD * unit
        self.means = (centres[self.superclass]
                      + rng.standard_normal((k, d)) * CLASS_SPREAD * unit).astype(np.float32)
        self.spread = (NOISE_SPREAD * unit * np.exp(rng.normal(0.0, 0.3, size=k))).astype(np.float32)
        self.members = [np.flatnonzero(self.superclass == g) for g in range(groups)]
        n_shift = round(spec.covariate_fraction * d) if spec.covariate_shift > 0 else 0
        self.shifted_features = np.sort(rng.choice(d, size=n_shift, replace=False)) if n_shift else np.array([], int)
        self.v2_offset = np.zeros(d, dtype=np.float32)
        if n_shift:
            signs = rng.choice([-1.0, 1.0], size=n_shift)
            self.v2_offset[self.shifted_features] = signs * spec.covariate_shift * NOISE_SPREAD * unit
        self.wnids = imagenet_wnids(k)  # ImageNet's real ids, the first K in the standard order
        self.train_base_counts = _train_base_counts(k, rng)

    def hardness(self, split: str) -> float:
        """The spread ``h`` of the fraction ``t`` towards the neighbour, for ``split``."""
        return self.spec.hardness + (self.spec.v2_extra_hardness if split == "v2" else 0.0)

    def neighbours(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random other class from each label's super-class (itself when it is alone)."""
        out = labels.copy()
        for g in np.unique(self.superclass[labels]):
            members = self.members[g]
            rows = np.flatnonzero(self.superclass[labels] == g)
            if len(members) < 2:
                continue
            # Draw among the others: pick index in [0, m-1) and skip the sample's own class.
            pick = rng.integers(0, len(members) - 1, size=len(rows))
            own = np.searchsorted(members, labels[rows])
            pick = pick + (pick >= own)
            out[rows] = members[pick]
        return out

    def sample(self, split: str, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Feature rows (float32, Fortran order for fast column access) for the given labels."""
        n, d = len(labels), self.spec.dim
        nb = self.neighbours(labels, rng)
        t = np.minimum(np.abs(rng.normal(0.0, self.hardness(split), size=n)), 1.0).astype(np.float32)
        x = rng.standard_normal((n, d), dtype=np.float32)
        x *= self.spread[labels][:, None]
        x += self.means[labels]
        x += t[:, None] * (self.means[nb] - self.means[labels])
        if split == "v2" and self.shifted_features.size:
            x += self.v2_offset
        return np.asfortranarray(x)

    def paths(self, split: str, labels: np.ndarray, index: np.ndarray) -> list[str]:
        """Image paths named like the real files' (ImageNet train and val, ImageNetV2's class folders)."""
        if split == "train":
            return [f"imagenet/train/{self.wnids[c]}/{self.wnids[c]}_{i}.JPEG" for c, i in zip(labels, index)]
        if split == "val":
            return [f"imagenet/val/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in index]
        return [f"imagenetv2-matched-frequency/{c}/{uuid.UUID(int=(self.spec.seed << 64) + int(i)).hex}.jpeg"
                for c, i in zip(labels, index)]


def _train_base_counts(k: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-like train counts at full scale: mostly 1300, some down to 732, summing to 1,281,167."""
    counts = np.full(k, TRAIN_MAX_PER_CLASS, dtype=np.int64)
    target = round(FULL_ROWS["train"] * k / 1000)
    deficit = int(counts.sum() - target)
    short = rng.choice(k, size=max(1, k // 10), replace=False)
    weights = rng.dirichlet(np.full(len(short), 0.7))
    cap = TRAIN_MAX_PER_CLASS - TRAIN_MIN_PER_CLASS
    take = np.minimum(np.floor(weights * deficit).astype(np.int64), cap)
    counts[short] -= take
    rest = deficit - int(take.sum())
    i = 0
    while rest > 0:  # hand out what the cap and the rounding left, one row at a time
        c = short[i % len(short)]
        if counts[c] > TRAIN_MIN_PER_CLASS:
            counts[c] -= 1
            rest -= 1
        i += 1
    return counts


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` rows over classes in proportion to ``weights`` (largest remainder, exact sum).

    Parameters
    ----------
    total : int
        Rows to hand out.
    weights : numpy.ndarray
        One non-negative weight a class.

    Returns
    -------
    numpy.ndarray of int64
        Rows per class, summing to ``total``.
    """
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    remainder = total - int(counts.sum())
    if remainder:
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:remainder]] += 1
    return counts


def split_labels(world: World, split: str) -> np.ndarray:
    """The label of every row, in file order (class-sorted for train and V2, shuffled for val)."""
    spec = world.spec
    weights = world.train_base_counts.astype(float) if split == "train" else np.ones(spec.classes)
    counts = allocate(spec.rows(split), weights)
    labels = np.repeat(np.arange(spec.classes), counts)
    if split == "val":
        labels = np.random.default_rng([spec.seed, _SPLIT_ID[split], 0]).permutation(labels)
    return labels


def csv_header(dim: int) -> str:
    """pandas' header for a frame written with its index: an empty first name (with its end of line)."""
    return ",path,label," + ",".join(str(i) for i in range(dim)) + "\n"


def chunk_rng(seed: int, split: str, chunk_no: int) -> np.random.Generator:
    """The random stream of one chunk: it depends only on ``(seed, split, chunk)``."""
    return np.random.default_rng([seed, _SPLIT_ID[split], chunk_no + 1])


def chunk_jobs(world: World, split: str, chunk_rows: int) -> Iterator[ChunkJob]:
    """The chunks of ``split`` in file order, ``chunk_rows`` rows each (the last one fewer)."""
    labels = split_labels(world, split)
    for chunk_no, start in enumerate(range(0, len(labels), chunk_rows)):
        yield split, chunk_no, start, labels[start:start + chunk_rows]


def chunk_csv(world: World, job: ChunkJob) -> bytes:
    """CSV bytes (no header) for one chunk, as pandas writes them.

    Parameters
    ----------
    world : World
        The seed's geometry.
    job : ChunkJob
        ``(split, chunk number, first row index, labels)`` from :func:`chunk_jobs`.

    Returns
    -------
    bytes
        One line a row: index, path, label and the features.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    split, chunk_no, start, labels = job
    x = world.sample(split, labels, chunk_rng(world.spec.seed, split, chunk_no))
    index = np.arange(start, start + len(labels), dtype=np.int64)
    columns: dict[str, Any] = {"": index, "path": world.paths(split, labels, index), "label": labels.astype(np.int64)}
    columns.update({str(j): x[:, j] for j in range(world.spec.dim)})
    sink = pa.BufferOutputStream()
    # pandas quotes only fields that need it; generated paths never do, so quote nothing.
    pacsv.write_csv(pa.table(columns), sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return bytes(sink.getvalue().to_pybytes())
