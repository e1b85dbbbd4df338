"""Hostile but realistic inputs to ``gap-spark ingest``, run through the CLI in this process.

One table: each case builds its files under a fresh root, gives the command line, the exit code, a
substring of the first line of the message (stderr for an error; the first warning otherwise), and
what may change on disk. The tree is snapshotted before and after: nothing outside the stage's own
output may be changed or deleted (a lock or staging directory left behind fails too).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gap_spark import cli

MODEL_TAG = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"
HEADER = ",path,label,0,1,2"


def rows(n: int, first: int = 0, prefix: str = "img") -> list[str]:
    return [f"{i},{prefix}/{i}.jpg,{i % 5},{i / 7:.4f},{-i / 3:.4f},1.5" for i in range(first, first + n)]


def csv_bytes(lines: list[str], bom: bool = False, final_newline: bool = True) -> bytes:
    text = "\n".join([HEADER, *lines]) + ("\n" if final_newline else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def write_raw(root: Path, **files: bytes) -> Path:
    """RAW/<split>_<tag>.csv for train, val and v2: clean rows unless a split's bytes are given."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    defaults = {"train": csv_bytes(rows(60)), "val": csv_bytes(rows(20, 1000, "v")),
                "v2": csv_bytes(rows(20, 2000, "w"))}
    for split, data in {**defaults, **files}.items():
        (raw / f"{split}_{MODEL_TAG}.csv").write_bytes(data)
    return raw


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``: relative path -> content digest ('dir' for a directory)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def read_manifest(data: Path) -> dict:
    return json.loads((data / "_manifest.json").read_text())


def quarantine(spark, data: Path, split: str = "train") -> list:
    return spark.read.parquet(f"file://{data}/_quarantine/split={split}").collect()


@dataclass
class Case:
    """``setup(root) -> argv`` after ``ingest``; ``message``: a substring of the first line; ``output``:
    the one directory under the root that may appear or change; ``check(spark, root)``: more checks."""

    setup: Callable[[Path], list[str]]
    code: int
    message: str
    output: str | None = None
    check: Callable[..., None] | None = field(default=None)


def _out_is_file(root: Path) -> list[str]:
    (root / "out.txt").write_text("my notes\n")
    return ["--raw", str(write_raw(root)), "--out", str(root / "out.txt")]


def _out_has_user_file(root: Path) -> list[str]:
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("\\documentclass{article}\n")
    return ["--raw", str(write_raw(root)), "--out", str(root / "mine")]


def _raw_is_out(root: Path) -> list[str]:
    raw = write_raw(root)
    return ["--raw", str(raw), "--out", str(raw)]


def _header_only_v2(root: Path) -> list[str]:
    return ["--raw", str(write_raw(root, v2=csv_bytes([]))), "--out", str(root / "ds")]


def _quoted_line_break(root: Path) -> list[str]:
    broken = '60,"img/with\nbreak.jpg",1,0.5,0.5,0.5'  # pandas quotes a path holding a newline
    raw = write_raw(root, train=csv_bytes([*rows(60), broken, *rows(5, 61)]))
    return ["--raw", str(raw), "--out", str(root / "ds"), "--max-bad-fraction", "0.05"]


def _check_quoted_line_break(spark, root: Path) -> None:
    train = read_manifest(root / "ds")["splits"]["train"]
    assert train["rows_read"] == 67 and train["rows_quarantined"] == 2  # both physical lines
    assert train["rows_written"] + train["rows_selected"] == 65
    assert train["quarantined_by_reason"] == {"quoted_line_break": 2}
    raws = sorted(r["raw"] for r in quarantine(spark, root / "ds"))
    assert raws == ['60,"img/with', 'break.jpg",1,0.5,0.5,0.5']
    assert {r["reason"] for r in quarantine(spark, root / "ds")} == {"line break inside a quoted field"}


def _bom(root: Path) -> list[str]:
    return ["--raw", str(write_raw(root, train=csv_bytes(rows(60), bom=True))), "--out", str(root / "ds")]


def _check_all_rows_read(spark, root: Path) -> None:
    train = read_manifest(root / "ds")["splits"]["train"]
    assert train["rows_read"] == 60 == train["rows_written"] + train["rows_selected"]
    assert train["rows_quarantined"] == 0


def _no_final_newline(root: Path) -> list[str]:
    raw = write_raw(root, train=csv_bytes(rows(60), final_newline=False))
    return ["--raw", str(raw), "--out", str(root / "ds")]


