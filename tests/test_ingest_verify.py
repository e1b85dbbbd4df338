"""Readers check a split's files against the manifest before reading: a lost, extra, resized or swapped
part file is refused with one line naming the split and the rows at stake (no Spark job counts them)."""
from __future__ import annotations

import json
import shutil

import pytest

from gap_spark import cli
from gap_spark.contracts.dataset import read_split
from gap_spark.core.errors import DatasetError


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data)
    return data


def manifest_of(data) -> dict:
    return json.loads((data / "_manifest.json").read_text())


def test_manifest_records_every_part_with_rows_bytes_and_footer(dataset_copy):
    manifest = manifest_of(dataset_copy)
    for split, entry in manifest["splits"].items():
        names = sorted(p.name for p in (dataset_copy / f"split={split}").glob("*.parquet"))
        assert [p["name"] for p in entry["parts"]] == names and entry["files"] == len(names)
        assert sum(p["rows"] for p in entry["parts"]) == entry["rows_written"]
        for part in entry["parts"]:
            assert part["bytes"] == (dataset_copy / f"split={split}" / part["name"]).stat().st_size
            assert len(part["footer"]) == 16


def test_missing_and_swapped_parts_are_refused_by_train_and_evaluate(spark, dataset_copy, tmp_path, capsys):
    base = ["--data", str(dataset_copy), "--run", str(tmp_path / "run"), "--quiet"]
    assert cli.main(["train", *base, "--models", "lr", "--set", "train.lr.max_iter=1"]) == 0
    capsys.readouterr()
    manifest = manifest_of(dataset_copy)

    val_part = dataset_copy / "split=val" / manifest["splits"]["val"]["parts"][0]["name"]
    aside = tmp_path / "aside.parquet"
    shutil.move(val_part, aside)
    assert cli.main(["evaluate", *base]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "split 'val'" in err and f"{val_part.name} (800 rows) is missing" in err
    assert "800 of its 800 rows are missing" in err
    shutil.move(aside, val_part)

    train_parts = manifest["splits"]["train"]["parts"]
    lost = dataset_copy / "split=train" / train_parts[0]["name"]
    shutil.move(lost, aside)
    assert cli.main(["train", *base, "--models", "lr", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    total = manifest["splits"]["train"]["rows_written"]
    assert "split 'train'" in err and f"{train_parts[0]['rows']:,} of its {total:,} rows are missing" in err
    shutil.move(aside, lost)

    # The same names in two splits, swapped: both splits are refused.
    shutil.move(lost, aside)
    shutil.move(val_part, lost)
    shutil.move(aside, val_part)
    for command in (["train", *base, "--models", "lr", "--overwrite"], ["evaluate", *base]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "does not match its manifest" in err and "bytes, the manifest says" in err


def test_extra_and_rewritten_files_are_refused(spark, dataset_copy):
    data = str(dataset_copy)
    select = dataset_copy / "split=select"
    shutil.copy(next(select.glob("part-*.parquet")), dataset_copy / "split=v2" / "part-99999.parquet")
    with pytest.raises(DatasetError, match=r"split 'v2' .*part-99999.parquet is not one of the files ingest wrote"):
        read_split(spark, data, "v2")
    (dataset_copy / "split=v2" / "part-99999.parquet").unlink()
    read_split(spark, data, "v2")

    # Same size, other content: the footer's digest differs.
    part = next(select.glob("part-*.parquet"))
    raw = bytearray(part.read_bytes())
    raw[-20] ^= 0xFF
    part.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"split 'select' .*holds other rows than ingest wrote"):
        read_split(spark, data, "select")
    # Hidden files (a task's leftover _tmp- file, a .crc) are not read by Spark and not refused.
    (dataset_copy / "split=val" / "_tmp-00000-0-abc.parquet").write_bytes(b"x")
    read_split(spark, data, "val")
