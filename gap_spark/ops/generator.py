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
  moved in V2 by ``covariate_shift`` within-class standard deviations;
- ``v2_selection`` (``s``) with ``v2_selection_kind``: a pure covariate shift, as a replication's
  selection bias (Engstrom et al. 2020). V2's candidates are drawn from V2's process above (val's when
  the other knobs are zero) with labels uniform over the classes, and each is kept with probability
  ``sigmoid(s * (u(x) - 1))``, a function of its features only, until the chunk is full. So
  ``p(y | x)`` is exactly that of the candidates, while ``p(x)`` and, through it, the class frequencies
  change. ``u`` is standardised (mean 0, sd 1 over val's process, from a fixed pilot sample):

  * ``linear``: a fixed random unit projection ``a . x``. ``log p_v2(x) / p_val(x)`` is then almost
    linear in x, so a linear domain classifier can represent it. In this world it moves accuracy little:
    along the segment between two classes a linear score rises towards one end, so it favours the hard
    rows of one class exactly as it disfavours those of the other; it mostly changes the class mix and
    makes the remaining rows slightly *easier*.
  * ``margin``: ``-log(d2 - d1)``, where ``d1 <= d2`` are the two smallest squared distances to the class
    centres: it keeps the ambiguous rows between two classes, so V2 becomes harder, by a shift that is
    not linear in x (a domain classifier needs the model's confidence, not the features alone, to see it).

  With ``v2_selection = 0`` nothing of this runs and the files are byte-identical to the generator's
  without the knob; the selection's geometry comes from its own random stream, so train and val never
  change with it.

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
# The selection's own random stream (direction and pilot), and the pilot's size.
_SELECTION_STREAM, _PILOT_ROWS = 9, 8192
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
            "covariate_fraction": settings.covariate_fraction,
            # The selection knob is recorded only when on, so specs without it stay as they were.
            **({"v2_selection": settings.v2_selection, "v2_selection_kind": settings.v2_selection_kind}
               if settings.v2_selection > 0 else {})}


def without_shift(settings: SynthSettings) -> SynthSettings:
    """The same settings with the shift knobs at zero: V2 becomes a fresh sample of val's distribution."""
    return dataclasses.replace(settings, v2_extra_hardness=0.0, covariate_shift=0.0, v2_selection=0.0)


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
        self.selection_direction = np.zeros(d)
        self.selection_centre, self.selection_scale, self.selection_rate = 0.0, 1.0, 1.0
        if spec.v2_selection > 0:
            self._fit_selection()

    def _fit_selection(self) -> None:
        """The selection's direction, and u's mean and sd over val's process (a pilot from its own stream)."""
        rng = np.random.default_rng([self.spec.seed, _SELECTION_STREAM])
        direction = rng.standard_normal(self.spec.dim)
        self.selection_direction = direction / np.linalg.norm(direction)
        labels = rng.integers(0, self.spec.classes, size=_PILOT_ROWS)
        u = self.selection_score(self.sample("val", labels, rng))
        self.selection_centre, self.selection_scale = float(u.mean()), float(u.std()) or 1.0
        self.selection_rate = float(self.keep_probability(self.sample("val", labels, rng)).mean())

    def selection_score(self, x: np.ndarray) -> np.ndarray:
        """``u`` before standardising: the projection (``linear``) or minus the log margin (``margin``)."""
        x = np.asarray(x, dtype=np.float64)
        if self.spec.v2_selection_kind == "linear":
            return np.asarray(x @ self.selection_direction)
        means = self.means.astype(np.float64)
        norms = (means ** 2).sum(axis=1)
        out = np.empty(len(x))
        for start in range(0, len(x), 4096):  # n x K distances, a block at a time
            part = norms[None, :] - 2.0 * (x[start:start + 4096] @ means.T)  # |x - mu|^2 - |x|^2
            two = np.partition(part, 1, axis=1)[:, :2]
            out[start:start + 4096] = -np.log(np.abs(two[:, 1] - two[:, 0]) + 1e-12)
        return out

    def keep_probability(self, x: np.ndarray) -> np.ndarray:
        """The probability that V2 keeps a candidate with features ``x``: ``sigmoid(s * (u - 1))``."""
        u = (self.selection_score(x) - self.selection_centre) / self.selection_scale
        return np.asarray(1.0 / (1.0 + np.exp(-self.spec.v2_selection * (u - 1.0))))

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

    def rows(self, split: str, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The labels and features of one chunk: :meth:`sample` for ``labels``, except V2 under selection.

        With ``v2_selection > 0``, V2's chunk keeps ``len(labels)`` candidates (their own labels, uniform
        over the classes) out of as many batches as it takes; the given labels fix only the count.
        """
        if split != "v2" or self.spec.v2_selection <= 0:
            return labels, self.sample(split, labels, rng)
        need, kept_y, kept_x = len(labels), [], []
        while need > 0:
            batch = max(256, int(2 * need / max(self.selection_rate, 1e-3)))
            y = rng.integers(0, self.spec.classes, size=batch)
            x = self.sample("v2", y, rng)
            keep = rng.random(batch) < self.keep_probability(x)
            kept_y.append(y[keep][:need])
            kept_x.append(x[keep][:need])
            need -= len(kept_y[-1])
        return np.concatenate(kept_y), np.asfortranarray(np.vstack(kept_x))

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
    labels, x = world.rows(split, labels, chunk_rng(world.spec.seed, split, chunk_no))
    index = np.arange(start, start + len(labels), dtype=np.int64)
    columns: dict[str, Any] = {"": index, "path": world.paths(split, labels, index), "label": labels.astype(np.int64)}
    columns.update({str(j): x[:, j] for j in range(world.spec.dim)})
    sink = pa.BufferOutputStream()
    # pandas quotes only fields that need it; generated paths never do, so quote nothing.
    pacsv.write_csv(pa.table(columns), sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return bytes(sink.getvalue().to_pybytes())
