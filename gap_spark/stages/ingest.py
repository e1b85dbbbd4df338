"""Stage ``ingest``: validate the three EVA-02 CSVs and write the partitioned Parquet dataset.

0. Under the dataset's lock, before any heavy work: the output may be replaced (a gap-spark dataset or
   an empty directory, holding no input), and each file passes :mod:`gap_spark.stages.ingest_preflight`.
1. The driver reads each file's header line itself and checks it: an empty index name, ``path``,
   ``label``, then ``0``..``D-1`` with the same D in every file. Spark never infers types over 1027 columns.
2. Each split is parsed, validated and written into a staging directory beside the dataset, its bad rows
   into ``_quarantine/`` (:mod:`gap_spark.stages.ingest_split`, parsing by :mod:`gap_spark.ops.csv_lines`).
   The train CSV's tasks also set aside candidates for ``split=select``, carved out by the driver
   (:mod:`gap_spark.stages.ingest_select`).
3. The staging directory replaces the dataset and the manifest is written last
   (:func:`gap_spark.contracts.dataset.commit_dataset`), so a crash at any point leaves no manifest and
   readers refuse.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset import (
    MANIFEST,
    RAW_SPLITS,
    SELECT_SOURCE,
    SplitResult,
    check_replaceable,
    commit_dataset,
    dataset_manifest,
    new_staging_path,
    record_parts,
    remove_stale_staging,
    resolve_sources,
)
from gap_spark.core import fs
from gap_spark.core.locks import directory_lock
from gap_spark.stages.ingest_preflight import preflight
from gap_spark.stages.ingest_select import finish_select, select_plan
from gap_spark.stages.ingest_split import SplitJob, ingest_split

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config
    from gap_spark.core.settings import IngestSettings

__all__ = ["run_ingest"]

log = logging.getLogger(__name__)

# What the stage's summary keeps of each split's manifest entry.
SUMMARY_KEYS = ("rows_read", "rows_written", "rows_selected", "rows_quarantined", "mb_per_s")


def run_ingest(spark: "SparkSession", config: "Config", paths: "Paths", train: str | None = None,
               val: str | None = None, v2: str | None = None) -> dict[str, Any]:
    """Stage entry point: CSVs -> ``paths.data`` (Parquet by split, quarantine, manifest).

    Holds the dataset's lock (``<DATA_DIR>.lock``) throughout, also when called as a library function
    outside the CLI (the lock is re-entrant, so inside the CLI or the pipeline this costs nothing).
    """
    data_dir = paths.data.rstrip("/")
    with directory_lock(data_dir, config.settings.locks.stale_after_s):
        return _ingest(spark, config.settings.ingest, data_dir, resolve_sources(paths.raw, train, val, v2))


def _ingest(spark: "SparkSession", settings: "IngestSettings", data_dir: str,
            sources: dict[str, str]) -> dict[str, Any]:
    started = time.time()
    check_replaceable(data_dir, list(sources.values()))
    checks, dim = preflight(sources, settings.classes, settings.max_bad_fraction)

    remove_stale_staging(data_dir)
    staging = new_staging_path(data_dir)
    fs.makedirs(staging)
    results: dict[str, SplitResult] = {}
    try:
        for split in RAW_SPLITS:
            source = sources[split]
            log.info("ingest %s: %s (%.1f MB)", split, source, fs.size(source) / 1e6)
            plan = (select_plan(staging, fs.size(source), checks[split].line_bytes, settings.classes,
                                settings.select_fraction, settings.select_seed)
                    if split == SELECT_SOURCE and settings.select_fraction > 0 else None)
            job = SplitJob(split, source, checks[split], dim, staging, data_dir, plan)
            results[split] = ingest_split(spark, job, settings)
            if plan is not None:
                results["select"] = finish_select(staging, results[split], plan, settings.select_fraction,
                                                  settings.compression)
        record_parts(staging, results)
    except BaseException:
        fs.delete(staging)
        raise

    manifest = dataset_manifest(dim, settings.classes, sources, results, time.time() - started)
    commit_dataset(staging, data_dir, manifest)
    log.info("ingest: dataset complete at %s (%s)", data_dir, MANIFEST)
    return {"data": data_dir, "dim": dim, "classes": settings.classes,
            "splits": {s: {k: v for k, v in m.items() if k in SUMMARY_KEYS} for s, m in manifest["splits"].items()},
            "seconds": manifest["seconds"]}