def _truncated_last_row(root: Path) -> list[str]:
    cut = rows(60)
    cut[-1] = cut[-1][: cut[-1].rindex(",") - 3]  # the writer died mid-row
    raw = write_raw(root, train=csv_bytes(cut, final_newline=False))
    return ["--raw", str(raw), "--out", str(root / "ds"), "--max-bad-fraction", "0.05"]


def _check_truncated(spark, root: Path) -> None:
    train = read_manifest(root / "ds")["splits"]["train"]
    assert train["rows_read"] == 60 and train["quarantined_by_reason"] == {"truncated": 1}
    (row,) = quarantine(spark, root / "ds")
    assert "cut short" in row["reason"] and row["raw"].startswith("59,img/59.jpg")


def _one_bad_in_400(root: Path) -> list[str]:
    lines = rows(400)
    lines[250] = lines[250].replace(",1.5", ",zz")
    return ["--raw", str(write_raw(root, train=csv_bytes(lines))), "--out", str(root / "ds")]


def _same_file_twice(root: Path) -> list[str]:
    raw = write_raw(root)
    train = raw / f"train_{MODEL_TAG}.csv"
    return ["--train", str(train), "--val", str(train), "--v2", str(raw / f"v2_{MODEL_TAG}.csv"),
            "--out", str(root / "ds")]


CASES = {
    "out-is-a-regular-file": Case(_out_is_file, 2, "out.txt"),
    "out-is-a-folder-with-a-user-file": Case(_out_has_user_file, 2, "is not a gap-spark dataset (it holds thesis.tex)"),
    "raw-is-out": Case(_raw_is_out, 2, "holds the input"),
    "header-only-v2": Case(_header_only_v2, 2, "v2 CSV"),
    "quoted-line-break": Case(_quoted_line_break, 0, "", "ds", _check_quoted_line_break),
    "byte-order-mark": Case(_bom, 0, "", "ds", _check_all_rows_read),
    "no-final-newline": Case(_no_final_newline, 0, "does not end in a newline", "ds", _check_all_rows_read),
    "truncated-last-row": Case(_truncated_last_row, 0, "does not end in a newline", "ds", _check_truncated),
    "one-bad-row-of-400": Case(_one_bad_in_400, 2, "1 of 400 rows are bad (0.25%)"),
    "same-file-twice": Case(_same_file_twice, 2, "the same file is given as --train and --val"),
}
# More of the first line, where the case's substring alone would not say enough.
ALSO = {
    "out-is-a-regular-file": "not a",
    "header-only-v2": "has a header and no rows",
    "one-bad-row-of-400": "--max-bad-fraction 0.0025",
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, spark, tmp_path, capsys, caplog):
    case = CASES[name]
    root = tmp_path / "root"
    root.mkdir()
    argv = ["ingest", *case.setup(root), "--classes", "5", "--quiet"]
    before = snapshot(root)
    with caplog.at_level(logging.WARNING):
        code = cli.main(argv)
    stderr = capsys.readouterr().err.strip()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("gap_spark")
                and r.levelno >= logging.WARNING]
    first = stderr.splitlines()[0] if stderr else (warnings[0] if warnings else "")
    assert code == case.code, (first, stderr[-2000:])
    assert case.message in first and ALSO.get(name, "") in first, first
    if code != 0:
        assert first.startswith("gap-spark ingest: error: ") and len(stderr.splitlines()) == 1, stderr

    after = snapshot(root)
    unchanged = {k: v for k, v in before.items() if case.output is None or not k.startswith(case.output)}
    assert {k: after.get(k) for k in unchanged} == unchanged, "an input or a user's file was changed"
    new = set(after) - set(before)
    allowed = {k for k in new if case.output is not None and (k == case.output or k.startswith(case.output + "/"))}
    assert new == allowed, f"left outside the stage's output: {sorted(new - allowed)}"
    if case.check is not None:
        case.check(spark, root)


def test_a_gzipped_file_without_a_final_newline_is_noticed_too(tmp_path):
    import gzip

    from gap_spark.stages.ingest_preflight import ends_with_newline

    cases = {"clean.csv.gz": b"a,b\n1,2\n", "cut.csv.gz": b"a,b\n1,2", "empty.csv.gz": b"",
             "long.csv.gz": b"x" * (9 << 20) + b"\n", "long_cut.csv.gz": b"\n" + b"x" * (9 << 20)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(gzip.compress(data))
    got = {name: ends_with_newline(str(tmp_path / name)) for name in cases}
    assert got == {"clean.csv.gz": True, "cut.csv.gz": False, "empty.csv.gz": True, "long.csv.gz": True,
                   "long_cut.csv.gz": False}
