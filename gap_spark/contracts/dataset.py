"""The contract between the raw files, ingest and every later stage: layouts, schema and manifest.

- ``RAW_DIR/<split>_<model tag>.csv`` (or ``.csv.gz``): the three CSVs under their real names, and
  ``RAW_DIR/_synth.json`` when the generator wrote them.
- ``DATA_DIR/split=<train|select|val|v2>/part-*.parquet`` with columns ``row_id`` (long), ``path``
  (string), ``label`` (int) and ``features`` (array<float>); ``select`` is a stratified slice of the
  train CSV set aside for every choice (tuning, stopping); ``DATA_DIR/_quarantine/split=<split>/``
  holds the bad rows and ``DATA_DIR/_manifest.json`` marks the dataset complete and records every
  part file, which readers check (:mod:`gap_spark.contracts.dataset_parts`) before reading.
- ``DATA_DIR.staging-<id>/``: a dataset being written; :func:`commit_dataset` swaps it in and writes
  the manifest last, so a crash at any point leaves no manifest and readers refuse.
"""
from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.dataset_parts import split_parts, verify_parts
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError, IngestError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

# The dataset's splits, and the raw CSVs they come from (select is carved out of the train CSV).
SPLITS = ("train", "select", "val", "v2")
RAW_SPLITS = ("train", "val", "v2")
SELECT_SOURCE = "train"
MODEL_TAG = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"
RAW_FILE_NAMES = {split: f"{split}_{MODEL_TAG}.csv" for split in RAW_SPLITS}
MANIFEST = "_manifest.json"
QUARANTINE = "_quarantine"
SYNTH_MARKER = "_synth.json"
MANIFEST_VERSION = 2
DATASET_COLUMNS = ("row_id", "path", "label", "features")


def dataset_schema() -> "StructType":
    """The Spark schema of every split (and of ingest's output)."""
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField("row_id", T.LongType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("label", T.IntegerType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), containsNull=False), False),
    ])


def raw_file_path(raw_dir: str, split: str) -> str:
    """``RAW_DIR/<split>_<model tag>.csv``."""
    return fs.join(raw_dir, RAW_FILE_NAMES[split])


def synth_marker_path(raw_dir: str) -> str:
    """``RAW_DIR/_synth.json``: what the generator wrote, and with which settings."""
    return fs.join(raw_dir, SYNTH_MARKER)


def quarantine_path(data_dir: str, split: str) -> str:
    """``DATA_DIR/_quarantine/split=<split>``."""
    return fs.join(data_dir, QUARANTINE, f"split={split}")


def manifest_path(data_dir: str) -> str:
    return fs.join(data_dir, MANIFEST)


def read_manifest(data_dir: str) -> dict[str, Any]:
    """The manifest of a complete dataset; a missing or unfinished one is an error."""
    path = manifest_path(data_dir)
    if not fs.exists(path):
        if fs.exists(data_dir):
            raise DatasetError(
                f"{data_dir} has no {MANIFEST}: it is not a complete gap-spark dataset "
                "(ingest did not finish); run `gap-spark ingest` again")
        raise DatasetError(f"dataset not found: {data_dir} (run `gap-spark ingest` first)")
    try:
        manifest = fs.read_json(path)
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); run `gap-spark ingest` again") from None
    if manifest.get("status") != "complete" or "splits" not in manifest:
        raise DatasetError(f"{path} does not mark a complete dataset; run `gap-spark ingest` again")
    return manifest


def split_path(data_dir: str, split: str) -> str:
    return fs.join(data_dir, f"split={split}")


def verify_split(data_dir: str, split: str, manifest: dict) -> None:
    """Refuse a split that the manifest does not list, or whose files differ from the manifest's record.

    A manifest without a ``version`` was written by hand (test fixtures, benchmarks) and records no
    files: its splits are read unchecked. One from ingest records every part file
    (:func:`gap_spark.contracts.dataset_parts.verify_parts`).
    """
    if split not in manifest["splits"]:
        raise DatasetError(f"dataset {data_dir} has no split '{split}' (it has {sorted(manifest['splits'])})")
    if manifest.get("version") is not None:
        verify_parts(data_dir, split, split_path(data_dir, split), manifest["splits"][split])


