"""Ingest end to end on tiny files: the frames written, quarantine, the manifest and the commit."""
from __future__ import annotations

import gzip
import json

import pytest
from pyspark.testing import assertDataFrameEqual

from gap_spark.contracts.dataset import RAW_FILE_NAMES, read_manifest, read_split
from gap_spark.core import fs
from gap_spark.core.errors import DatasetError, IngestError
from gap_spark.stages.ingest import run_ingest
from tests.conftest import config_and_paths
from tests.test_csv_lines import BAD_CASES, DIM, HEADER

# ---------------------------------------------------------------- end to end with Spark


def write_raw(root, rows: dict[str, list[str]], header: str = HEADER, gz: bool = False, eol: str = "\n"):
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        name = RAW_FILE_NAMES[split] + (".gz" if gz else "")
        data = (eol.join([header, *lines]) + eol).encode()
        (root / name).write_bytes(gzip.compress(data) if gz else data)
    return root


def config_for(tmp_path, **sets):
    return config_and_paths(tmp_path, **{"paths.data": tmp_path / "ds", "ingest.classes": 5, **sets})


CLEAN = {
    "train": ["0,t/a.jpg,0,0.5,1.5,-2.0", "1,t/b.jpg,4,0.25,0.0,1e-3"],
    "val": ['0,"v/with,comma.jpg",3,1,2,3'],
    "v2": ["0,w/0/a.jpeg,2,-1,-2,-3", "1,w/0/b.jpeg,2,4,5,6"],
}


def expected_frame(spark, split):
    from gap_spark.contracts.dataset import dataset_schema

    rows = {
        "train": [(0, "t/a.jpg", 0, [0.5, 1.5, -2.0]), (1, "t/b.jpg", 4, [0.25, 0.0, 1e-3])],
        "val": [(0, "v/with,comma.jpg", 3, [1.0, 2.0, 3.0])],
        "v2": [(0, "w/0/a.jpeg", 2, [-1.0, -2.0, -3.0]), (1, "w/0/b.jpeg", 2, [4.0, 5.0, 6.0])],
    }[split]
    return spark.createDataFrame(rows, dataset_schema())


@pytest.mark.parametrize("gz, eol", [(False, "\n"), (True, "\r\n")], ids=["csv-lf", "gz-crlf"])
def test_ingest_tiny_files_gives_the_expected_frames(spark, tmp_path, gz, eol):
    write_raw(tmp_path / "raw", CLEAN, gz=gz, eol=eol)
    config, paths = config_for(tmp_path)
    summary = run_ingest(spark, config, paths)
    assert summary["dim"] == DIM
    for split in CLEAN:
        assertDataFrameEqual(read_split(spark, paths.data, split), expected_frame(spark, split), rtol=1e-7)
    manifest = read_manifest(paths.data)
    assert manifest["splits"]["train"]["rows_read"] == 2 and manifest["splits"]["val"]["rows_written"] == 1
    assert manifest["splits"]["v2"]["source"].endswith(".gz" if gz else ".csv")


def test_bad_rows_go_to_quarantine_with_raw_line_source_and_reason(spark, tmp_path):
    good = [f"{100 + i},ok/{i}.jpg,{i % 5},0.1,0.2,0.3" for i in range(4)]
    bad = list(BAD_CASES)
    dup_id = ["200,dup/a.jpg,1,1,1,1", "200,dup/b.jpg,1,1,1,1"]
    dup_path = ["300,same.jpg,1,1,1,1", "301,same.jpg,1,1,1,1"]
    write_raw(tmp_path / "raw", {"train": good + bad + dup_id + dup_path, "val": CLEAN["val"], "v2": CLEAN["v2"]})
    config, paths = config_for(tmp_path, **{"ingest.max_bad_fraction": 0.9})
    run_ingest(spark, config, paths)

    manifest = read_manifest(paths.data)["splits"]["train"]
    assert manifest["rows_read"] == len(good) + len(bad) + 4
    assert manifest["rows_written"] == len(good)
    assert manifest["rows_quarantined"] == len(bad) + 4
    expected_kinds = {}
    for kind, _ in BAD_CASES.values():
        expected_kinds[kind] = expected_kinds.get(kind, 0) + 1
    expected_kinds.update(duplicate_row_id=2, duplicate_path=2)
    assert manifest["quarantined_by_reason"] == expected_kinds

    quarantine = spark.read.parquet(fs.to_spark_uri(f"{paths.data}/_quarantine/split=train")).collect()
    by_raw = {row["raw"]: row for row in quarantine}
    assert set(by_raw) == set(bad + dup_id + dup_path)
    for line, (kind, words) in BAD_CASES.items():
        assert by_raw[line]["kind"] == kind and words in by_raw[line]["reason"]
        assert by_raw[line]["source"].endswith(RAW_FILE_NAMES["train"])
    assert {by_raw[line]["kind"] for line in dup_path} == {"duplicate_path"}
    written = read_split(spark, paths.data, "train").select("row_id").collect()
    assert sorted(r["row_id"] for r in written) == [100, 101, 102, 103]


