"""The selection split: the hash, the quotas, the carve among candidates, and ingest end to end."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gap_spark.contracts.dataset import RAW_FILE_NAMES, read_manifest, read_split
from gap_spark.ops.csv_lines import output_arrow_schema
from gap_spark.ops.select_split import (
    candidate_threshold,
    choose_select,
    hash_uniform_ids,
    select_quotas,
    shortfall,
)
from gap_spark.stages.ingest import run_ingest
from gap_spark.stages.ingest_select import carve_select, parquet_files, read_files
from tests.conftest import config_and_paths

# ---------------------------------------------------------------- pure numpy


def test_hash_is_sparks_hash_uniform_of_row_id_and_seed(spark):
    from pyspark.sql import functions as F

    from gap_spark.ops.frames import hash_uniform

    ids = np.array([0, 1, 2, -1, 2 ** 40, -(2 ** 62), 12_345_678_901], dtype=np.int64)
    frame = spark.createDataFrame([(int(i),) for i in ids], "row_id long")
    for seed in (0, 19, 2 ** 31 - 1):
        spark_u = [r[0] for r in frame.select(hash_uniform(F.col("row_id"), F.lit(seed))).collect()]
        assert np.array_equal(np.array(spark_u), hash_uniform_ids(ids, seed)), seed
    with pytest.raises(ValueError):
        hash_uniform_ids(ids, 2 ** 31)


def test_quotas_are_floor_or_ceil_of_the_share_and_sum_to_the_rounded_total():
    rng = np.random.default_rng(0)
    counts = {int(c): int(n) for c, n in enumerate(rng.integers(0, 40, size=300))}
    for fraction in (0.02, 0.1, 0.37):
        quotas = select_quotas(counts, fraction, seed=5)
        assert sum(quotas.values()) == round(fraction * sum(counts.values()))
        for label, n in counts.items():
            assert quotas[label] in (int(np.floor(fraction * n)), int(np.floor(fraction * n)) + 1)
            assert quotas[label] <= n
    # 200 rows a class at 2%: exactly 4 each, as round(f * n) gives.
    assert set(select_quotas(dict.fromkeys(range(8), 200), 0.02, 1).values()) == {4}


def test_equal_remainders_are_shared_by_hash_not_by_label_order():
    counts = dict.fromkeys(range(1000), 13)  # the 1% scale: 0.26 rows a class at 2%
    quotas = select_quotas(counts, 0.02, seed=7)
    chosen = [c for c, q in quotas.items() if q]
    assert len(chosen) == 260
    assert max(chosen) > 900 and min(chosen) < 100  # spread over the labels, not the first 260
    assert select_quotas(counts, 0.02, seed=7) == quotas
    assert select_quotas(counts, 0.02, seed=8) != quotas


def test_choose_select_takes_the_smallest_hashes_per_class():
    ids = np.arange(12, dtype=np.int64)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    u = np.array([0.5, 0.1, 0.3, 0.2, 0.9, 0.8, 0.7, 0.1, 0.1, 0.4, 0.0, 0.6])
    chosen = choose_select(ids, labels, u, {0: 2, 1: 0, 2: 3})
    assert ids[chosen].tolist() == [1, 3, 7, 8, 10]  # class 2: u ties broken by row_id
    assert shortfall({0: 4, 1: 1}, {0: 2, 1: 3, 2: 1}) == {1: 2, 2: 1}


def test_candidate_threshold_leaves_a_margin_and_stays_a_fraction():
    assert candidate_threshold(0.0, 100) == 0.0
    assert candidate_threshold(0.02, 13) > 0.5  # tiny classes: most rows are candidates
    assert candidate_threshold(0.02, 2) == 1.0
    full = candidate_threshold(0.02, 1281)
    assert 0.02 < full < 0.05
    assert candidate_threshold(0.02, 128_000) < 0.022


# ---------------------------------------------------------------- the carve, on files (no Spark)


def rows_table(n: int, classes: int, first: int = 0) -> pa.Table:
    ids = np.arange(first, first + n, dtype=np.int64)
    features = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(2 * n, np.float32)), 2)
    return pa.table({"row_id": ids, "path": [f"p/{i}.jpg" for i in ids], "label": (ids % classes).astype(np.int32),
                     "features": features.cast(pa.list_(pa.float32()))}).cast(output_arrow_schema())


def split_into_files(table: pa.Table, pieces: int, threshold: float, seed: int, root) -> tuple[str, str]:
    """Write ``table`` as ingest's tasks would: ``pieces`` train files and their candidates."""
    train, candidates = root / "train", root / "cand"
    train.mkdir(parents=True)
    candidates.mkdir()
    u = hash_uniform_ids(table.column("row_id").to_numpy(), seed)
    for i, idx in enumerate(np.array_split(np.arange(table.num_rows), pieces)):
        part = table.take(pa.array(idx))
        below = pa.array(u[idx] < threshold)
        pq.write_table(part.filter(below), candidates / f"part-{i:05d}.parquet")
        pq.write_table(part.filter(pa.compute.invert(below)), train / f"part-{i:05d}.parquet")
    return str(train), str(candidates)


