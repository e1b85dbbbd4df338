"""Synthetic features in exactly the EVA-02 CSV format, with a controlled shift between val and V2.

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

Rows are produced in chunks, each from its own seed ``(seed, split, chunk)``, so the output is the same
for a given seed whatever the number of worker processes, and the full matrix is never in memory.
"""
from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from gap_spark.contracts.dataset import RAW_FILE_NAMES, SPLITS
from gap_spark.core import fs
from gap_spark.core.errors import ConfigError

if TYPE_CHECKING:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

FULL_ROWS = {"train": 1_281_167, "val": 50_000, "v2": 10_000}
TRAIN_MIN_PER_CLASS, TRAIN_MAX_PER_CLASS = 732, 1300
SUPER_SPREAD, CLASS_SPREAD, NOISE_SPREAD = 1.0, 0.6, 0.6
_SPLIT_ID = {"train": 1, "val": 2, "v2": 3}


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines the generated files."""

    train_rows: int
    val_rows: int
    v2_rows: int
    dim: int = 1024
    classes: int = 1000
    seed: int = 0
    superclass_size: int = 10
    hardness: float = 0.30
    v2_extra_hardness: float = 0.065
    covariate_shift: float = 0.5
    covariate_fraction: float = 0.05

    @classmethod
    def from_config(cls, config: "Config") -> "SynthSpec":
        s = config.section("synth")
        scale = float(s["scale"])
        if scale <= 0:
            raise ConfigError(f"synth.scale must be positive, got {scale}")
        rows = {split: s[f"{split}_rows"] if s[f"{split}_rows"] is not None
                else max(1, round(FULL_ROWS[split] * scale)) for split in SPLITS}
        spec = cls(train_rows=int(rows["train"]), val_rows=int(rows["val"]), v2_rows=int(rows["v2"]),
                   dim=int(s["dim"]), classes=int(s["classes"]), seed=int(s["seed"]),
                   superclass_size=int(s["superclass_size"]), hardness=float(s["hardness"]),
                   v2_extra_hardness=float(s["v2_extra_hardness"]),
                   covariate_shift=float(s["covariate_shift"]),
                   covariate_fraction=float(s["covariate_fraction"]))
        spec.validate()
        return spec

    def validate(self) -> None:
        for name in ("train_rows", "val_rows", "v2_rows", "dim", "classes", "superclass_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"synth.{name} must be at least 1, got {getattr(self, name)}")
        if self.classes < 2:
            raise ConfigError("synth.classes must be at least 2")
        for name in ("hardness", "v2_extra_hardness", "covariate_shift", "covariate_fraction"):
            if getattr(self, name) < 0:
                raise ConfigError(f"synth.{name} must not be negative")
        if self.covariate_fraction > 1:
            raise ConfigError("synth.covariate_fraction must be at most 1")

    def rows(self, split: str) -> int:
        return {"train": self.train_rows, "val": self.val_rows, "v2": self.v2_rows}[split]

    def without_shift(self) -> "SynthSpec":
        return replace(self, v2_extra_hardness=0.0, covariate_shift=0.0)


class World:
    """The fixed geometry of one seed: class centres, spreads, super-classes and the shift."""

    def __init__(self, spec: SynthSpec):
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
        self.wnids = [f"n{1440764 + 9973 * c:08d}" for c in range(k)]
        self.train_base_counts = _train_base_counts(k, rng)

    def hardness(self, split: str) -> float:
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
    """Split ``total`` rows over classes in proportion to ``weights`` (largest remainder, exact sum)."""
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


def header(dim: int) -> str:
    """pandas' header for a frame written with its index: an empty first name."""
    return ",path,label," + ",".join(str(i) for i in range(dim)) + "\n"


_WORLD: World | None = None


def _init_worker(spec: SynthSpec) -> None:
    global _WORLD
    _WORLD = World(spec)