def test_too_many_bad_rows_fails_and_leaves_no_dataset(spark, tmp_path):
    lines = [f"{i},p{i}.jpg,1,0.1,0.2,0.3" for i in range(30)] + ["99,q.jpg,1,0.1,zz,0.3"] * 2
    write_raw(tmp_path / "raw", {"train": lines, "val": CLEAN["val"], "v2": CLEAN["v2"]})
    config, paths = config_for(tmp_path, **{"ingest.max_bad_fraction": 0.01})
    with pytest.raises(IngestError, match=r"2 of 32 rows are bad \(6.25%\), more than the limit of 1.00%"):
        run_ingest(spark, config, paths)
    assert not fs.exists(paths.data)
    assert not [p for p in (tmp_path).iterdir() if ".staging-" in p.name]


def test_file_in_another_format_fails_fast(spark, tmp_path):
    junk = [f"{i};p{i}.jpg;1;0.1;0.2;0.3" for i in range(50)]
    write_raw(tmp_path / "raw", {"train": junk, "val": CLEAN["val"], "v2": CLEAN["v2"]})
    config, paths = config_for(tmp_path)
    with pytest.raises(IngestError, match="first 50 rows are bad"):
        run_ingest(spark, config, paths)


def test_wrong_header_and_mismatched_dims_fail_with_no_output(spark, tmp_path):
    write_raw(tmp_path / "raw", {"train": CLEAN["train"], "val": CLEAN["val"]})
    write_raw(tmp_path / "raw", {"v2": ["0,a,1,1,2"]}, header=",path,label,0,1")
    config, paths = config_for(tmp_path)
    with pytest.raises(IngestError, match="disagree on the feature dimension"):
        run_ingest(spark, config, paths)
    write_raw(tmp_path / "raw", {"v2": CLEAN["v2"]}, header=",path,lbl,0,1,2")
    with pytest.raises(IngestError, match="v2_eva02.*path,label"):
        run_ingest(spark, config, paths)
    assert not fs.exists(paths.data)


def test_missing_file_is_named(spark, tmp_path):
    write_raw(tmp_path / "raw", {"train": CLEAN["train"], "val": CLEAN["val"]})
    config, paths = config_for(tmp_path)
    with pytest.raises(IngestError, match="v2 CSV not found"):
        run_ingest(spark, config, paths)


def test_rerun_is_idempotent_and_readers_refuse_an_unfinished_dataset(spark, tmp_path):
    write_raw(tmp_path / "raw", CLEAN)
    config, paths = config_for(tmp_path)
    run_ingest(spark, config, paths)
    first = {s: read_split(spark, paths.data, s).collect() for s in CLEAN}
    manifest_one = read_manifest(paths.data)
    run_ingest(spark, config, paths)
    for split in CLEAN:
        assertDataFrameEqual(read_split(spark, paths.data, split), first[split])
    manifest_two = read_manifest(paths.data)
    assert manifest_one["splits"] == {s: {**v, "seconds": manifest_one["splits"][s]["seconds"],
                                          "mb_per_s": manifest_one["splits"][s]["mb_per_s"]}
                                      for s, v in manifest_two["splits"].items()}
    # A crash before the commit leaves no manifest: readers refuse the directory.
    fs.delete(f"{paths.data}/_manifest.json")
    with pytest.raises(DatasetError, match="not a complete gap-spark dataset"):
        read_split(spark, paths.data, "train")
    (tmp_path / "ds" / "_manifest.json").write_text(json.dumps({"status": "writing"}))
    with pytest.raises(DatasetError, match="does not mark a complete dataset"):
        read_manifest(paths.data)


def test_generated_data_ingests_and_reconciles(spark, tiny_dataset, tiny_config_and_paths):
    _config, _ = tiny_config_and_paths
    manifest = read_manifest(tiny_dataset)
    assert manifest["dim"] == 16 and manifest["classes"] == 8
    for split, rows in (("train", 1600), ("val", 800), ("v2", 800)):
        entry = manifest["splits"][split]
        assert entry["rows_read"] == rows == entry["rows_written"] + entry["rows_selected"] + entry["rows_quarantined"]
        assert entry["rows_quarantined"] == 0
        frame = read_split(spark, tiny_dataset, split)
        assert frame.count() == rows - entry["rows_selected"]
        assert frame.selectExpr("min(size(features))", "max(size(features))").first() == (16, 16)