@pytest.mark.parametrize("pieces, threshold", [(1, 1.0), (3, 0.2), (7, 0.05), (2, 0.0)],
                         ids=["one-file-all-candidates", "three-files", "seven-files-shortfall", "no-candidates"])
def test_carve_gives_the_same_exact_slice_whatever_the_files(tmp_path, pieces, threshold):
    table = rows_table(1000, classes=6)
    counts = {c: int((table.column("label").to_numpy() == c).sum()) for c in range(6)}
    quotas = select_quotas(counts, 0.1, seed=3)
    ids = table.column("row_id").to_numpy()
    expected = ids[choose_select(ids, table.column("label").to_numpy(), hash_uniform_ids(ids, 3), quotas)]

    train, candidates = split_into_files(table, pieces, threshold, 3, tmp_path)
    result = carve_select(train, candidates, str(tmp_path / "select"), counts, 0.1, 3, "snappy", next_index=pieces)
    selected = read_files(parquet_files(str(tmp_path / "select")))
    kept = read_files(parquet_files(train))
    assert sorted(selected.column("row_id").to_pylist()) == sorted(expected.tolist())
    assert result.rows == len(expected) == 100
    assert set(kept.column("row_id").to_pylist()) == set(ids.tolist()) - set(expected.tolist())
    assert kept.num_rows + selected.num_rows == 1000
    assert (result.pulled > 0) == (threshold < 0.1)  # too few candidates: the rest came out of train
    assert not (tmp_path / "cand").exists()


# ---------------------------------------------------------------- ingest end to end


def expected_select(raw_csv, fraction: float, seed: int) -> set[int]:
    """The slice computed from the raw CSV with pandas: per class the quota's smallest hashes."""
    frame = pd.read_csv(raw_csv, usecols=[0, 2], header=0, names=["row_id", "label"])
    ids, labels = frame["row_id"].to_numpy(np.int64), frame["label"].to_numpy()
    quotas = select_quotas({int(c): int((labels == c).sum()) for c in np.unique(labels)}, fraction, seed)
    return set(ids[choose_select(ids, labels, hash_uniform_ids(ids, seed), quotas)].tolist())


def test_generated_data_has_an_exact_stratified_select_split_disjoint_from_train(spark, tiny_dataset,
                                                                                tiny_config_and_paths):
    config, paths = tiny_config_and_paths
    settings = config.settings.ingest
    manifest = read_manifest(tiny_dataset)
    train, select = manifest["splits"]["train"], manifest["splits"]["select"]
    assert train["rows_read"] == 1600 == train["rows_written"] + train["rows_selected"] + train["rows_quarantined"]
    assert train["rows_selected"] == select["rows_written"] == 32  # 8 classes x 200 rows x 2%
    assert select["carved_from"] == "train" and select["source"] == train["source"]
    assert list(manifest["splits"]) == ["train", "select", "val", "v2"]

    frames = {s: read_split(spark, tiny_dataset, s).toPandas() for s in ("train", "select")}
    per_class = frames["select"].groupby("label").size().to_dict()
    assert per_class == dict.fromkeys(range(8), 4)
    raw = f"{paths.raw}/{RAW_FILE_NAMES['train']}"
    assert set(frames["select"]["row_id"]) == expected_select(raw, settings.select_fraction, settings.select_seed)
    assert not set(frames["select"]["row_id"]) & set(frames["train"]["row_id"])
    assert not set(frames["select"]["path"]) & set(frames["train"]["path"])
    assert len(frames["train"]) == 1568


def test_select_is_the_same_for_plain_and_gzipped_files_and_off_at_zero(spark, tiny_raw, tmp_path):
    import gzip
    import shutil

    gz_raw = tmp_path / "gz"
    gz_raw.mkdir()
    for name in RAW_FILE_NAMES.values():
        with open(f"{tiny_raw}/{name}", "rb") as src, gzip.open(gz_raw / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    slices = {}
    for tag, raw in (("plain", tiny_raw), ("gz", gz_raw)):
        config, paths = config_and_paths(tmp_path / tag, **{"paths.raw": raw, "ingest.classes": 8,
                                                            "ingest.select_fraction": 0.05, "ingest.select_seed": 4})
        run_ingest(spark, config, paths)
        slices[tag] = sorted(r["row_id"] for r in read_split(spark, paths.data, "select").select("row_id").collect())
    assert slices["plain"] == slices["gz"] and len(slices["plain"]) == 80

    config, paths = config_and_paths(tmp_path / "off", **{"paths.raw": tiny_raw, "ingest.classes": 8,
                                                          "ingest.select_fraction": 0})
    run_ingest(spark, config, paths)
    manifest = read_manifest(paths.data)
    assert "select" not in manifest["splits"] and manifest["splits"]["train"]["rows_written"] == 1600