def _chunk_csv(job: tuple[str, int, int, np.ndarray]) -> bytes:
    """CSV bytes (no header) for one chunk; the seed depends only on (seed, split, chunk)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    split, chunk_no, start, labels = job
    world = _WORLD
    assert world is not None
    rng = np.random.default_rng([world.spec.seed, _SPLIT_ID[split], chunk_no + 1])
    x = world.sample(split, labels, rng)
    index = np.arange(start, start + len(labels), dtype=np.int64)
    columns = {"": index, "path": world.paths(split, labels, index), "label": labels.astype(np.int64)}
    columns.update({str(j): x[:, j] for j in range(world.spec.dim)})
    sink = pa.BufferOutputStream()
    # pandas quotes only fields that need it; generated paths never do, so quote nothing.
    pacsv.write_csv(pa.table(columns), sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue().to_pybytes()


def _jobs(world: World, split: str, chunk_rows: int) -> Iterator[tuple[str, int, int, np.ndarray]]:
    labels = split_labels(world, split)
    for chunk_no, start in enumerate(range(0, len(labels), chunk_rows)):
        yield split, chunk_no, start, labels[start:start + chunk_rows]


def write_split(spec: SynthSpec, split: str, out_uri: str, chunk_rows: int = 4096, workers: int = 1,
                pool=None) -> dict:
    """Stream one split's CSV to ``out_uri`` (written under a temporary name, then renamed)."""
    world = World(spec)
    filesystem, path = fs.resolve(out_uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    total = spec.rows(split)
    started = time.time()
    written = 0
    last_log = started
    with filesystem.open_output_stream(tmp) as out:
        out.write(header(spec.dim).encode())
        if pool is None:
            _init_worker(spec)
            chunks = map(_chunk_csv, _jobs(world, split, chunk_rows))
        else:
            chunks = pool.imap(_chunk_csv, _jobs(world, split, chunk_rows))
        done = 0
        for data in chunks:
            out.write(data)
            written += len(data)
            done = min(total, done + chunk_rows)
            if time.time() - last_log > 10:
                last_log = time.time()
                rate = written / 1e6 / (last_log - started)
                log.info("synth %s: %d/%d rows (%.0f%%), %.0f MB/s", split, done, total, 100 * done / total, rate)
    filesystem.move(tmp, path)
    seconds = time.time() - started
    log.info("synth %s: %d rows, %.1f MB in %.1f s (%.1f MB/s) -> %s",
             split, total, written / 1e6, seconds, written / 1e6 / max(seconds, 1e-9), out_uri)
    return {"rows": total, "bytes": written, "seconds": round(seconds, 3), "path": out_uri}


def generate(spec: SynthSpec, out_dir: str, chunk_rows: int = 4096, workers: int = 2) -> dict:
    """Write the three CSVs with their real names into ``out_dir``; returns a summary."""
    spec.validate()
    fs.makedirs(out_dir)
    summary: dict = {"spec": asdict(spec), "files": {}}
    started = time.time()
    if workers > 1:
        # Not "fork": a forked child inherits the driver's Py4J socket (the pipeline holds a live
        # SparkSession) and writes to it when it garbage-collects a Java proxy.
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
            for split in SPLITS:
                summary["files"][split] = write_split(spec, split, fs.join(out_dir, RAW_FILE_NAMES[split]),
                                                      chunk_rows, workers, pool)
    else:
        for split in SPLITS:
            summary["files"][split] = write_split(spec, split, fs.join(out_dir, RAW_FILE_NAMES[split]),
                                                  chunk_rows)
    summary["seconds"] = round(time.time() - started, 3)
    fs.write_json(fs.join(out_dir, "_synth.json"), summary)
    return summary


def run_synth(spark, config: "Config", paths: "Paths") -> dict:
    """Stage entry point: generate the raw CSVs described by ``config['synth']`` into ``paths.raw``."""
    spec = SynthSpec.from_config(config)
    s = config.section("synth")
    log.info("synth: %s", spec)
    return generate(spec, paths.raw, chunk_rows=int(s["chunk_rows"]), workers=int(s["workers"]))