def read_split(spark: "SparkSession", data_dir: str, split: str, manifest: dict | None = None) -> "DataFrame":
    """One split as a DataFrame, after checking it is complete and its files are the ones ingest wrote."""
    manifest = manifest or read_manifest(data_dir)
    verify_split(data_dir, split, manifest)
    return spark.read.schema(dataset_schema()).parquet(fs.to_spark_uri(split_path(data_dir, split)))


def read_dataset(spark: "SparkSession", data_dir: str,
                 splits: Sequence[str] | None = None) -> tuple[dict[str, "DataFrame"], dict]:
    """The named splits (default: all the manifest lists, ``select`` included), and the manifest.

    Parameters
    ----------
    splits : sequence of str, optional
        The splits to read; one the manifest lacks is refused. Stages that compare sets name theirs
        (for example ``("train", "val", "v2")``) so that a new split never joins a comparison by itself.
    """
    manifest = read_manifest(data_dir)
    names = list(manifest["splits"]) if splits is None else list(splits)
    frames = {split: read_split(spark, data_dir, split, manifest) for split in names}
    return frames, manifest


def manifest_summary(manifest: dict) -> dict:
    """The part of a manifest later stages copy into their outputs."""
    return {
        "dim": manifest.get("dim"),
        "classes": manifest.get("classes"),
        "fingerprint": manifest.get("fingerprint"),
        "splits": {s: {"rows": v.get("rows_written"), "quarantined": v.get("rows_quarantined")}
                   for s, v in manifest.get("splits", {}).items()},
    }


def resolve_sources(raw_dir: str | None, train: str | None = None, val: str | None = None,
                    v2: str | None = None) -> dict[str, str]:
    """The CSV for each split: explicit paths first, else the real file names (``.csv`` or ``.csv.gz``) in raw_dir."""
    given = {"train": train, "val": val, "v2": v2}
    sources: dict[str, str] = {}
    for split in RAW_SPLITS:
        explicit = given[split]
        if explicit:
            sources[split] = explicit
            continue
        if not raw_dir:
            raise IngestError(f"no file for split '{split}': give --raw or --{split}")
        plain = raw_file_path(raw_dir, split)
        sources[split] = plain if fs.exists(plain) or not fs.exists(plain + ".gz") else plain + ".gz"
    for split, source in sources.items():
        if not fs.exists(source):
            raise IngestError(f"{split} CSV not found: {source}")
        if fs.is_dir(source):
            raise IngestError(f"{split} CSV is a directory, expected a file: {source}")
    return sources


def fingerprint(sources: dict[str, str]) -> str:
    """Identifies the inputs: names, sizes and modification times."""
    import hashlib

    digest = hashlib.sha256()
    for split in sorted(sources):
        filesystem, path = fs.resolve(sources[split])
        info = filesystem.get_file_info(path)
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        digest.update(f"{split}|{sources[split]}|{info.size}|{mtime}\n".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# The writer: staging, the manifest and the commit
# --------------------------------------------------------------------------------------------------

@dataclass
class SplitResult:
    """What ingest did with one split: its manifest entry.

    ``rows_read = rows_written + rows_selected + rows_quarantined``: ``rows_selected`` are the train
    CSV's rows set aside as the ``select`` split (zero elsewhere). The ``select`` entry names the
    train CSV as its source and ``carved_from: train``.
    """

    split: str
    source: str
    source_bytes: int
    rows_read: int
    rows_written: int
    rows_quarantined: int
    quarantined_by_kind: dict[str, int]
    seconds: float
    rows_selected: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)
    next_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)

    def to_manifest(self) -> dict[str, Any]:
        """The split's entry under the manifest's ``splits``."""
        return {
            "source": self.source, "source_bytes": self.source_bytes,
            "rows_read": self.rows_read, "rows_written": self.rows_written, "rows_selected": self.rows_selected,
            "rows_quarantined": self.rows_quarantined, "quarantined_by_reason": self.quarantined_by_kind,
            **self.extra, "files": len(self.parts), "parts": self.parts, "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.source_bytes / 1e6 / max(self.seconds, 1e-9), 2),
        }


