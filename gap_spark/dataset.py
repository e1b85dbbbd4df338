"""The contract between ingest and every later stage: layout, schema and manifest of the dataset.

``DATA_DIR/split=<train|val|v2>/part-*.parquet`` with columns ``row_id`` (long), ``path`` (string),
``label`` (int) and ``features`` (array<float>); ``DATA_DIR/_manifest.json`` marks it complete.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gap_spark import fs
from gap_spark.errors import DatasetError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SPLITS = ("train", "val", "v2")
MODEL_TAG = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"
RAW_FILE_NAMES = {split: f"{split}_{MODEL_TAG}.csv" for split in SPLITS}
MANIFEST = "_manifest.json"
QUARANTINE = "_quarantine"
MANIFEST_VERSION = 1
DATASET_COLUMNS = ("row_id", "path", "label", "features")


def dataset_schema():
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField("row_id", T.LongType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("label", T.IntegerType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), containsNull=False), False),
    ])


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


def read_split(spark: "SparkSession", data_dir: str, split: str, manifest: dict | None = None) -> "DataFrame":
    """One split as a DataFrame, after checking the manifest says it is complete."""
    manifest = manifest or read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise DatasetError(f"dataset {data_dir} has no split '{split}' (it has {sorted(manifest['splits'])})")
    return spark.read.schema(dataset_schema()).parquet(fs.to_spark_uri(split_path(data_dir, split)))


def read_dataset(spark: "SparkSession", data_dir: str) -> tuple[dict[str, "DataFrame"], dict]:
    """All splits the manifest lists, and the manifest."""
    manifest = read_manifest(data_dir)
    frames = {split: read_split(spark, data_dir, split, manifest) for split in manifest["splits"]}
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
