"""The benchmarks' one base: arguments, the Spark session, the generated datasets, timing and tables.

Every benchmark runs from the repository root as ``python -m benchmarks.<name>`` (``--help`` lists its
options). The pieces here:

- arguments: :func:`add_config_args` (``--config``, ``--set``), :func:`add_work_arg`,
  :func:`add_repeats_arg`, :func:`add_shape_args` (``--dim``, ``--classes``, ``--seed``),
  :func:`add_spark_args` (``--cores``, ``--driver-memory``);
- the session: :func:`bench_config` and :func:`spark_session`, gap-spark's own
  :func:`gap_spark.core.session.get_spark` with the UI and the progress bar off;
- the data: :func:`generated_dataset` writes the rows, ids and paths that ``gap-spark synth`` followed by
  ``gap-spark ingest`` would give (same generator, same chunks, same selection rule), straight to the
  dataset layout with pyarrow, and keeps the arrays beside it for numpy and scikit-learn;
- timing and output: :func:`timer`, :func:`median_time`, :func:`print_table`, :func:`dump`, :func:`machine`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from gap_spark.core.config import Config
    from gap_spark.ops.generator import World

RESULTS = os.path.join("benchmarks", "results")

# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def bench_parser(doc: str | None, full_help: bool = False) -> argparse.ArgumentParser:
    """A parser described by the module docstring's first line (or all of it with ``full_help``)."""
    text = doc or ""
    if full_help:
        return argparse.ArgumentParser(description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
    return argparse.ArgumentParser(description=text.splitlines()[0] if text else None)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (into ``args.config`` and ``args.sets``)."""
    p.add_argument("--config", help="a gap-spark config file to start from (e.g. conf/full.yaml)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable)")


def add_work_arg(p: argparse.ArgumentParser, default: str | None, what: str = "generated data and outputs") -> None:
    """``--work DIR`` (``--workdir`` is the same option); ``None`` means a temporary directory."""
    p.add_argument("--work", "--workdir", dest="work", default=default,
                   help=f"folder for the {what} (default: {default or 'a temporary directory'}); "
                        "generated data there is reused")


def add_repeats_arg(p: argparse.ArgumentParser, default: int = 1) -> None:
    p.add_argument("--repeats", type=int, default=default, help="timed runs; the median is reported")


def add_shape_args(p: argparse.ArgumentParser, dim: int = 1024, classes: int = 1000, seed: int = 0) -> None:
    """``--dim`` (D), ``--classes`` (K) and ``--seed`` of the generated data."""
    p.add_argument("--dim", type=int, default=dim, help="features D")
    p.add_argument("--classes", type=int, default=classes, help="classes K")
    p.add_argument("--seed", type=int, default=seed, help="the generator's seed")


def add_spark_args(p: argparse.ArgumentParser, cores: int = 2, driver_memory: str | None = None) -> None:
    """``--cores`` (Spark's local[N]; the baselines' threads) and ``--driver-memory`` (alias ``--memory``)."""
    p.add_argument("--cores", type=int, default=cores,
                   help="local[N] for Spark (0: the config's master), threads for the baselines")
    p.add_argument("--driver-memory", "--memory", dest="driver_memory", default=driver_memory,
                   help="spark.driver.memory" + (f" (default {driver_memory})" if driver_memory else ""))


def work_dir(work: str | None, prefix: str) -> str:
    """``work`` (created), or a new temporary directory."""
    if work is None:
        import tempfile

        return tempfile.mkdtemp(prefix=prefix)
    os.makedirs(work, exist_ok=True)
    return work


# --------------------------------------------------------------------------------------------------
# The Spark session
# --------------------------------------------------------------------------------------------------


def bench_config(path: str | None = None, sets: Sequence[str] = (), *, cores: int | None = None,
                 driver_memory: str | None = None, conf: Mapping[str, object] | None = None) -> Config:
    """gap-spark's config for a benchmark: quiet Spark (no UI, no progress bar, ERROR logs), then ``sets``.

    ``cores`` sets ``spark.master=local[cores]`` (None keeps the config's master); ``conf`` adds
    ``spark.conf`` entries. ``sets`` come last, so the caller's ``--set`` wins.
    """
    from gap_spark.core.config import load_config

    base = ["spark.log_level=ERROR", "spark.conf.spark.ui.enabled=false",
            "spark.conf.spark.ui.showConsoleProgress=false"]
    if cores:
        base.append(f"spark.master=local[{cores}]")
    if driver_memory:
        base.append(f"spark.conf.spark.driver.memory={driver_memory}")
    base += [f"spark.conf.{key}={value}" for key, value in (conf or {}).items()]
    return load_config(path, sets=[*base, *sets])


def spark_session(config: Config, app: str) -> SparkSession:
    """The session every benchmark measures with: the pipeline's own :func:`~gap_spark.core.session.get_spark`."""
    from gap_spark.core.session import get_spark

    return get_spark(config, app_name=app)


# --------------------------------------------------------------------------------------------------
# The generated datasets
# --------------------------------------------------------------------------------------------------


def split_chunks(world: World, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(row ids, labels, features)`` of each chunk of ``split``, exactly as ``gap-spark synth`` writes them.

    The row id is the CSV's index column, which ingest keeps as ``row_id``.
    """
    from gap_spark.ops.generator import chunk_jobs, chunk_rng

    for _, chunk_no, start, labels in chunk_jobs(world, split, world.spec.chunk_rows):
        labels, x = world.rows(split, labels, chunk_rng(world.spec.seed, split, chunk_no))
        yield np.arange(start, start + len(labels), dtype=np.int64), labels, np.ascontiguousarray(x, np.float32)


def split_matrix(world: World, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All of ``split``'s features (float32) and labels in memory, the rows ``gap-spark synth`` writes."""
    parts = list(split_chunks(world, split))
    return np.vstack([x for _, _, x in parts]), np.concatenate([y for _, y, _ in parts])


@dataclass(frozen=True)
class GeneratedData:
    """A generated dataset (``data_dir``, the dataset layout) and its arrays (``base/arrays``, in row-id order)."""

    base: str

    @property
    def data_dir(self) -> str:
        return os.path.join(self.base, "dataset")

    @cached_property
    def splits(self) -> list[str]:
        from gap_spark.contracts.dataset import read_manifest

        return list(read_manifest(self.data_dir)["splits"])

    @cached_property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Split -> (features float32, labels), memory-mapped."""
        return {s: (self._load(s, "x"), self._load(s, "y")) for s in self.splits}

    def ids(self, split: str) -> np.ndarray:
        return self._load(split, "ids")

    def rows(self, split: str) -> int:
        return len(self.arrays[split][1])

    def _load(self, split: str, what: str) -> np.ndarray:
        return np.load(os.path.join(self.base, "arrays", f"{split}_{what}.npy"), mmap_mode="r")


def generated_dataset(root: str, rows: Mapping[str, int], *, dim: int = 1024, classes: int = 1000, seed: int = 0,
                      select_fraction: float = 0.0, select_seed: int = 19, **synth: Any) -> GeneratedData:
    """Generate (or reuse) a dataset under ``root`` with ``rows`` per raw split (train, val, v2; missing = 1).

    With ``select_fraction`` > 0 the ``select`` split is carved out of train by ingest's own rule
    (:func:`gap_spark.ops.select_split.select_quotas` and ``choose_select`` on ``hash_uniform(row_id)``),
    and train keeps the rest. ``synth`` holds further generator settings (e.g. ``v2_selection``).
    The manifest has no ``version``: readers take its splits unchecked, as for any hand-written dataset.
    """
    from gap_spark.ops.generator import generator_spec
    from gap_spark.stages.synth import synth_settings

    n = {split: max(1, int(rows.get(split, 1))) for split in ("train", "val", "v2")}
    settings = synth_settings(train_rows=n["train"], val_rows=n["val"], v2_rows=n["v2"], dim=dim, classes=classes,
                              seed=seed, **synth)
    key = {"spec": generator_spec(settings), "select": [select_fraction, select_seed]}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    base = os.path.join(root, f"{n['train']}x{dim}x{classes}_v{n['val']}_{n['v2']}_s{seed}_{digest}")
    if not os.path.exists(os.path.join(base, "dataset", "_manifest.json")):
        started = time.perf_counter()
        _write_dataset(base, settings, select_fraction, select_seed)
        print(f"generated {base} ({time.perf_counter() - started:.1f} s)", flush=True)
    return GeneratedData(base)


def selection_dataset(root: str, scale: float | None = None, val_scale: float = 0.2, **shape: Any) -> GeneratedData:
    """A dataset with ingest's selection split as configured (``ingest.select_fraction``, ``select_seed``).

    ``scale`` is a fraction of ImageNet-1k's train rows (val and v2 at ``val_scale``: results only);
    ``None`` is the small oracle problem, 8,000 x 32 x 20 with 4,000 / 2,000 test rows.
    """
    from gap_spark.core.config import load_config
    from gap_spark.core.settings import FULL_ROWS

    ingest = load_config().settings.ingest
    select: dict[str, Any] = {"select_fraction": ingest.select_fraction, "select_seed": ingest.select_seed}
    if scale is None:
        oracle: dict[str, Any] = {"dim": 32, "classes": 20, **select, **shape}
        return generated_dataset(root, {"train": 8000, "val": 4000, "v2": 2000}, **oracle)
    rows = {"train": round(FULL_ROWS["train"] * scale), "val": round(FULL_ROWS["val"] * val_scale),
            "v2": round(FULL_ROWS["v2"] * val_scale)}
    return generated_dataset(root, rows, **select, **shape)


def _select_mask(world: World, fraction: float, seed: int) -> np.ndarray | None:
    """Which train rows ingest would set aside as ``select`` (None when the split is off)."""
    if fraction <= 0:
        return None
    from gap_spark.ops.generator import split_labels
    from gap_spark.ops.select_split import choose_select, hash_uniform_ids, select_quotas

    labels = split_labels(world, "train")
    ids = np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = select_quotas(dict(zip(classes.tolist(), counts.tolist())), fraction, seed)
    return choose_select(ids, labels, hash_uniform_ids(ids, seed), quotas)


class _SplitWriter:
    """One split's Parquet file (dataset schema) and its arrays, filled chunk by chunk."""

    def __init__(self, staging: str, split: str, total: int, dim: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = os.path.join(staging, "dataset", f"split={split}")
        os.makedirs(folder, exist_ok=True)
        self.schema = pa.schema([
            pa.field("row_id", pa.int64(), False), pa.field("path", pa.string(), False),
            pa.field("label", pa.int32(), False),
            pa.field("features", pa.list_(pa.field("element", pa.float32(), False)), False)])
        self.writer = pq.ParquetWriter(os.path.join(folder, "part-00000.parquet"), self.schema)
        arrays = os.path.join(staging, "arrays")
        os.makedirs(arrays, exist_ok=True)
        mm = np.lib.format.open_memmap
        self.x = mm(os.path.join(arrays, f"{split}_x.npy"), "w+", np.float32, (total, dim))
        self.y = mm(os.path.join(arrays, f"{split}_y.npy"), "w+", np.int64, (total,))
        self.ids = mm(os.path.join(arrays, f"{split}_ids.npy"), "w+", np.int64, (total,))
        self.done = 0

    def write(self, ids: np.ndarray, paths: Sequence[str], labels: np.ndarray, x: np.ndarray) -> None:
        import pyarrow as pa

        if not len(ids):
            return
        features = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
        self.writer.write_table(pa.table({
            "row_id": ids, "path": pa.array(paths, pa.string()), "label": labels.astype(np.int32),
            "features": features.cast(self.schema.field("features").type)}, schema=self.schema))
        end = self.done + len(ids)
        self.x[self.done:end], self.y[self.done:end], self.ids[self.done:end] = x, labels, ids
        self.done = end

    def close(self) -> int:
        self.writer.close()
        for array in (self.x, self.y, self.ids):
            array.flush()
        return self.done


def _write_dataset(base: str, settings: Any, select_fraction: float, select_seed: int) -> None:
    """Stream each split into ``base.tmp`` (Parquet and arrays), write the manifest, then rename."""
    from gap_spark.ops.generator import World

    world = World(settings)
    staging = base + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    select = _select_mask(world, select_fraction, select_seed)
    entries: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "v2"):
        total = settings.rows(split)
        if split == "train" and select is not None:
            n_select = int(select.sum())
            targets = {"train": _SplitWriter(staging, "train", total - n_select, settings.dim),
                       "select": _SplitWriter(staging, "select", n_select, settings.dim)}
        else:
            targets = {split: _SplitWriter(staging, split, total, settings.dim)}
        for ids, labels, x in split_chunks(world, split):
            paths = np.asarray(world.paths(split, labels, ids), dtype=object)
            chosen = select[ids] if split == "train" and select is not None else np.zeros(len(ids), bool)
            for name, keep in (("select", chosen), (split, ~chosen)):
                if name in targets:
                    targets[name].write(ids[keep], list(paths[keep]), labels[keep], x[keep])
        for name, writer in targets.items():
            written = writer.close()
            entries[name] = {"rows_read": written, "rows_written": written, "rows_quarantined": 0}
        if split == "train" and select is not None:
            entries["train"].update(rows_read=total, rows_selected=entries["select"]["rows_written"])
    order = [s for s in ("train", "select", "val", "v2") if s in entries]
    with open(os.path.join(staging, "dataset", "_manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"status": "complete", "dim": settings.dim, "classes": settings.classes,
                   "fingerprint": os.path.basename(base), "splits": {s: entries[s] for s in order}}, f)
    shutil.rmtree(base, ignore_errors=True)
    os.rename(staging, base)


# --------------------------------------------------------------------------------------------------
# Timing and output
# --------------------------------------------------------------------------------------------------


def machine() -> dict:
    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


@contextmanager
def timer() -> Iterator[dict]:
    out: dict = {}
    start = time.perf_counter()
    yield out
    out["seconds"] = time.perf_counter() - start


def median_time(func: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        with timer() as t:
            func()
        times.append(t["seconds"])
    return statistics.median(times), times


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``columns`` of ``rows``, padded to line up."""
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
             "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)).ljust(widths[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict], columns: list[str]) -> str:
    text = markdown_table(rows, columns)
    print(text)
    return text


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def dump(path: str, obj: object) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