def dataset_manifest(dim: int, classes: int, sources: dict[str, str], splits: dict[str, SplitResult],
                     seconds: float) -> dict[str, Any]:
    """The manifest of a complete dataset: D, K, the inputs' fingerprint, the schema and each split.

    The splits are listed in :data:`SPLITS` order.
    """
    return {
        "status": "complete",
        "version": MANIFEST_VERSION,
        "dim": dim,
        "classes": classes,
        "fingerprint": fingerprint(sources),
        "schema": dataset_schema().jsonValue(),
        "splits": {split: splits[split].to_manifest() for split in SPLITS if split in splits},
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# The names ingest writes directly under DATA_DIR (and in its staging directory).
_DATASET_NAMES = re.compile(r"^(split=[A-Za-z0-9_]+|_quarantine|_select_candidates|_manifest\.json)$")


def _normal(path: str) -> str:
    return os.path.realpath(fs.local_path(path)) if fs.is_local(path) else str(path).rstrip("/")


def _holds(directory: str, path: str) -> bool:
    """Whether ``path`` is ``directory`` or lies under it."""
    d, p = _normal(directory), _normal(path)
    return p == d or p.startswith(d.rstrip("/") + "/")


def check_replaceable(data_dir: str, inputs: Sequence[str]) -> None:
    """Refuse an output that ingest must not replace, before any work.

    Ingest replaces ``data_dir`` as a whole, so it may be only a gap-spark dataset (its entries are the
    ones ingest writes: ``split=*``, ``_quarantine``, ``_manifest.json``; a crash between the swap and
    the manifest leaves such a directory without a manifest), its own staging, or an empty directory.
    A file, a directory holding anything else, and a directory holding an input (the raw folder, or
    a parent of a source CSV) are refused with one line.

    Parameters
    ----------
    data_dir : str
        The output (``--out``).
    inputs : sequence of str
        The source CSVs and the raw folder.
    """
    for source in inputs:
        if source and _holds(data_dir, source):
            raise IngestError(f"the output {data_dir} holds the input {source}: ingest replaces its output as a "
                              "whole and would delete it; choose another --out")
    if not fs.exists(data_dir):
        return
    if not fs.is_dir(data_dir):
        raise IngestError(f"the output {data_dir} is a file, not a gap-spark dataset: ingest replaces only a "
                          "dataset it wrote or an empty directory; choose another --out")
    foreign = [name for name in fs.list_dir(data_dir) if not _DATASET_NAMES.match(name)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise IngestError(f"the output {data_dir} is not a gap-spark dataset (it holds {shown}): ingest replaces "
                          "only a dataset it wrote or an empty directory; choose another --out")


def _parent_and_name(data_dir: str) -> tuple[str, str]:
    data_dir = data_dir.rstrip("/")
    if "/" not in data_dir:
        return ".", data_dir
    parent, name = data_dir.rsplit("/", 1)
    return parent, name


def new_staging_path(data_dir: str) -> str:
    """``DATA_DIR.staging-<id>``: a fresh directory name beside the dataset to write the next one in."""
    return f"{data_dir.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"


def remove_stale_staging(data_dir: str) -> None:
    """Delete the staging directories that interrupted ingests of this dataset left beside it.

    Only ``<name>.staging-<8 hex digits>``, and only by a caller holding the dataset's lock (ingest
    does), so a live run's staging is never touched.
    """
    parent, name = _parent_and_name(data_dir)
    if not fs.exists(parent):
        return
    ours = re.compile(rf"^{re.escape(name)}\.staging-[0-9a-f]{{8}}$")
    for entry in fs.list_dir(parent):
        if ours.match(entry):
            log.info("ingest: removing staging left by an interrupted run: %s", entry)
            fs.delete(fs.join(parent, entry))


def record_parts(staging: str, results: dict[str, SplitResult]) -> None:
    """Record every split's part files (name, rows, bytes, footer digest) from the staged directories."""
    for split, result in results.items():
        result.parts = split_parts(split_path(staging, split))
        written = sum(p["rows"] for p in result.parts)
        if written != result.rows_written:
            raise RuntimeError(f"ingest {split}: {result.rows_written} rows counted but the files hold {written}; "
                               "this is a bug")


def commit_dataset(staging: str, data_dir: str, manifest: dict[str, Any]) -> None:
    """Replace ``data_dir`` by ``staging``: the old manifest goes first, the new one is written last."""
    data_dir = data_dir.rstrip("/")
    if fs.exists(data_dir):
        fs.delete(manifest_path(data_dir))
        fs.delete(data_dir)
    fs.move(staging, data_dir)
    fs.write_json(manifest_path(data_dir), manifest)
