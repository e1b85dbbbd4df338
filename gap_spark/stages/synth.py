"""Stage ``synth``: write the three CSVs of the generator (:mod:`gap_spark.ops.generator`) into RAW_DIR.

Each split is streamed chunk by chunk to a temporary name, then renamed; ``RAW_DIR/_synth.json``
records the generator's spec and the files. With ``workers > 1`` a process pool formats the chunks; the
bytes are the same for a given seed whatever the number of workers.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import RAW_SPLITS as SPLITS
from gap_spark.contracts.dataset import raw_file_path, synth_marker_path
from gap_spark.core import fs
from gap_spark.core.config import load_config
from gap_spark.ops.generator import ChunkJob, World, chunk_csv, chunk_jobs, csv_header, generator_spec

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config
    from gap_spark.core.settings import SynthSettings

__all__ = ["generate", "run_synth", "synth_settings", "write_split"]

log = logging.getLogger(__name__)


def synth_settings(**values: Any) -> "SynthSettings":
    """The ``synth`` settings of defaults.yaml with ``values`` in place of some keys, checked.

    For tests, benchmarks and notebooks that drive the generator directly:
    ``World(synth_settings(train_rows=600, dim=12))``.
    """
    return load_config(overrides={"synth": values}).settings.synth


_WORLD: World | None = None


def _init_worker(settings: "SynthSettings") -> None:
    global _WORLD
    _WORLD = World(settings)


def _worker_chunk(job: ChunkJob) -> bytes:
    """:func:`chunk_csv` in a pool process, with the World its initializer built."""
    assert _WORLD is not None
    return chunk_csv(_WORLD, job)


def write_split(settings: "SynthSettings", split: str, out_uri: str, chunk_rows: int = 4096,
                pool: "Pool | None" = None) -> dict[str, Any]:
    """Stream one split's CSV to ``out_uri`` (written under a temporary name, then renamed)."""
    world = World(settings)
    filesystem, path = fs.resolve(out_uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    total = settings.rows(split)
    started = time.time()
    written = 0
    last_log = started
    with filesystem.open_output_stream(tmp) as out:
        out.write(csv_header(settings.dim).encode())
        jobs = chunk_jobs(world, split, chunk_rows)
        chunks: Iterable[bytes] = (pool.imap(_worker_chunk, jobs) if pool is not None
                                   else (chunk_csv(world, job) for job in jobs))
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


def generate(settings: "SynthSettings", out_dir: str) -> dict[str, Any]:
    """Write the three CSVs with their real names into ``out_dir``, ``settings.workers`` processes
    formatting chunks of ``settings.chunk_rows`` rows; returns the summary written to ``_synth.json``."""
    fs.makedirs(out_dir)
    summary: dict[str, Any] = {"spec": generator_spec(settings), "files": {}}
    started = time.time()
    if settings.workers > 1:
        # Not "fork": a forked child inherits the driver's Py4J socket (the pipeline holds a live
        # SparkSession) and writes to it when it garbage-collects a Java proxy.
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ctx.Pool(settings.workers, initializer=_init_worker, initargs=(settings,)) as pool:
            for split in SPLITS:
                summary["files"][split] = write_split(settings, split, raw_file_path(out_dir, split),
                                                      settings.chunk_rows, pool)
    else:
        for split in SPLITS:
            summary["files"][split] = write_split(settings, split, raw_file_path(out_dir, split),
                                                  settings.chunk_rows)
    summary["seconds"] = round(time.time() - started, 3)
    fs.write_json(synth_marker_path(out_dir), summary)
    return summary


def run_synth(spark: Any, config: "Config", paths: "Paths") -> dict[str, Any]:
    """Stage entry point: generate the raw CSVs described by ``config.settings.synth`` into ``paths.raw``."""
    settings = config.settings.synth
    log.info("synth: %s", generator_spec(settings))
    return generate(settings, paths.raw)
